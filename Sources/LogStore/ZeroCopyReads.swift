/// Reads that hand out a record's payload straight from the segment's mapping, without copying.
///
/// The payload stays valid for the duration of the closure, whatever happens to the log
/// meanwhile: the closure holds the segment (and so its mapping) even if the segment is
/// removed from the log or the log is closed, and segment files never shrink while mapped, so
/// no access can fault. A record's bytes never change after it is appended; the one exception
/// is a suffix truncation removing that very record, after which later appends may reuse its
/// space (the closure then sees new bytes, never an unmapped page).
extension Log {
    /// Calls `body` with the payload of the record at `lsn` (in `firstLSN...writtenLSN`), in place.
    /// O(log segments) to find the segment, then O(1); a sealed segment not checked at open
    /// (after a clean close) is indexed first, one pass over its records, which may throw
    /// `corruption`.
    public func withPayload<Value>(of lsn: LSN, _ body: (RawSpan) throws(LogError) -> Value) throws(LogError)
        -> Value
    {
        try withUnsafePayload(of: lsn) { (payload) throws(LogError) -> Value in try body(payload.bytes) }
    }

    /// `withPayload(of:_:)` with an `UnsafeRawBufferPointer`, which must not escape `body`.
    public func withUnsafePayload<Value>(
        of lsn: LSN, _ body: (UnsafeRawBufferPointer) throws(LogError) -> Value
    ) throws(LogError) -> Value {
        let (segment, offset, _) = try locate(lsn)
        return try withExtendedLifetime(segment) { () throws(LogError) -> Value in
            try body(try segment.payload(ofRecordAt: offset, lsn: lsn))
        }
    }

    /// Calls `body` with the LSN and payload of every record in `lsns` (which must lie in
    /// `firstLSN...writtenLSN`), in order, in place. One lock round per segment; within a
    /// segment it follows the records themselves. With `verifyingChecksums`, each record's CRC
    /// is computed again first and a mismatch throws `corruption` (records are checked when
    /// the log is opened after a crash, or when a sealed segment is first read after a clean
    /// close; this catches damage since).
    public func forEachRecord(
        in lsns: ClosedRange<LSN>, verifyingChecksums: Bool = false,
        _ body: (LSN, RawSpan) throws(LogError) -> Void
    ) throws(LogError) {
        try forEachUnsafeRecord(in: lsns, verifyingChecksums: verifyingChecksums) {
            (lsn, payload) throws(LogError) in try body(lsn, payload.bytes)
        }
    }

    /// `forEachRecord(in:verifyingChecksums:_:)` with `UnsafeRawBufferPointer`s, which must not
    /// escape `body`.
    public func forEachUnsafeRecord(
        in lsns: ClosedRange<LSN>, verifyingChecksums: Bool = false,
        _ body: (LSN, UnsafeRawBufferPointer) throws(LogError) -> Void
    ) throws(LogError) {
        var lsn = lsns.lowerBound
        while lsn <= lsns.upperBound {
            let run = try readableRun(from: lsn, through: lsns.upperBound)
            let last = min(run.lastLSN, lsns.upperBound)
            try withExtendedLifetime(run.segment) { () throws(LogError) in
                var offset = run.offset
                while lsn <= last {
                    let (header, payload) = try run.segment.record(at: offset)
                    offset += header.footprint
                    guard header.type == Format.recordTypeData else {
                        guard header.type == Format.recordTypePadding || header.type == Format.recordTypeCloseMarker
                        else { throw run.segment.changedRecord(at: offset - header.footprint, lsn: lsn) }
                        continue
                    }
                    guard header.lsn == lsn else { throw run.segment.changedRecord(at: offset - header.footprint, lsn: lsn) }
                    if verifyingChecksums {
                        try run.segment.checkChecksum(of: header, at: offset - header.footprint)
                    }
                    try body(lsn, payload)
                    lsn += 1
                }
            }
            if let damage = run.damage, lsn <= lsns.upperBound { throw damage }
        }
    }

