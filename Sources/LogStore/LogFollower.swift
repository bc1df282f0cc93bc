#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinuxShims
import Dispatch
import Synchronization

/// Follows a log that another process (or this one) writes, read-only: returns each record once
/// it is durable, in LSN order, exactly once, across segment rolls, writer restarts and
/// retention removing old segments. Never takes the writer lock and never writes a byte of the
/// log directory.
///
/// How it learns what is durable: the writer keeps the durable LSN in the directory's
/// `DURABLE` file and bumps a futex word in it after every completed sync (FORMAT.md §12); a
/// follower sleeps on that word, so an idle follower costs one wake-up per
/// `Options.watermarkTimeout` (to notice a replaced file). Without that file (a writer of an
/// older version, or none) it polls every `Options.pollInterval` and returns what the log
/// itself proves durable: records that later records or segment headers claim durable, or all
/// of them after a clean close — one commit behind a live writer.
///
/// Use from a command-line tool:
///
/// ```swift
/// let follower = try LogFollower(directory, from: firstLSN)
/// follower.stopOnSignals([SIGINT, SIGTERM])   // or call stop() from anywhere
/// while let record = try follower.next() { print(record.lsn) }   // nil once stopped
/// ```
///
/// or `for try await record in follower.records { … }` in async code (the waits then run on a
/// thread of the follower's own, never the cooperative pool; cancelling the task ends the loop).
///
/// One consumer at a time: `next`, `nextIfAvailable` and `records` share the position, and
/// concurrent calls are serialized. Errors: `lsnOutOfRange` when the records at the position
/// were removed before they were read (retention) or when the log's durable LSN went back below
/// a record already returned (a writer's recovery dropped durable records); `corruption` when
/// a record that is durable does not check out.
public final class LogFollower: Sendable {
    public struct Options: Sendable {
        /// Longest sleep on the watermark before checking that the `DURABLE` file is still the
        /// one mapped (a writer never replaces it; an operator might).
        public var watermarkTimeout: Duration
        /// How often a follower without a watermark file looks for new records.
        public var pollInterval: Duration

        public init(watermarkTimeout: Duration = .seconds(1), pollInterval: Duration = .milliseconds(100)) {
            self.watermarkTimeout = watermarkTimeout
            self.pollInterval = pollInterval
        }
    }

    public let directory: String
    public let options: Options
    public let logID: LogID
    private let position: Mutex<FollowerPosition>
    private let stopping = Atomic<Bool>(false)
    /// Bumped to wake this follower's waits: by `stop()`, and by a cancelled `records` iterator.
    private let wakeWord = WakeWord()
    /// Runs the blocking waits of `records` off the cooperative pool.
    private let waitQueue = DispatchQueue(label: "LogStore.LogFollower")
    private let signalSources = Mutex<[SignalSource]>([])

    /// Starts following the log in `directory` at `start` (default: its first LSN; an LSN before
    /// the first one starts at the first; a future LSN waits for it). Throws `notALog` when the
    /// directory holds no segment.
    public init(_ directory: String, from start: LSN? = nil, options: Options = Options()) throws(LogError) {
        self.directory = directory
        self.options = options
        let segments = try FollowerPosition.segmentFiles(directory)
        guard !segments.isEmpty else { throw LogError(.notALog, "no segment files in the directory", path: directory) }
        // Newest first: a tail usually starts in the last segment.
        var chosen: Segment?
        for (_, name) in segments.reversed() {
            let segment = try Segment.open(directory: directory, name: name, writable: false)
            chosen = segment
            if segment.header.baseLSN <= (start ?? 0) { break }
        }
        let segment = chosen!
        logID = segment.header.logID
        position = Mutex(
            FollowerPosition(directory: directory, logID: logID, segment: segment,
                             startLSN: max(start ?? 0, segment.header.baseLSN)))
    }

    /// The LSN the next returned record will have.
    public var nextLSN: LSN { position.withLock { $0.nextLSN } }

    /// The durable LSN as this follower last saw it.
    public var durableLSN: LSN { position.withLock { $0.durableLSN } }

    /// Whether the follower is woken by a writer's `DURABLE` file (false: it polls).
    public var isFollowingWatermark: Bool { position.withLock { $0.watermark != nil } }

