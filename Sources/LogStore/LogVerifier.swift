/// A full check of a log's files, for `logctl verify`: every segment header, every record
/// checksum, LSN continuity within and across segments, and the chaining of segments, with
/// each problem reported where it is. Read-only, takes no lock, changes no byte.
///
/// Recovery (`LogScanner`) stops at the first invalid record, because nothing past it can be
/// kept; a check goes on past it, resynchronizing on the next valid record at any 8-byte
/// aligned offset, so that every damaged region, every LSN jump and every bad header is listed.
/// Whether the damage is a torn tail or corruption of durable data is recovery's call
/// (`RecoveryReport.outcome`), not this check's.
public struct VerificationReport: Sendable, Equatable {
    /// One problem: where it is and why it is one.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        /// Segment file name.
        public var segment: String
        /// Byte offset in that file.
        public var offset: UInt64
        /// The LSN expected there, when one is known.
        public var lsn: LSN?
        public var reason: String

        public var description: String {
            "\(segment) offset \(offset)" + (lsn.map { " (LSN \($0))" } ?? "") + ": \(reason)"
        }
    }

    public var segmentsChecked = 0
    /// Valid data records found (past damage too).
    public var recordsChecked: UInt64 = 0
    /// Bytes of segment files examined (holes included: they read as zeros).
    public var bytesScanned: UInt64 = 0
    /// In file order, then offset order.
    public var problems: [Problem] = []
}

extension Log {
    /// Checks every segment file of the log in `directory` (see `VerificationReport`).
    /// `progress` is called now and then with the bytes examined so far and the total.
    /// Throws only when the directory cannot be read or holds no segment files.
    public static func verify(_ directory: String, progress: (_ scanned: Int, _ total: Int) -> Void = { _, _ in })
        throws(LogError) -> VerificationReport
    {
        try prepareDirectory(directory, create: false)
        let names: [String]
        do { names = try FileSystem.listDirectory(directory) } catch {
            throw LogError.system(error, "cannot list the log directory", path: directory)
        }
        let segmentNames = names.compactMap { name in Format.segmentID(fromFileName: name).map { ($0, name) } }
            .sorted { $0.0 < $1.0 }
        guard !segmentNames.isEmpty else {
            throw LogError(.notALog, "no segment files in the directory", path: directory)
        }
        var segments: [(UInt64, String, Segment?)] = []
        var report = VerificationReport()
        for (id, name) in segmentNames {
            do throws(LogError) {
                segments.append((id, name, try Segment.open(directory: directory, name: name, writable: false)))
            } catch {
                if error.code != .corruption && error.code != .notALog && error.code != .unsupportedVersion {
                    throw error
                }
                report.problems.append(.init(segment: name, offset: error.offset ?? 0, lsn: nil, reason: error.message))
                segments.append((id, name, nil))
            }
        }
        let total = segments.reduce(0) { $0 + ($1.2?.readableLength ?? 0) }
        var scanned = 0
        progress(0, total)
        var first: Segment?
        /// The LSN the next record should have, once a segment told us.
        var expected: LSN?
        for (id, name, opened) in segments {
            report.segmentsChecked += 1
            guard let segment = opened else {
                expected = nil
                continue
            }
            let header = segment.header
            func problem(_ offset: Int, _ lsn: LSN?, _ reason: String) {
                report.problems.append(.init(segment: name, offset: UInt64(offset), lsn: lsn, reason: reason))
            }
            if header.segmentID != id { problem(16, nil, "header names segment \(header.segmentID), file name says \(id)") }
            if let first {
                if header.logID != first.header.logID {
                    problem(40, nil, "segment belongs to another log (\(header.logID), not \(first.header.logID))")
                }
                if segment.size != first.size {
                    problem(32, nil, "segment is \(segment.size) bytes where the log's segments are \(first.size)")
                }
            } else {
                first = segment
            }
            if let expected, header.baseLSN != expected {
                problem(24, expected, "segment starts at LSN \(header.baseLSN) where \(expected) was expected")
            }
            if segment.readableLength < segment.size {
                problem(
                    segment.readableLength, nil,
                    "segment file is \(segment.readableLength) bytes, not \(segment.size): truncated")
            }
            var next = header.baseLSN
            var records: UInt64 = 0
            checkRecords(segment, expected: &next, records: &records, problem: problem) { advanced in
                progress(scanned + advanced, total)
            }
            report.recordsChecked += records
            expected = next
            scanned += segment.readableLength
            progress(scanned, total)
        }
        report.bytesScanned = UInt64(scanned)
        return report
    }

