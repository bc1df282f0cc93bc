import Dispatch
import Synchronization
import SystemPackage

/// What only the thread leading a group commit touches, under `Log.syncEngine`: the scratch
/// lists reused by every sync (so that a commit does not allocate) and the io_uring.
struct SyncEngine: ~Copyable {
    var ranges: [(segment: Segment, bytes: Range<Int>)] = []
    var installs: [PendingInstall] = []
    var uringRequests: [(descriptor: Int32, bytes: Range<Int>)] = []
    var uringOutcomes: [Errno?] = []
    let ring: IOURing?

    init(ring: consuming IOURing?) { self.ring = ring }
}

/// The syncer thread's reference to its log: weak, so that a log dropped without `close`
/// is deinitialized (and stops the thread).
final class WeakLog: @unchecked Sendable {
    // Unchecked: set once before the thread starts; loading a weak reference is thread-safe.
    weak var log: Log?
    init(_ log: Log) { self.log = log }
}

/// A task waiting in `append(_:) async` or `commit() async`.
struct AsyncWaiter: Sendable {
    let id: UInt64
    let lsn: LSN
    /// Suffix truncations done when its record was appended (see `Log.truncationError`).
    let cutsSeen: Int
    let continuation: CheckedContinuation<Result<LSN, LogError>, Never>
}

// Group commit. Every append is covered by the next sync to start after it; syncs are
// numbered (`State.syncsStarted`), so a caller knows which sync it waits for. A caller that
// needs LSN n durable either finds it durable; or, when no sync is running, leads one itself
// (the serial case: no thread hand-off); or posts a request for the syncer thread, which runs
// syncs back to back while requests are pending (one sync runs while the next batch forms),
// and sleeps. A finished sync wakes, with one futex call, only the callers it covered: they
// sleep on the event count of their sync's parity, so callers that came after it started stay
// asleep. Async callers register a continuation that the syncer resumes: the cooperative pool
// never blocks.
extension Log {
    /// Blocks until `lsn`, written before sync number `sync` started and after `cutsSeen` suffix
    /// truncations, is durable; returns the durable LSN then. Throws `truncated` once a later
    /// `removeAfter` removed it (checked after the watermark: new records reusing its LSN may
    /// have moved the watermark past it).
    func waitUntilDurable(_ lsn: LSN, coveredBy sync: UInt64, cutsSeen: Int) throws(LogError) -> LSN {
        let completion = syncCompleted[Int(sync & 1)]
        var posted = false
        while true {
            let epoch = completion.prepareWait()
            let durable = durableWatermark.load(ordering: .acquiring)
            if let removed = truncationError(lsn, cutsSeen: cutsSeen) { throw removed }
            if durable >= lsn { return durable }
            if refusing.load(ordering: .acquiring) { throw refusal() }
            if !posted {
                // Lead only while the syncer thread is idle: while it runs syncs back to back, a
                // caller taking the lock between two of them would make it block on the lock.
                if syncer?.isBusy != true, let led = syncEngine.withLockIfAvailable({ engine in leadOneSync(&engine) }) {
                    announce(led)
                    continue
                }
                postRequest(lsn)
                posted = true
            }
            completion.wait(epoch)
        }
    }

    /// Suspends (without blocking a thread of the cooperative pool) until `lsn` is durable.
    func awaitDurable(_ lsn: LSN, cutsSeen: Int) async throws(LogError) -> LSN {
        let durable = durableWatermark.load(ordering: .acquiring)
        if let removed = truncationError(lsn, cutsSeen: cutsSeen) { throw removed }
        if durable >= lsn { return durable }
        if refusing.load(ordering: .acquiring) { throw refusal() }
        let id = nextAsyncWaiterID.add(1, ordering: .relaxed).newValue
        FaultInjection.crashPoint("before an async waiter for LSN \(lsn) registers", directory: directory)
        let result = await withCheckedContinuation { continuation in
            registerAsyncWaiter(AsyncWaiter(id: id, lsn: lsn, cutsSeen: cutsSeen, continuation: continuation))
            // Even when the registration resumed waiters: a cut since `cutsSeen` that kept this
            // record puts it back in the list, still needing a sync.
            postRequest(lsn)
        }
        return try result.get()
    }

