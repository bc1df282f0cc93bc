/// What recovery does when valid records stop before the end of the log.
public enum RecoveryMode: String, Sendable, CaseIterable {
    /// Any byte past the last valid record that is not zero is an error: the open fails before
    /// recovery changes anything (leftover `*.seg.tmp` files excepted).
    case strict
    /// Drop a torn tail (bytes no acknowledged record lives in) quietly; refuse to open
    /// on damage to durable data. The default.
    case tornTail = "torn-tail"
    /// Keep the valid prefix even when durable data past it is damaged; report the lost LSNs.
    case pointInTime = "point-in-time"
}

/// What recovery found and, for a writer, what it changed.
public struct RecoveryReport: Sendable, Equatable {
    public enum Outcome: String, Sendable {
        /// The log ends where its last record ends: nothing past it in the last segment.
        case clean
        /// Bytes past the last valid record were never acknowledged; dropped quietly.
        case tornTail = "torn-tail"
        /// Data that was durable is damaged. A writer only opens in `.pointInTime` mode.
        case corruption
    }

    /// A byte range recovery removes (or, read-only, would remove).
    public struct DroppedRegion: Sendable, Equatable {
        public var segment: String
        public var offset: UInt64
        public var length: UInt64
        public var reason: String
    }

    public var outcome: Outcome
    public var mode: RecoveryMode
    /// False for a read-only open: the report is a plan and nothing was changed.
    public var applied: Bool
    public var segmentsKept: Int
    public var firstLSN: LSN
    /// The last LSN kept (firstLSN - 1 when there are none).
    public var lastLSN: LSN
    /// The highest LSN the log itself proves was durable before this open.
    public var provenDurableLSN: LSN
    /// Where valid records stop, and why; nil for a clean log.
    public var damage: Damage?
    public var droppedRegions: [DroppedRegion]
    /// Segment files after the cut, deleted (or, read-only, to be deleted).
    public var removedSegments: [String]
    /// After corruption: the LSNs past the damage, from the first one (which was durable) to
    /// the highest LSN or durable claim found past it. A point-in-time writer drops them.
    public var lostLSNs: ClosedRange<LSN>?

    public var recordsKept: UInt64 { lastLSN + 1 - firstLSN }
    public var droppedBytes: UInt64 { droppedRegions.reduce(0) { $0 + $1.length } }
}
