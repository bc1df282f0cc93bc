import Synchronization

/// The record index of a sealed segment that an open after a clean close did not parse
/// (docs/FORMAT.md §8.7). Its record count follows from the chain (the next segment's base
/// LSN); the offsets are found, and every record checked exactly as recovery checks it (§8.1:
/// structure, CRC, LSN sequence), by one pass the first time a record in it is read.
///
/// Damage found then is reported, not repaired: the LSNs before it stay readable and reading
/// any LSN from the damaged one on throws `corruption` with the segment, offset and LSN.
final class DeferredSegmentIndex: Sendable {
    struct Index: Sendable {
        /// Offsets of the valid records, in LSN order: all `recordCount` of them unless `damage`.
        var offsets: [UInt32]
        /// Offset just past the last valid record (or padding record).
        var end: Int
        /// Why the records from LSN `baseLSN + offsets.count` on cannot be read.
        var damage: LogError?
    }

    let segment: Segment
    let recordCount: Int
    private let built = Mutex<Index?>(nil)

    init(segment: Segment, recordCount: Int) {
        self.segment = segment
        self.recordCount = recordCount
    }

    /// The index, built on the first call (other callers wait for that one pass).
    var index: Index {
        built.withLock { built in
            if let built { return built }
            let index = build()
            built = index
            return index
        }
    }

    /// Whether the pass has run.
    var isBuilt: Bool { built.withLock { $0 != nil } }

    /// The offset of the record with `lsn` (which must be one of this segment's).
    func offset(of lsn: LSN) throws(LogError) -> Int {
        let index = self.index
        let position = Int(lsn - segment.header.baseLSN)
        guard position < index.offsets.count else { throw index.damage! }
        return Int(index.offsets[position])
    }

    /// Where a suffix truncation keeping the records before `lsn` cuts: the offset of record
    /// `lsn`, or, when `lsn` is the first record the pass could not read, where the valid
    /// records end (so a cut can remove the damage along with everything after it).
    func cutOffset(before lsn: LSN) throws(LogError) -> Int {
        let index = self.index
        let position = Int(lsn - segment.header.baseLSN)
        if position < index.offsets.count { return Int(index.offsets[position]) }
        // Past the valid records there is damage (the chain promised more records).
        guard position == index.offsets.count else { throw index.damage! }
        return index.end
    }

    private func build() -> Index {
        let base = segment.header.baseLSN
        var expected = base
        let (scanned, reason) = LogScanner.parse(segment, expected: &expected)
        var offsets = scanned.recordOffsets
        guard offsets.count < recordCount else {
            // More valid records than the chain leaves room for cannot be read by LSN (the next
            // segment has those LSNs); `logctl verify` reports the broken chain.
            offsets.removeLast(offsets.count - recordCount)
            return Index(offsets: offsets, end: scanned.end, damage: nil)
        }
        let lsn = base + LSN(offsets.count)
        let why = reason ?? "segment ends after \(offsets.count) records where the next segment's base LSN says \(recordCount)"
        let damage = LogError(
            .corruption,
            "\(why) (found on first read of a sealed segment that the open after a clean close did not check)",
            path: segment.path, offset: UInt64(scanned.end), lsn: lsn)
        return Index(offsets: offsets, end: scanned.end, damage: damage)
    }
}
