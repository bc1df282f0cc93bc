/// What recovery does when valid records stop before the end of the log (docs/FORMAT.md §8.5).
///
/// LSNs are identities: a record keeps its LSN forever, reads go by LSN, and appends continue
/// right after the last record kept. So no mode ever keeps a record past the first damaged one
/// in the log itself, and none renumbers records. The modes differ in what they refuse and in
/// what they hand to the operator. In every mode, whatever recovery removes is first preserved
/// in a side file in the log directory (`dropped-…`, see `RecoveryReport.DroppedRegion`).
public enum RecoveryMode: String, Sendable, CaseIterable {
    /// Any byte past the last valid record that is not zero is an error: the open fails before
    /// recovery changes anything (leftover `*.seg.tmp` and `*.partial` files excepted).
    case strict
    /// Drop a torn tail (bytes no acknowledged record lives in) quietly; refuse to open
    /// on damage to durable data. The default.
    case tornTail = "torn-tail"
    /// Keep the valid prefix even when durable data past it is damaged; report the lost LSNs.
    case pointInTime = "point-in-time"
    /// Like `pointInTime`, the log keeps the valid prefix (LSNs stay contiguous), and, before
    /// anything is dropped, every valid data record found past the damage (at any 8-byte
    /// aligned offset of the damaged segment's tail and of every segment after it) is exported
    /// byte for byte, with its LSN, to a JSON-lines file in the log directory
    /// (`RecoveryReport.salvageFile`). The report lists those LSNs (`salvageableLSNs`) and the
    /// LSNs no valid record was found for (`gaps`). The exported records are not part of the
    /// log any more: the application can re-append their payloads (under new LSNs) or use them
    /// to repair its own state.
    case salvage
}

/// What recovery found and, for a writer, what it changed.
public struct RecoveryReport: Sendable, Equatable {
    /// What recovery found past the last valid record.
    public enum Outcome: String, Sendable {
        /// The log ends where its last record ends: nothing past it in the last segment.
        case clean
        /// Bytes past the last valid record were never acknowledged; dropped quietly.
        case tornTail = "torn-tail"
        /// Data that was durable is damaged. A writer only opens in `.pointInTime` or
        /// `.salvage` mode.
        case corruption
    }

    /// A byte range recovery removes (or, read-only, would remove).
    public struct DroppedRegion: Sendable, Equatable {
        /// The segment file name the region was in.
        public var segment: String
        /// Byte offset of the region in that segment file.
        public var offset: UInt64
        /// Bytes in the region.
        public var length: UInt64
        /// Why it was removed (the damage found there, or "segment after the end of the valid records").
        public var reason: String
        /// Where the bytes were preserved before they were removed (a writer's report only;
        /// nil for a read-only open). The path of a side file in the log directory:
        /// for the damaged segment's tail, `dropped-<segment>-<offset>-<UTC time>.bin` holding
        /// exactly `length` bytes, byte `i` of the file being byte `offset + i` of the segment;
        /// for a segment after the cut, the whole segment file renamed to
        /// `dropped-<segment>-0-<UTC time>.bin` (header included, so its records can still be
        /// checked), where the region starts at `preservedFileOffset`.
        public var preservedAt: String?
        /// The offset in the side file of the region's first byte: 0 for a copy of a tail,
        /// `offset` for a whole segment file.
        public var preservedFileOffset: UInt64 = 0
    }

    /// Clean, a torn tail, or corruption of durable data.
    public var outcome: Outcome
    /// The mode recovery ran in (`Log.Options.recovery`; `.tornTail` for read-only opens).
    public var mode: RecoveryMode
    /// False for a read-only open: the report is a plan and nothing was changed.
    public var applied: Bool
    /// Segment files that are still part of the log.
    public var segmentsKept: Int
    /// The first LSN of the log.
    public var firstLSN: LSN
    /// The last LSN kept (firstLSN - 1 when there are none).
    public var lastLSN: LSN
    /// The highest LSN the log itself proves was durable before this open.
    public var provenDurableLSN: LSN
    /// Where valid records stop, and why; nil for a clean log.
    public var damage: Damage?
    /// Every byte range recovery removed (or, read-only, would remove), in log order.
    public var droppedRegions: [DroppedRegion]
    /// Segment files after the cut: moved to side files (or, read-only, to be moved). They are
    /// no longer segments of the log; `droppedRegions` says where each one went.
    public var removedSegments: [String]
    /// After corruption: the LSNs past the damage, from the first one (which was durable) to
    /// the highest LSN or durable claim found past it. A point-in-time or salvage writer drops
    /// them from the log.
    public var lostLSNs: ClosedRange<LSN>?
    /// LSN ranges (ascending, disjoint) of the valid data records found past the cut, in the
    /// damaged segment's tail or in the segments after it, with LSNs from `lastLSN + 1` on.
    /// No mode keeps them in the log; `.salvage` exports them to `salvageFile`. Computed in
    /// every mode and by read-only opens, so that a check shows what salvage would export.
    public var salvageableLSNs: [ClosedRange<LSN>] = []
    /// LSN ranges (ascending, disjoint) from `lastLSN + 1` through the highest LSN known past
    /// the cut (the upper end of `lostLSNs` after corruption) for which no valid record was
    /// found anywhere: those records are gone, in every mode.
    public var gaps: [ClosedRange<LSN>] = []
    /// `.salvage` writers only: the JSON-lines file in the log directory
    /// (`salvaged-<segment>-<offset>-<UTC time>.jsonl`, named after the cut) holding every
    /// record of `salvageableLSNs`, one object per line, in scan order:
    /// `{"data":"<base64 payload>","durable_lsn":…,"length":…,"lsn":…,"offset":…,"segment":"…"}`
    /// (segment and offset say where the record was). Nil when there was nothing to export.
    public var salvageFile: String?
    /// Sealed segments whose records this open did not check because the log was closed
    /// cleanly (FORMAT.md §8.7): each is checked the first time one of its records is read,
    /// and damage found then is a `corruption` error of that read. 0 after a crash (every
    /// record was checked) and with `checkSealedSegmentsAtOpen`.
    public var deferredSegments = 0

    /// Whether a writer opening with `mode` refuses a log whose scan found `outcome`: damage to
    /// durable data unless the mode keeps the prefix (point-in-time, salvage), and any torn
    /// tail in strict mode. The open then fails before recovery changes anything.
    public static func writerRefuses(_ outcome: Outcome, in mode: RecoveryMode) -> Bool {
        switch outcome {
        case .clean: false
        case .tornTail: mode == .strict
        case .corruption: mode != .pointInTime && mode != .salvage
        }
    }

    /// `writerRefuses(outcome, in: mode)`: for a read-only open's plan, whether carrying it
    /// out in its mode would be refused.
    public var writerRefuses: Bool { RecoveryReport.writerRefuses(outcome, in: mode) }

    /// Records in the log after recovery.
    public var recordsKept: UInt64 { lastLSN + 1 - firstLSN }
    /// The bytes of every dropped region together.
    public var droppedBytes: UInt64 { droppedRegions.reduce(0) { $0 + $1.length } }
    /// Every side file this recovery wrote or reused: the preserved regions, then the export.
    public var sideFiles: [String] { droppedRegions.compactMap(\.preservedAt) + (salvageFile.map { [$0] } ?? []) }
}