    /// The next durable record if there is one now, else nil. Never blocks on the writer.
    public func nextIfAvailable() throws(LogError) -> Log.Record? {
        try position.withLock { (position) throws(LogError) in
            try position.nextRecord(options: options).record
        }
    }

    /// Blocks until the next record is durable and returns it; nil once `stop()` was called.
    public func next() throws(LogError) -> Log.Record? {
        while true {
            let wake = wakeWord.value
            if stopping.load(ordering: .sequentiallyConsistent) { return nil }
            let (record, wait) = try position.withLock { (position) throws(LogError) in
                try position.nextRecord(options: options)
            }
            if let record { return record }
            waitForChange(wait, wake: wake)
        }
    }

    /// Makes a blocked or later `next()` return nil, and ends `records`. Callable from any
    /// thread (not from a signal handler: use `stopOnSignals`).
    public func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        wakeWord.notifyAll()
    }

    /// Calls `stop()` when one of `signals` arrives (for `logctl tail -f`: SIGINT), through a
    /// Dispatch signal source; the signals' default action is turned off (`SIG_IGN`) for the
    /// whole process, so that only the follower sees them.
    public func stopOnSignals(_ signals: [Int32]) {
        let sources = signals.map { number in
            _ = signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { [weak self] in self?.stop() }
            source.resume()
            return SignalSource(source: source)
        }
        signalSources.withLock { $0.append(contentsOf: sources) }
    }

    deinit {
        for source in signalSources.withLock({ $0 }) { source.source.cancel() }
    }

    /// The records from the position on, each once it is durable. Ends when the task is
    /// cancelled or `stop()` is called; throws what `next()` throws.
    public var records: Records { Records(follower: self) }

    public struct Records: AsyncSequence, Sendable {
        public typealias Element = Log.Record
        public typealias Failure = LogError
        let follower: LogFollower

        public func makeAsyncIterator() -> Iterator { Iterator(follower: follower) }

        public struct Iterator: AsyncIteratorProtocol {
            public typealias Element = Log.Record
            public typealias Failure = LogError
            let follower: LogFollower

            public mutating func next() async throws(LogError) -> Log.Record? {
                try await follower.nextAsync()
            }

            public mutating func next(isolation actor: isolated (any Actor)?) async throws(LogError) -> Log.Record? {
                try await follower.nextAsync()
            }
        }
    }

    private func nextAsync() async throws(LogError) -> Log.Record? {
        while true {
            let wake = wakeWord.value
            if stopping.load(ordering: .sequentiallyConsistent) || Task.isCancelled { return nil }
            let (record, wait) = try position.withLock { (position) throws(LogError) in
                try position.nextRecord(options: options)
            }
            if let record { return record }
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    waitQueue.async { [self] in
                        waitForChange(wait, wake: wake)
                        continuation.resume()
                    }
                }
            } onCancel: {
                wakeWord.notifyAll()
            }
        }
    }

    /// Sleeps until the watermark moves, the wake word moves past `wake`, or the wait's timeout.
    private func waitForChange(_ wait: FollowerPosition.Wait, wake: UInt32) {
        if let watermark = wait.watermark {
            if !watermark.wait(epoch: wait.epoch, stop: wakeWord.pointer, stopEpoch: wake,
                               timeout: options.watermarkTimeout)
            {
                position.withLock { $0.dropWatermark() }
            }
        } else {
            _ = logstore_shared_epoch_wait(nil, 0, wakeWord.pointer, wake, options.pollInterval.nanoseconds)
        }
    }
}

/// A process-private futex word: waits sleep on it beside the watermark, and bumping it wakes them.
private final class WakeWord: @unchecked Sendable {
    // Unchecked: the word is only accessed through the C functions, atomically.
    let pointer: UnsafeMutablePointer<UInt32>

    init() {
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: 0)
    }

    deinit { pointer.deallocate() }

    var value: UInt32 { logstore_shared_epoch_load(pointer) }

    func notifyAll() { logstore_private_word_notify_all(pointer) }
}

private struct SignalSource: @unchecked Sendable {
    // Unchecked: only created, kept and cancelled; Dispatch sources are thread-safe.
    let source: any DispatchSourceSignal
}
