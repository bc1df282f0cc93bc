#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Read-only analysis of a log's segments: where the valid records end, and whether what lies
/// past that point is a torn tail or damage to data that was already durable.
///
/// The rule (docs/FORMAT.md §8): records are parsed in LSN order until the first position
/// that is not a valid record and is not followed by a segment starting at the expected LSN
/// (the cut). Every valid record found past the cut, and
/// every later segment header, states an LSN that was durable when it was written. If any of
/// them states an LSN ≥ the LSN expected at the cut, the record at the cut was durable and
/// its loss is corruption; otherwise nothing past the cut was ever acknowledged: a torn tail.
struct LogScanner {
    struct ScannedSegment {
        let segment: Segment
        var recordOffsets: [UInt32] = []
        /// Offset just past the last valid record or close marker.
        var end: Int
        var durableClaim: LSN
        var endsWithCloseMarker = false
        /// Set for a sealed segment that an open after a clean close did not parse
        /// (`scanAfterCleanClose`): `recordOffsets` is empty and `end` is the segment size.
        var deferred: DeferredSegmentIndex? = nil
        var recordCount: Int { deferred?.recordCount ?? recordOffsets.count }
        var lastLSN: LSN { segment.header.baseLSN + LSN(recordCount) - 1 }
    }

    /// What valid records past a cut claim.
    struct Evidence {
        var durableLSN: LSN = 0
        var highestLSN: LSN = 0
        var validRecords = 0
        /// End of the last nonzero byte found, for zeroing the torn bytes.
        var nonzeroEnd: Int

        mutating func merge(_ other: Evidence) {
            durableLSN = max(durableLSN, other.durableLSN)
            highestLSN = max(highestLSN, other.highestLSN)
            validRecords += other.validRecords
        }
    }

    enum Outcome: String, Sendable {
        case clean
        case tornTail = "torn-tail"
        case corruption
    }

    struct Result {
        var kept: [ScannedSegment]
        /// Segments after the cut segment: never acknowledged if the outcome is a torn tail.
        var orphans: [Segment]
        /// For each orphan, the end of its last nonzero byte.
        var orphanExtents: [Int]
        var nextLSN: LSN
        var outcome: Outcome
        var damage: Damage?
        /// Nonzero bytes in the cut segment past the last valid record: `end..<tailNonzeroEnd`.
        var tailNonzeroEnd: Int
        var evidence: Evidence
        /// The highest LSN the kept records themselves prove durable.
        var provenDurableLSN: LSN
        /// The LSNs (≥ `nextLSN`) of the valid data records found past the cut: in the cut
        /// segment's tail and in the orphans. Ascending, disjoint ranges.
        var salvageable: [ClosedRange<LSN>] = []

        /// The cut segment (the last one kept).
        var cut: ScannedSegment { kept[kept.count - 1] }

        /// LSN ranges from `nextLSN` through the highest LSN known past the cut (a valid record
        /// or a durable claim) that no valid record past the cut has.
        var gaps: [ClosedRange<LSN>] {
            let highest = max(nextLSN - 1, evidence.highestLSN, evidence.durableLSN)
            guard highest >= nextLSN else { return [] }
            return LSNRanges.complement(of: salvageable, within: nextLSN...highest)
        }
    }