    /// Suspends until `lsn` is durable or the log refuses writes, like `awaitDurable`, but
    /// without asking for a sync: a follower waits for the writer's own commits. Nil when the
    /// task was cancelled.
    func awaitDurableWithoutSyncing(_ lsn: LSN, cutsSeen cuts: Int) async -> Result<LSN, LogError>? {
        let id = nextAsyncWaiterID.add(1, ordering: .relaxed).newValue
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                // The caller's count: a cut since it looked resumes the waiter at once.
                registerAsyncWaiter(AsyncWaiter(id: id, lsn: lsn, cutsSeen: cuts, continuation: continuation))
                // A cancellation before the registration found nothing to remove.
                if Task.isCancelled { cancelAsyncWaiter(id) }
            }
        } onCancel: {
            cancelAsyncWaiter(id)
        }
        return Task.isCancelled ? nil : result
    }

    /// Adds `waiter`, resuming it at once if its LSN became durable, the log started refusing
    /// writes or a cut happened since its caller looked.
    private func registerAsyncWaiter(_ waiter: AsyncWaiter) {
        asyncWaiters.withLock { $0.append(waiter) }
        asyncWaiterCount.add(1, ordering: .sequentiallyConsistent)
        // A sync that finished between the caller's check and the registration did not see
        // this waiter.
        guard durableWatermark.load(ordering: .sequentiallyConsistent) >= waiter.lsn
            || refusing.load(ordering: .sequentiallyConsistent)
            || suffixCutCount.load(ordering: .sequentiallyConsistent) != waiter.cutsSeen
        else { return }
        resumeAsyncWaiters()
    }

    /// Resumes the waiter `id`, if it still waits, with the durable LSN of now.
    private func cancelAsyncWaiter(_ id: UInt64) {
        let waiter = asyncWaiters.withLock { waiters -> AsyncWaiter? in
            guard let index = waiters.firstIndex(where: { $0.id == id }) else { return nil }
            return waiters.remove(at: index)
        }
        guard let waiter else { return }
        asyncWaiterCount.subtract(1, ordering: .sequentiallyConsistent)
        waiter.continuation.resume(returning: .success(durableWatermark.load(ordering: .sequentiallyConsistent)))
    }

    /// The watermark file, kept alive (mapped) by the caller's reference even if close drops it.
    var watermark: WatermarkFile? { watermarkFile.withLock { $0 } }

    /// Asks the syncer thread for a sync covering `lsn`.
    private func postRequest(_ lsn: LSN) {
        var current = requestedLSN.load(ordering: .relaxed)
        while current < lsn {
            let (exchanged, original) = requestedLSN.compareExchange(
                expected: current, desired: lsn, ordering: .sequentiallyConsistent)
            if exchanged { break }
            current = original
        }
        syncer?.wake.notifyAll()
    }

    /// The syncer thread's loop: while a request is not durable yet, run the next sync.
    static func runSyncer(_ syncer: LoopThread, log weakLog: WeakLog) {
        syncer.runRounds(log: weakLog) { log in
            guard log.requestedLSN.load(ordering: .sequentiallyConsistent)
                > log.durableWatermark.load(ordering: .sequentiallyConsistent),
                !log.refusing.load(ordering: .acquiring)
            else {
                // Callers lead their own syncs again while this thread sleeps; a request posted
                // after the check above moved the epoch, so the wait returns at once.
                syncer.isBusy = false
                return .idle
            }
            syncer.isBusy = true
            let led = log.syncEngine.withLock { engine in log.leadOneSync(&engine) }
            if led == nil { log.dropUnwrittenRequest() }
            if let finished = led {
                let wakerIsIdle = log.announcedSync.load(ordering: .sequentiallyConsistent)
                    >= log.finishedSync.load(ordering: .sequentiallyConsistent)
                if log.requestedLSN.load(ordering: .sequentiallyConsistent)
                    > log.durableWatermark.load(ordering: .sequentiallyConsistent),
                    !log.refusing.load(ordering: .acquiring), let waker = log.waker,
                    !wakerIsIdle || log.wakeUps(for: finished) > Log.inlineWakeUps
                {
                    // More callers wait: start their sync now and let the waker pay for the
                    // wake-ups (one try_to_wake_up per covered caller) meanwhile. The callers
                    // then also wait for the waker to run, which only many wake-ups repay; and
                    // once it has syncs to announce, it announces all of them, in order.
                    log.finishedSync.store(finished, ordering: .sequentiallyConsistent)
                    waker.wake.notifyAll()
                } else {
                    log.announce(finished)
                    // Only this thread moves `finishedSync`, and the waker acts only when it does:
                    // with nothing handed over, the waker's next round starts after this sync.
                    if wakerIsIdle { log.announcedSync.store(finished, ordering: .sequentiallyConsistent) }
                }
            }
            return .worked
        }
    }

    /// The waker thread's loop: announces the syncs the syncer finished and handed over.
    static func runWaker(_ waker: LoopThread, log weakLog: WeakLog) {
        waker.runRounds(log: weakLog) { log in
            let finished = log.finishedSync.load(ordering: .sequentiallyConsistent)
            let announced = log.announcedSync.load(ordering: .sequentiallyConsistent)
            guard finished > announced else { return .idle }
            // Two parities cover every sync finished since the last round; a caller woken for a
            // sync that is not its own re-checks and sleeps again.
            if finished - announced > 1 { log.syncCompleted[Int((finished - 1) & 1)].notifyAll() }
            log.announce(finished)
            log.announcedSync.store(finished, ordering: .sequentiallyConsistent)
            return .worked
        }
    }

    /// Up to this many wake-ups the syncer makes itself rather than hand them to the waker: on 2
    /// cores, 4 and 16 thread writers commit about 1.5 times as often that way, and 64 no less
    /// often (BENCHMARKS.md, "Who wakes a sync's callers").
    static let inlineWakeUps = 16

    /// What announcing sync `finished` would cost in wake-ups: the threads asleep on its parity
    /// (the callers it covered; those of the next sync sleep on the other one). With tasks
    /// waiting, `Int.max`: resuming them costs the syncer more than it saves them (measured).
    func wakeUps(for finished: UInt64) -> Int {
        asyncWaiterCount.load(ordering: .relaxed) > 0 ? Int.max : syncCompleted[Int(finished & 1)].sleepers
    }

    /// Nothing was left to sync while a request was pending: the request was for records a
    /// `removeAfter` removed (above `writtenLSN`). It is lowered so that the syncer does not spin
    /// on it.
    func dropUnwrittenRequest() {
        state.withLock { state in forgetRequests(above: state.writtenLSN) }
    }

    /// Lowers the pending request to `written`, the `writtenLSN` of now, read under the state
    /// lock, which must be held: a caller posts only after its append, so every request above
    /// `written` is for removed records, and no new one can come in before the lock is released.
    /// (Lowered to the durable LSN instead, or after the lock is released, it could erase the
    /// request of a caller that appended meanwhile and now sleeps without a sync coming.)
    func forgetRequests(above written: LSN) {
        var current = requestedLSN.load(ordering: .sequentiallyConsistent)
        while current > written {
            let (exchanged, original) = requestedLSN.compareExchange(
                expected: current, desired: written, ordering: .sequentiallyConsistent)
            if exchanged { break }
            current = original
        }
    }

    /// Wakes the callers a finished sync covered (everyone, when the log started refusing).
    func announce(_ finished: UInt64?) {
        if let finished, !refusing.load(ordering: .acquiring) {
            syncCompleted[Int(finished & 1)].notifyAll()
        } else {
            syncCompleted[0].notifyAll()
            syncCompleted[1].notifyAll()
        }
        if asyncWaiterCount.load(ordering: .sequentiallyConsistent) > 0 { resumeAsyncWaiters() }
    }

    /// Resumes every async waiter whose LSN is durable (all of them, with the error, once the
    /// log refuses writes), and with `truncated` every one whose record a `removeAfter` removed.
    func resumeAsyncWaiters() {
        let failure: LogError? = refusing.load(ordering: .sequentiallyConsistent) ? refusal() : nil
        let durable = durableWatermark.load(ordering: .sequentiallyConsistent)
        let cuts = suffixCutCount.load(ordering: .sequentiallyConsistent)
        var candidates: [AsyncWaiter] = []
        asyncWaiters.withLock { waiters in
            waiters.removeAll { waiter in
                guard failure != nil || waiter.lsn <= durable || waiter.cutsSeen != cuts else { return false }
                candidates.append(waiter)
                return true
            }
        }
        guard !candidates.isEmpty else { return }
        var resumed = 0
        var stillWaiting: [AsyncWaiter] = []
        for waiter in candidates {
            let result: Result<LSN, LogError>
            if let removed = truncationError(waiter.lsn, cutsSeen: waiter.cutsSeen) {
                result = .failure(removed)
            } else if let failure, waiter.lsn > durable {
                result = .failure(failure)
            } else if waiter.lsn <= durable {
                result = .success(durable)
            } else {
                // A truncation since its append left its record in place: it waits on.
                stillWaiting.append(AsyncWaiter(id: waiter.id, lsn: waiter.lsn, cutsSeen: cuts, continuation: waiter.continuation))
                continue
            }
            waiter.continuation.resume(returning: result)
            resumed += 1
        }
        if resumed > 0 { asyncWaiterCount.subtract(resumed, ordering: .sequentiallyConsistent) }
        guard let lowest = stillWaiting.map(\.lsn).min() else { return }
        asyncWaiters.withLock { $0 += stillWaiting }
        // A sync that finished while they were out of the list did not see them.
        if durableWatermark.load(ordering: .sequentiallyConsistent) >= lowest
            || refusing.load(ordering: .sequentiallyConsistent)
            || suffixCutCount.load(ordering: .sequentiallyConsistent) != cuts
        {
            resumeAsyncWaiters()
        }
    }

    /// The error for a caller whose record is not durable once the log refuses writes: the
    /// failure that poisoned it, or `closed`.
    func refusal() -> LogError {
        state.withLock { state in
            state.poison ?? LogError(.closed, "the log was closed before the record was durable", path: directory)
        }
    }

    /// Runs one sync covering every record written now, as the only syncer, and returns its
    /// number (nil when there was nothing to sync). A failure poisons the log (waiters then see
    /// `refusing`); it is never retried.
    func leadOneSync(_ engine: inout SyncEngine) -> UInt64? {
        engine.ranges.removeAll(keepingCapacity: true)
        engine.installs.removeAll(keepingCapacity: true)
        var unreported = Log.AppendCounts()
        let started = state.withLock { state -> (LSN, UInt64)? in
            if state.isPoisoned || state.isClosed || state.durableLSN >= state.writtenLSN { return nil }
            if options.commitAlignment != .none { padToCommitAlignment(&state) }
            state.syncsStarted += 1
            for open in state.segments.reversed() {
                guard let pending = open.pendingInstall else { break }
                engine.installs.insert(pending, at: 0)
            }
            // Only the newest segments can hold unsynced bytes: stop at the first older
            // segment whose records are all synced.
            for index in state.segments.indices.reversed() {
                // Fields one by one: a copy of the whole OpenSegment retains and releases its
                // references on every sync.
                let (end, syncedEnd) = (state.segments[index].end, state.segments[index].syncedEnd)
                if end > syncedEnd {
                    engine.ranges.append((state.segments[index].segment, syncedEnd..<end))
                } else if end > Format.segmentHeaderSize {
                    break
                }
            }
            unreported = state.unreportedAppends.take()
            return (state.writtenLSN, state.syncsStarted)
        }
        guard let (target, number) = started else { return nil }
        metrics?.reportAppends(unreported)
        // Syncs run one at a time and only they move it: what this one covers starts here.
        let previouslyDurable = durableWatermark.load(ordering: .relaxed)
        let syncStarted = metrics == nil ? 0 : Log.monotonicNanoseconds()
        engine.ranges.reverse()
        do throws(LogError) {
            try awaitInstalls(engine.installs)
            try sync(&engine)
        } catch {
            poison(error)
            return number
        }
        if let metrics {
            metrics.reportSync(records: target - previouslyDurable, nanoseconds: Log.monotonicNanoseconds() - syncStarted)
        }
        FaultInjection.crashPoint("after sync \(number), before its callers are woken", directory: directory)
        let convertMore = state.withLock { state in
            for pending in engine.installs {
                if let index = state.segments.lastIndex(where: { $0.segment === pending.segment }) {
                    state.segments[index].pendingInstall = nil
                }
            }
            for (segment, bytes) in engine.ranges {
                if let index = state.segments.lastIndex(where: { $0.segment === segment }) {
                    state.segments[index].syncedEnd = max(state.segments[index].syncedEnd, bytes.upperBound)
                }
            }
            state.durableLSN = max(state.durableLSN, target)
            durableWatermark.store(state.durableLSN, ordering: .sequentiallyConsistent)
            return converter != nil && nextConversion(state) != nil
        }
        if convertMore {
            conversionRequested.store(true, ordering: .releasing)
            converter?.wake.notifyAll()
        }
        // Syncs run one at a time, so the published LSN only grows. Followers are woken here,
        // not by the waker thread: one futex call, and no second thread wake-up in series
        // before theirs (BENCHMARKS.md, "Tail latency").
        if let watermark {
            watermark.publish(target)
            watermark.notifyFollowers()
        }
        return number
    }

    /// Records the first failure; `durableLSN` never moves again and every waiter not yet
    /// durable gets `failure`.
    func poison(_ failure: LogError) {
        let isFirst = state.withLock { state in
            defer { state.poison = state.poison ?? failure }
            return state.poison == nil
        }
        refusing.store(true, ordering: .sequentiallyConsistent)
        if isFirst { reportPoisoned(by: failure) }
        wakeEveryWaiter()
    }

    /// Makes every blocked and async waiter look again: after the log started refusing writes
    /// (a waiter woken by no sync would sleep on until `close`) or a cut removed records.
    /// Call without the state lock held.
    func wakeEveryWaiter() {
        syncCompleted.forEach { $0.notifyAll() }
        resumeAsyncWaiters()
    }

    /// Waits until the rolled-into segments are installed. A failed install fails the sync.
    private func awaitInstalls(_ installs: [PendingInstall]) throws(LogError) {
        for pending in installs {
            if let error = pending.wait() {
                throw LogError.system(
                    error, "installing a new segment failed; the log refuses writes until it is reopened",
                    path: pending.segment.path)
            }
        }
    }

    /// Makes `engine.ranges` durable in the log's mode, noting each completed sync for tests.
    func sync(_ engine: inout SyncEngine) throws(LogError) {
        func failure(_ error: Errno, _ segment: Segment, _ bytes: Range<Int>) -> LogError {
            if FaultInjection.isObserving {
                FaultInjection.emit(.syncFailed(path: segment.descriptor.currentPath(),
                                                pages: segment.mapping.pages(covering: bytes)))
            }
            return LogError.system(
                error, "\(options.sync.rawValue) failed; the log refuses writes until it is reopened",
                path: segment.path, offset: UInt64(bytes.lowerBound))
        }
        switch options.sync {
        case .none:
            return
        case .msync, .fdatasync:
            for (segment, bytes) in engine.ranges {
                let pages = segment.mapping.pages(covering: bytes)
                FaultInjection.crashPoint("before \(options.sync.rawValue)", directory: directory)
                do throws(Errno) {
                    try FaultInjection.check(.sync, directory: directory)
                    if options.sync == .msync {
                        try segment.mapping.sync(pages: pages)
                        if FaultInjection.isObserving {
                            FaultInjection.emit(.pagesSynced(path: segment.descriptor.currentPath(), pages: pages))
                        }
                    } else {
                        try segment.descriptor.dataSync()
                    }
                } catch { throw failure(error, segment, bytes) }
                FaultInjection.noteSync(directory: directory, segment: segment.name, bytes: pages)
            }
        case .uring:
            engine.uringRequests.removeAll(keepingCapacity: true)
            for (segment, bytes) in engine.ranges {
                engine.uringRequests.append((segment.descriptor.raw.rawValue, segment.mapping.pages(covering: bytes)))
            }
            FaultInjection.crashPoint("before uring fdatasync", directory: directory)
            engine.ring!.dataSync(engine.uringRequests, outcomes: &engine.uringOutcomes)
            for ((segment, bytes), outcome) in zip(engine.ranges, engine.uringOutcomes) {
                // An injected failure stands for the completion's result, as a real one would.
                do throws(Errno) {
                    try FaultInjection.check(.sync, directory: directory)
                    if let outcome { throw outcome }
                } catch { throw failure(error, segment, bytes) }
                let pages = segment.mapping.pages(covering: bytes)
                if FaultInjection.isObserving {
                    FaultInjection.emit(.pagesSynced(path: segment.descriptor.currentPath(), pages: pages))
                }
                FaultInjection.noteSync(directory: directory, segment: segment.name, bytes: pages)
            }
        }
    }
}
