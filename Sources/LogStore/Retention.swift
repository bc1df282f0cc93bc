#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import SystemPackage

/// Which old segments a log deletes (with `removeBefore`, so whole segments, oldest first, and
/// never the active one). A segment goes when any limit set asks for it; nil limits nothing.
///
/// Applied in the background: a task on its own queue runs every `checkInterval` and after each
/// roll, never on the append or commit path; `Log.applyRetention()` runs it now. Segment files
/// are unlinked, never shortened, so a reader with a deleted segment mapped (in this process or
/// another) keeps reading it without SIGBUS; the space comes back when its last mapping goes.
/// A segment holding records that are not durable yet is kept (except in `SyncMode.none`,
/// where nothing ever becomes durable).
public struct RetentionPolicy: Sendable, Equatable {
    /// Keep at most this many bytes of segment files (each counts its full allocated size);
    /// the active segment is kept even when it alone is larger.
    public var maxBytes: Int?
    /// Keep at most this many segments (at least 1 is always kept).
    public var maxSegments: Int?
    /// Delete a segment once its newest record is older than this. A segment's age is its
    /// file's modification time (`st_mtime`), which the kernel moves whenever the file is
    /// written, through the mapping included, so it is at least the time of the segment's last
    /// record; nothing is added to the format. Copying or touching a segment file makes it
    /// younger, never older, so a mistake keeps records longer, never drops them early.
    public var maxAge: Duration?
    /// How often the background task looks (it also runs after every roll).
    public var checkInterval: Duration

    public init(maxBytes: Int? = nil, maxSegments: Int? = nil, maxAge: Duration? = nil,
                checkInterval: Duration = .seconds(10)) {
        self.maxBytes = maxBytes
        self.maxSegments = maxSegments
        self.maxAge = maxAge
        self.checkInterval = checkInterval
    }

    /// Whether any limit is set.
    public var isEnabled: Bool { maxBytes != nil || maxSegments != nil || maxAge != nil }
}

extension Log {
    /// Applies `policy` (by default `options.retention`) now: deletes the oldest segments it
    /// asks for with `removeBefore`. Returns what was removed, nil when nothing was.
    @discardableResult
    public func applyRetention(_ policy: RetentionPolicy? = nil) throws(LogError) -> TruncationPlan? {
        guard !isReadOnly else { throw LogError(.readOnly, "the log was opened read-only", path: directory) }
        let policy = policy ?? options.retention
        let (segments, durable) = try state.withLock { (state) throws(LogError) in
            try state.checkUsable()
            return (state.segments.map(\.segment), state.durableLSN)
        }
        var remove = 0
        if let maxSegments = policy.maxSegments { remove = max(remove, segments.count - max(1, maxSegments)) }
        if let maxBytes = policy.maxBytes {
            var total = segments.reduce(0) { $0 + $1.size }
            var count = 0
            while count < segments.count - 1, total > maxBytes {
                total -= segments[count].size
                count += 1
            }
            remove = max(remove, count)
        }
        if let maxAge = policy.maxAge {
            let cutoff = RetentionClock.now() - RetentionClock.nanoseconds(maxAge)
            var count = 0
            while count < segments.count - 1, let modified = segments[count].modificationTime(), modified < cutoff {
                count += 1
            }
            remove = max(remove, count)
        }
        remove = min(remove, segments.count - 1)
        if options.sync != .none {
            while remove > 0, segments[remove].header.baseLSN - 1 > durable { remove -= 1 }
        }
        guard remove > 0 else { return nil }
        let lsn = segments[remove].header.baseLSN
        let plan = try planRemoveBefore(lsn)
        try removeBefore(lsn)
        return plan.isEmpty ? nil : plan
    }
}

/// Wall-clock nanoseconds, as file modification times are kept.
enum RetentionClock {
    static func now() -> Int64 {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }

    static func nanoseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }
}

extension Segment {
    /// `fstat(2)`'s `st_mtim` of the segment file, in wall-clock nanoseconds (nil on error).
    func modificationTime() -> Int64? {
        var info = stat()
        guard fstat(descriptor.raw.rawValue, &info) == 0 else { return nil }
        return Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
    }
}

/// Runs a log's retention policy on its own queue: every `interval`, and when kicked (after a
/// roll). Holds the log weakly, so a log dropped without `close` goes away.
final class RetentionWorker: @unchecked Sendable {
    // Unchecked: `timer` is created in init, then only configured once by `start` before it
    // is resumed, and cancelled (DispatchSource is thread-safe); `log` is set once by `start`
    // before any round can run (rounds run on `queue` after `resume`/`kick`).
    private let queue = DispatchQueue(label: "LogStore.Retention")
    private let timer: DispatchSourceTimer
    private let interval: Int
    private var log: WeakLog?

    init(interval period: Duration) {
        interval = Int(max(1_000_000, RetentionClock.nanoseconds(period)))
        timer = DispatchSource.makeTimerSource(queue: queue)
    }

    /// Starts the rounds for `log` (once the log is fully initialized).
    func start(_ log: WeakLog) {
        self.log = log
        timer.schedule(deadline: .now() + .nanoseconds(interval), repeating: .nanoseconds(interval))
        timer.setEventHandler { RetentionWorker.run(log) }
        timer.resume()
    }

    private static func run(_ weakLog: WeakLog) {
        guard let log = weakLog.log else { return }
        // A failure poisons the log (if it got that far) or changes nothing; either way the
        // next round, or the application's next call, reports it.
        _ = try? log.applyRetention()
    }

    /// Runs the policy soon, off the caller's thread.
    func kick() {
        guard let log else { return }
        queue.async { RetentionWorker.run(log) }
    }

    /// Stops the timer without waiting (safe from any thread, the worker's own included).
    func cancel() { timer.cancel() }

    /// Stops the timer and waits for a round in progress.
    func stop() {
        timer.cancel()
        queue.sync {}
    }
}