    /// `segments` sorted by id, headers already checked to belong to one log.
    static func scan(_ segments: [Segment]) -> Result {
        precondition(!segments.isEmpty)
        var expected = segments[0].header.baseLSN
        var kept: [ScannedSegment] = []
        for (index, segment) in segments.enumerated() {
            let (scanned, invalidReason) = parse(segment, expected: &expected)
            kept.append(scanned)
            let next = index + 1 < segments.count ? segments[index + 1] : nil
            // When the next segment starts at the expected LSN, every record this segment can
            // hold was found: the writer rolled before writing the next one here, so bytes after
            // the end (stray or missing) belong to no record.
            if let next, next.header.baseLSN == expected { continue }
            // Segment files are created at full size and never shrink (FORMAT.md §7), so a short
            // file is damage from outside: whatever it held past its end may have been durable.
            let truncated = segment.readableLength < segment.size

            // Valid data records past the cut, for salvage (records below the cut's LSN, which an
            // orphan may hold, duplicate LSNs the log keeps and are not collected).
            var salvageable = LSNRanges()
            let cutLSN = expected
            let collect = { (_: Int, header: RecordHeader) in
                if header.type == Format.recordTypeData, header.lsn >= cutLSN { salvageable.insert(header.lsn) }
            }
            var evidence = scanEvidence(segment, from: scanned.end, minLSN: expected, visit: collect)
            let tailNonzeroEnd = max(evidence.nonzeroEnd, scanned.end)
            let orphans = Array(segments[(index + 1)...])
            var orphanExtents: [Int] = []
            for orphan in orphans {
                var found = scanEvidence(
                    orphan, from: Format.segmentHeaderSize, minLSN: orphan.header.baseLSN, visit: collect)
                found.durableLSN = max(found.durableLSN, orphan.header.durableLSN)
                evidence.merge(found)
                orphanExtents.append(found.nonzeroEnd)
            }
            let reason: String?
            if truncated {
                reason = "segment file is \(segment.readableLength) bytes, not \(segment.size): truncated"
                    + (invalidReason.map { " (\($0))" } ?? "")
            } else if let invalidReason {
                reason = invalidReason
            } else if let next {
                reason = "segment \(next.name) starts at LSN \(next.header.baseLSN) where \(expected) was expected"
            } else if evidence.validRecords > 0 {
                reason = "no record where LSN \(expected) was expected, but valid records follow"
            } else if tailNonzeroEnd > scanned.end {
                reason = "partly written record"
            } else {
                reason = nil
            }
            var result = Result(
                kept: kept, orphans: orphans, orphanExtents: orphanExtents, nextLSN: expected, outcome: .clean, damage: nil,
                tailNonzeroEnd: tailNonzeroEnd, evidence: evidence,
                provenDurableLSN: provenDurable(kept, nextLSN: expected), salvageable: salvageable.normalized)
            if let reason {
                result.outcome = truncated || evidence.durableLSN >= expected ? .corruption : .tornTail
                result.damage = Damage(
                    segment: segment.name, offset: UInt64(scanned.end), lsn: expected, reason: reason)
            }
            return result
        }
        preconditionFailure("the loop returns at the last segment")
    }

    private static func provenDurable(_ kept: [ScannedSegment], nextLSN: LSN) -> LSN {
        var proven: LSN = 0
        for scanned in kept { proven = max(proven, scanned.durableClaim) }
        if let last = kept.last, last.endsWithCloseMarker { proven = nextLSN - 1 }
        return min(proven, nextLSN - 1)
    }

    /// Parses records from the start of `segment` while each is valid and has the expected LSN.
    /// Returns the scan and, if parsing stopped at something other than zeros, why.
    static func parse(_ segment: Segment, expected: inout LSN) -> (ScannedSegment, String?) {
        let bytes = segment.bytes
        let base = bytes.baseAddress!
        var scanned = ScannedSegment(segment: segment, end: Format.segmentHeaderSize,
                                     durableClaim: segment.header.durableLSN)
        var position = Format.segmentHeaderSize
        while true {
            scanned.end = position
            if position + Format.recordHeaderSize > segment.size { return (scanned, nil) }
            if position + Format.recordHeaderSize > bytes.count {
                let rest = UnsafeRawBufferPointer(rebasing: bytes[min(position, bytes.count)...])
                if rest.allSatisfy({ $0 == 0 }) { return (scanned, nil) }
                return (scanned, "record header cut off by the end of the file (\(bytes.count) bytes)")
            }
            let pointer = base + position
            if RecordHeader.isAllZero(pointer) { return (scanned, nil) }
            let header = RecordHeader.load(from: pointer)
            if let problem = structuralProblem(header, at: position, in: segment) { return (scanned, problem) }
            if RecordHeader.checksum(recordAt: pointer, payloadLength: Int(header.length), saltCRC: segment.saltCRC)
                != header.crc
            {
                return (scanned, "checksum mismatch")
            }
            if header.type == Format.recordTypeData {
                guard header.lsn == expected else {
                    return (scanned, "record has LSN \(header.lsn) where \(expected) was expected")
                }
                scanned.recordOffsets.append(UInt32(position))
                expected += 1
                scanned.endsWithCloseMarker = false
            } else if header.type == Format.recordTypePadding {
                guard header.lsn == expected - 1 else {
                    return (scanned, "padding record for LSN \(header.lsn) where \(expected - 1) was expected")
                }
                scanned.endsWithCloseMarker = false
            } else {
                guard header.lsn == expected - 1 else {
                    return (scanned, "close marker for LSN \(header.lsn) where \(expected - 1) was expected")
                }
                scanned.endsWithCloseMarker = true
            }
            scanned.durableClaim = max(scanned.durableClaim, header.durableLSN)
            position += header.footprint
        }
    }

