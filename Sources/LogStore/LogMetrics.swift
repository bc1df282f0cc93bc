import CoreMetrics

/// The swift-metrics instruments of one writer, made from `Log.Options.metricsFactory` with
/// the labels `<metricsLabelPrefix>.<name>` (see `LogMetrics.Name`) and
/// `Log.Options.metricsDimensions`.
///
/// Nothing here runs per record: `append` only bumps two integers in `Log.State`, under the
/// lock it already holds, and they reach the counters at the next sync, segment roll, commit
/// with `SyncMode.none`, or close (a call into a metrics backend costs more than an append).
final class LogMetrics: Sendable {
    /// The part of each label after the prefix and a dot.
    enum Name {
        /// Counter: data records appended.
        static let appends = "appends"
        /// Counter: payload bytes of those records.
        static let appendedBytes = "appended_bytes"
        /// Counter: syncs that completed (group commits: one serves every record appended
        /// before it started, whichever thread asked for it).
        static let commits = "commits"
        /// Recorder (a distribution): records each completed sync made durable.
        static let commitRecords = "commit_records"
        /// Timer: one completed sync, from its start (waiting for a rolled-into segment's
        /// installation included) to its end.
        static let syncDuration = "sync_duration"
        /// Counter: rolls into a new segment.
        static let segmentRolls = "segment_rolls"
        /// Timer: preparing a segment file; dimension `during` is `background` (ahead of a
        /// roll) or `roll` (no file was ready: the roll allocated one, inside an append).
        static let preallocationDuration = "preallocation_duration"
        /// Timer: recovery on open (opening, scanning and repairing the segments; for a new log,
        /// creating its first one); dimension `outcome` is the `RecoveryReport.Outcome`.
        static let recoveryDuration = "recovery_duration"
        /// Counter: bytes recovery removed from the log (`RecoveryReport.droppedBytes`).
        static let recoveryDroppedBytes = "recovery_dropped_bytes"
        /// Counter: LSNs recovery found lost to corruption (`RecoveryReport.lostLSNs`).
        static let recoveryLostRecords = "recovery_lost_records"
        /// Gauge: 1 once a failed sync poisoned the log, 0 from open until then.
        static let poisoned = "poisoned"
        /// Bytes past the records written back ahead of the appends to convert their extents
        /// (`Log.Options.convertAheadBytes`).
        static let convertedBytes = "converted_bytes"
        /// Bytes past the records mapped writable ahead of the appends
        /// (`Log.Options.prefaultAheadBytes`).
        static let prefaultedBytes = "prefaulted_bytes"
    }

    let factory: any MetricsFactory
    let prefix: String
    let dimensions: [(String, String)]
    let appends: Counter
    let appendedBytes: Counter
    let commits: Counter
    let commitRecords: Recorder
    let syncDuration: CoreMetrics.Timer
    let segmentRolls: Counter
    let preallocationInBackground: CoreMetrics.Timer
    let preallocationInRoll: CoreMetrics.Timer
    let poisoned: Gauge
    let convertedBytes: Counter
    let prefaultedBytes: Counter

    init(factory: any MetricsFactory, prefix: String, dimensions: [(String, String)]) {
        self.factory = factory
        self.prefix = prefix
        self.dimensions = dimensions
        func label(_ name: String) -> String { LogMetrics.label(name, prefix: prefix) }
        appends = Counter(label: label(Name.appends), dimensions: dimensions, factory: factory)
        appendedBytes = Counter(label: label(Name.appendedBytes), dimensions: dimensions, factory: factory)
        commits = Counter(label: label(Name.commits), dimensions: dimensions, factory: factory)
        commitRecords = Recorder(label: label(Name.commitRecords), dimensions: dimensions, factory: factory)
        syncDuration = CoreMetrics.Timer(label: label(Name.syncDuration), dimensions: dimensions, factory: factory)
        segmentRolls = Counter(label: label(Name.segmentRolls), dimensions: dimensions, factory: factory)
        preallocationInBackground = CoreMetrics.Timer(
            label: label(Name.preallocationDuration), dimensions: dimensions + [("during", "background")],
            factory: factory)
        preallocationInRoll = CoreMetrics.Timer(
            label: label(Name.preallocationDuration), dimensions: dimensions + [("during", "roll")], factory: factory)
        poisoned = Gauge(label: label(Name.poisoned), dimensions: dimensions, factory: factory)
        convertedBytes = Counter(label: label(Name.convertedBytes), dimensions: dimensions, factory: factory)
        prefaultedBytes = Counter(label: label(Name.prefaultedBytes), dimensions: dimensions, factory: factory)
    }

    static func label(_ name: String, prefix: String) -> String { prefix.isEmpty ? name : prefix + "." + name }

    /// Nil when the factory is swift-metrics' no-op one (the default while nothing bootstrapped
    /// the metrics system): its instruments would discard every value, and each sync would still
    /// pay for the calls (about 1.5 µs of a durable commit's CPU time, BENCHMARKS.md).
    convenience init?(options: Log.Options) {
        let factory = options.metricsFactory ?? MetricsSystem.factory
        if factory is NOOPMetricsHandler { return nil }
        self.init(factory: factory, prefix: options.metricsLabelPrefix, dimensions: options.metricsDimensions)
    }

    func reportAppends(_ counts: Log.AppendCounts) {
        guard counts.records > 0 else { return }
        appends.increment(by: counts.records)
        appendedBytes.increment(by: counts.bytes)
    }

    func reportSync(records: UInt64, nanoseconds: UInt64) {
        // Int64 arguments: the generic BinaryInteger overloads were left unspecialized here.
        commits.increment(by: Int64(1))
        commitRecords.record(Int64(clamping: records))
        syncDuration.recordNanoseconds(Int64(clamping: nanoseconds))
    }

    func reportRecovery(_ report: RecoveryReport, nanoseconds: UInt64) {
        func label(_ name: String) -> String { LogMetrics.label(name, prefix: prefix) }
        CoreMetrics.Timer(
            label: label(Name.recoveryDuration), dimensions: dimensions + [("outcome", report.outcome.rawValue)],
            factory: factory
        ).recordNanoseconds(nanoseconds)
        Counter(label: label(Name.recoveryDroppedBytes), dimensions: dimensions, factory: factory)
            .increment(by: Int64(clamping: report.droppedBytes))
        Counter(label: label(Name.recoveryLostRecords), dimensions: dimensions, factory: factory)
            .increment(by: Int64(clamping: report.lostLSNs.map { $0.upperBound - $0.lowerBound + 1 } ?? 0))
        poisoned.record(0)
    }
}

extension Log {
    /// Data records appended and their payload bytes, not yet handed to the metrics.
    struct AppendCounts {
        var records = 0
        var bytes = 0

        /// Returns the counts and starts again from zero.
        mutating func take() -> AppendCounts {
            defer { self = AppendCounts() }
            return self
        }
    }
}