    /// Where the records from `lsn` on lie in one segment.
    private struct ReadableRun {
        let segment: Segment
        /// Offset of the record with `lsn`.
        let offset: Int
        /// The last LSN readable in this segment.
        let lastLSN: LSN
        /// Set when the segment is damaged right after `lastLSN` (found indexing it).
        let damage: LogError?
    }

    private func readableRun(from lsn: LSN, through end: LSN) throws(LogError) -> ReadableRun {
        let (segment, offset, lastLSN, deferred) = try state.withLock {
            (state) throws(LogError) -> (Segment, Int, LSN, DeferredSegmentIndex?) in
            _ = try state.segmentIndex(of: end, directory: directory)
            let index = try state.segmentIndex(of: lsn, directory: directory)
            let segment = state.segments[index].segment
            let lastLSN = index + 1 < state.segments.count
                ? state.segments[index + 1].segment.header.baseLSN - 1 : state.writtenLSN
            if let deferred = state.segments[index].deferredIndex { return (segment, 0, lastLSN, deferred) }
            let offset = state.segments[index].recordOffsets[Int(lsn - segment.header.baseLSN)]
            return (segment, Int(offset), lastLSN, nil)
        }
        guard let deferred else { return ReadableRun(segment: segment, offset: offset, lastLSN: lastLSN, damage: nil) }
        let index = deferred.index
        let readable = segment.header.baseLSN + LSN(index.offsets.count)
        guard lsn < readable else { throw index.damage! }
        return ReadableRun(
            segment: segment, offset: Int(index.offsets[Int(lsn - segment.header.baseLSN)]),
            lastLSN: min(lastLSN, readable - 1), damage: readable - 1 < lastLSN ? index.damage : nil)
    }
}

extension Segment {
    /// The header and payload of the record the log indexed at `offset`, checked against the
    /// file's bounds: bytes changed behind the log's back give an error, never a fault.
    func record(at offset: Int) throws(LogError) -> (RecordHeader, UnsafeRawBufferPointer) {
        guard offset >= Format.segmentHeaderSize, offset + Format.recordHeaderSize <= readableLength else {
            throw LogError(.corruption, "record header past the end of the segment", path: path, offset: UInt64(offset))
        }
        let header = RecordHeader.load(from: base + offset)
        guard Int(header.length) <= readableLength - offset - Format.recordHeaderSize else {
            throw LogError(
                .corruption, "record length \(header.length) runs past the end of the segment (changed since it was checked)",
                path: path, offset: UInt64(offset), lsn: header.lsn)
        }
        return (header, UnsafeRawBufferPointer(start: base + offset + Format.recordHeaderSize, count: Int(header.length)))
    }

    /// The header and payload of the data record with `lsn`, which the log indexed at `offset`.
    func dataRecord(at offset: Int, lsn: LSN) throws(LogError) -> (RecordHeader, UnsafeRawBufferPointer) {
        let (header, payload) = try record(at: offset)
        guard header.type == Format.recordTypeData, header.lsn == lsn else { throw changedRecord(at: offset, lsn: lsn) }
        return (header, payload)
    }

    /// The payload of the data record with `lsn`, which the log indexed at `offset`.
    func payload(ofRecordAt offset: Int, lsn: LSN) throws(LogError) -> UnsafeRawBufferPointer {
        try dataRecord(at: offset, lsn: lsn).1
    }

    func checkChecksum(of header: RecordHeader, at offset: Int) throws(LogError) {
        let crc = RecordHeader.checksum(recordAt: base + offset, payloadLength: Int(header.length), saltCRC: saltCRC)
        guard crc == header.crc else {
            throw LogError(.corruption, "checksum mismatch", path: path, offset: UInt64(offset), lsn: header.lsn)
        }
    }

    func changedRecord(at offset: Int, lsn: LSN) -> LogError {
        LogError(
            .corruption, "no record for LSN \(lsn) where the index has it (the segment changed since it was checked)",
            path: path, offset: UInt64(offset), lsn: lsn)
    }
}