    /// Why a checksum-independent check fails, or nil.
    static func structuralProblem(_ header: RecordHeader, at position: Int, in segment: Segment) -> String? {
        guard header.type == Format.recordTypeData || header.type == Format.recordTypeCloseMarker
            || header.type == Format.recordTypePadding,
            header.flags == 0, header.reserved == 0
        else { return "unknown record type \(header.type) or nonzero reserved bits" }
        if header.type == Format.recordTypeCloseMarker, header.length != 0 {
            return "close marker with length \(header.length), not 0"
        }
        if position + header.footprint > segment.size {
            return "record length \(header.length) runs past the end of the segment"
        }
        if position + Format.recordHeaderSize + Int(header.length) > segment.bytes.count {
            return "record length \(header.length) runs past the end of the file (\(segment.bytes.count) bytes)"
        }
        let limit = header.type == Format.recordTypeData ? header.lsn &- 1 : header.lsn
        if header.durableLSN > limit { return "record claims durable LSN \(header.durableLSN) beyond itself" }
        return nil
    }

    /// Calls `body` with the segment, offset and header of every valid data record past the
    /// cut whose LSN is at least the cut's (`result.nextLSN`), in scan order: the cut segment's
    /// tail by offset, then each orphan by offset. The records `salvageable` counts.
    static func forEachRecordPastCut(
        _ result: Result, _ body: (_ segment: Segment, _ offset: Int, _ header: RecordHeader) -> Void
    ) {
        let cut = result.cut
        let lowest = result.nextLSN
        _ = scanEvidence(cut.segment, from: cut.end, minLSN: lowest) { offset, header in
            if header.type == Format.recordTypeData, header.lsn >= lowest { body(cut.segment, offset, header) }
        }
        for orphan in result.orphans {
            _ = scanEvidence(orphan, from: Format.segmentHeaderSize, minLSN: orphan.header.baseLSN) { offset, header in
                if header.type == Format.recordTypeData, header.lsn >= lowest { body(orphan, offset, header) }
            }
        }
    }

    /// Looks for valid records anywhere from `start` to the end of `segment`, at every 8-byte
    /// aligned position (a torn or damaged record's length cannot be trusted to skip it), and
    /// calls `visit` with the offset and header of each one found.
    static func scanEvidence(
        _ segment: Segment, from start: Int, minLSN: LSN, visit: (Int, RecordHeader) -> Void = { _, _ in }
    ) -> Evidence {
        let bytes = segment.bytes
        let base = bytes.baseAddress!
        var evidence = Evidence(nonzeroEnd: start)
        var position = alignUp(start, to: Format.recordAlignment)
        if position > start, position <= bytes.count,
           !UnsafeRawBufferPointer(rebasing: bytes[start..<position]).allSatisfy({ $0 == 0 }) {
            evidence.nonzeroEnd = position
        }
        // Holes (unwritten preallocated extents with nothing cached) read as zero: skipping them
        // keeps an open from faulting in the whole unused rest of a segment. Readahead around
        // the pages read here caches zeros past the data, and cached pages count as data for
        // the next open's SEEK_DATA, so those clean pages are dropped again afterwards (turning
        // readahead off instead, with madvise, left later appends without it).
        let dataRanges = segment.descriptor.dataRanges(from: position, to: bytes.count)
        defer {
            segment.descriptor.dropCachedPages(from: alignUp(evidence.nonzeroEnd, to: Format.pageSize))
        }
        var rangeIndex = 0
        while position + 8 <= bytes.count {
            while rangeIndex < dataRanges.count, dataRanges[rangeIndex].upperBound <= position { rangeIndex += 1 }
            guard rangeIndex < dataRanges.count else {
                position = bytes.count
                break
            }
            position = max(position, alignDown(dataRanges[rangeIndex].lowerBound, to: Format.recordAlignment))
            guard position + 8 <= bytes.count else { break }
            if base.loadUnaligned(fromByteOffset: position, as: UInt64.self) == 0 {
                let limit = min(dataRanges[rangeIndex].upperBound, bytes.count)
                position = skipZeros(base, from: position + 8, to: limit)
                if position + 8 > limit, limit < bytes.count { position = limit }
                continue
            }
            evidence.nonzeroEnd = max(evidence.nonzeroEnd, position + 8)
            if position + Format.recordHeaderSize <= bytes.count {
                let header = RecordHeader.load(from: base + position)
                let lowest = header.type == Format.recordTypeData ? minLSN : minLSN &- 1
                if header.lsn >= lowest, structuralProblem(header, at: position, in: segment) == nil,
                    RecordHeader.checksum(
                        recordAt: base + position, payloadLength: Int(header.length), saltCRC: segment.saltCRC)
                        == header.crc
                {
                    evidence.validRecords += 1
                    visit(position, header)
                    evidence.durableLSN = max(evidence.durableLSN, header.durableLSN)
                    if header.type == Format.recordTypeData {
                        evidence.highestLSN = max(evidence.highestLSN, header.lsn)
                    }
                    let end = position + Format.recordHeaderSize + Int(header.length)
                    evidence.nonzeroEnd = max(evidence.nonzeroEnd, end)
                    position += header.footprint
                    continue
                }
            }
            position += 8
        }
        if position < bytes.count,
           !UnsafeRawBufferPointer(rebasing: bytes[position...]).allSatisfy({ $0 == 0 }) {
            evidence.nonzeroEnd = bytes.count
        }
        return evidence
    }
}