    /// Walks `segment`'s records from its header on, resynchronizing past anything invalid,
    /// and calls `problem` for each damaged region, stray bytes and LSN jump.
    private static func checkRecords(
        _ segment: Segment, expected: inout LSN, records: inout UInt64,
        problem: (_ offset: Int, _ lsn: LSN?, _ reason: String) -> Void, progress: (Int) -> Void
    ) {
        let bytes = segment.bytes
        let base = bytes.baseAddress!
        let end = bytes.count
        // An invalid region being skipped: where it started, the LSN expected there, and why.
        var invalid: (start: Int, lsn: LSN, reason: String)?
        func closeInvalid(at position: Int, followedBy what: String) {
            guard let region = invalid else { return }
            problem(region.start, region.lsn, "\(region.reason); \(position - region.start) bytes skipped, \(what)")
            invalid = nil
        }
        let dataRanges = segment.descriptor.dataRanges(from: Format.segmentHeaderSize, to: end)
        defer { segment.descriptor.dropCachedPages() }
        var position = Format.segmentHeaderSize
        var lastProgress = position
        while position + Format.recordHeaderSize <= end {
            if position - lastProgress >= 16 << 20 {
                progress(position)
                lastProgress = position
            }
            // Zeros: the end of the records if nothing but zeros follows.
            if RecordHeader.isAllZero(base + position) {
                let nonzero = nextNonzero(base, from: position, end: end, dataRanges: dataRanges)
                guard let nonzero else {
                    position = end  // nothing but zeros to the end
                    break
                }
                if invalid == nil {
                    invalid = (position, expected, "zeros where a record was expected, but nonzero bytes follow")
                }
                position = alignDown(nonzero, to: Format.recordAlignment)
                continue
            }
            let header = RecordHeader.load(from: base + position)
            var reason = LogScanner.structuralProblem(header, at: position, in: segment)
            if reason == nil,
                RecordHeader.checksum(recordAt: base + position, payloadLength: Int(header.length), saltCRC: segment.saltCRC)
                    != header.crc
            {
                reason = "checksum mismatch"
            }
            if let reason {
                if invalid == nil { invalid = (position, expected, reason) }
                position += Format.recordAlignment
                continue
            }
            // The region's problem names the LSN the records resume at: no second problem for it.
            let resumed = invalid != nil
            let kind = header.type == Format.recordTypeData
                ? "record" : header.type == Format.recordTypePadding ? "padding record" : "close marker"
            if header.type == Format.recordTypeData {
                closeInvalid(at: position, followedBy: "next valid record has LSN \(header.lsn)")
                if header.lsn != expected && !resumed {
                    problem(position, expected, "record has LSN \(header.lsn) where \(expected) was expected")
                }
                records += 1
                expected = header.lsn &+ 1
            } else {
                closeInvalid(at: position, followedBy: "next valid record is a \(kind) for LSN \(header.lsn)")
                if header.lsn != expected &- 1 && !resumed {
                    problem(position, expected, "\(kind) for LSN \(header.lsn) where \(expected &- 1) was expected")
                }
                // A padding record or close marker names the last data LSN before it.
                expected = header.lsn &+ 1
            }
            position += header.footprint
        }
        if invalid != nil {
            closeInvalid(at: end, followedBy: "no valid record after it in this segment")
        } else if position < end, !UnsafeRawBufferPointer(rebasing: bytes[position...]).allSatisfy({ $0 == 0 }) {
            problem(position, expected, "record header cut off by the end of the file (\(end) bytes)")
        }
    }

    /// The first offset at or after `start` holding a nonzero byte, or nil; skips holes.
    private static func nextNonzero(_ base: UnsafeRawPointer, from start: Int, end: Int, dataRanges: [Range<Int>])
        -> Int?
    {
        for range in dataRanges where range.upperBound > start {
            var position = max(start, alignDown(range.lowerBound, to: Format.recordAlignment))
            let limit = min(range.upperBound, end)
            position = skipZeros(base, from: position, to: limit)
            if position + 8 <= limit { return position }
            // A range ending off an 8-byte boundary leaves a few bytes skipZeros does not look at.
            while position < limit {
                if base.load(fromByteOffset: position, as: UInt8.self) != 0 { return position }
                position += 1
            }
        }
        return nil
    }
}