/// The first 8-byte aligned offset in `start..<end` whose 8 bytes are not all zero (or the
/// last aligned offset before `end`). The unused rest of a segment is scanned on every open,
/// so zeros are skipped 64 bytes at a time.
@inline(__always)
func skipZeros(_ base: UnsafeRawPointer, from start: Int, to end: Int) -> Int {
    var position = start
    while position & 63 != 0, position + 8 <= end {
        if base.load(fromByteOffset: position, as: UInt64.self) != 0 { return position }
        position += 8
    }
    // `base` is a page-aligned mapping, so `position` is now 64-byte aligned in memory too.
    while position + 64 <= end, base.load(fromByteOffset: position, as: SIMD8<UInt64>.self) == .zero {
        position += 64
    }
    while position + 8 <= end {
        if base.load(fromByteOffset: position, as: UInt64.self) != 0 { return position }
        position += 8
    }
    return position
}

/// A set of LSNs kept as ranges, built from LSNs that mostly come in ascending runs (the
/// records found past a cut), so that millions of records take a few ranges.
struct LSNRanges {
    private var ranges: [ClosedRange<LSN>] = []

    mutating func insert(_ lsn: LSN) {
        if let last = ranges.last {
            if last.contains(lsn) { return }
            if last.upperBound < LSN.max, last.upperBound + 1 == lsn {
                ranges[ranges.count - 1] = last.lowerBound...lsn
                return
            }
        }
        ranges.append(lsn...lsn)
    }

    /// Ascending, disjoint, with adjacent ranges merged.
    var normalized: [ClosedRange<LSN>] {
        var merged: [ClosedRange<LSN>] = []
        for range in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = merged.last,
                last.upperBound == LSN.max || range.lowerBound <= last.upperBound + 1
            {
                merged[merged.count - 1] = last.lowerBound...max(last.upperBound, range.upperBound)
            } else {
                merged.append(range)
            }
        }
        return merged
    }

    /// The LSNs of `bounds` in none of `ranges` (ascending, disjoint), as ranges.
    static func complement(of ranges: [ClosedRange<LSN>], within bounds: ClosedRange<LSN>) -> [ClosedRange<LSN>] {
        var result: [ClosedRange<LSN>] = []
        var next = bounds.lowerBound
        for range in ranges where range.upperBound >= next {
            guard range.lowerBound <= bounds.upperBound else { break }
            if range.lowerBound > next { result.append(next...(range.lowerBound - 1)) }
            guard range.upperBound < bounds.upperBound else { return result }
            next = range.upperBound + 1
        }
        result.append(next...bounds.upperBound)
        return result
    }
}

/// Where a log stops being valid, and why.
public struct Damage: Sendable, Equatable, CustomStringConvertible {
    /// Segment file name.
    public var segment: String
    /// Byte offset in that file of the first byte that is not a valid record.
    public var offset: UInt64
    /// The LSN that was expected there.
    public var lsn: LSN
    /// What is wrong there (a bad checksum, a wrong LSN, a length past the end, ...).
    public var reason: String

    /// `<segment> offset <offset> (LSN <lsn>): <reason>`.
    public var description: String { "\(segment) offset \(offset) (LSN \(lsn)): \(reason)" }
}
