#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization
import SystemPackage

/// A log's background thread that sleeps on an event count between rounds of work: the syncer,
/// which runs group-commit syncs back to back while callers wait, and the waker, which wakes
/// the callers of a finished sync while the syncer already runs the next one. A plain pthread,
/// not a Dispatch or cooperative-pool thread, because it blocks in msync/fdatasync/io_uring
/// waits and futex sleeps for the log's lifetime.
final class LoopThread: Sendable {
    /// Notified when there is work (or the log closes).
    let wake = EventCount()
    private let stopping = Atomic<Bool>(false)
    private let busy = Atomic<Bool>(false)
    private let thread: Mutex<pthread_t?>

    init() { thread = Mutex(nil) }

    /// Starts the thread; `body` runs once and should loop until `isStopping`.
    func start(_ body: @escaping @Sendable (LoopThread) -> Void) {
        final class Start: Sendable {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        // The thread keeps this object alive until `body` returns; `body` must hold its log only
        // weakly between rounds, so that dropping the log still stops the thread.
        let start = Start { body(self) }
        var handle = pthread_t()
        let created = pthread_create(
            &handle, nil,
            { context in
                Unmanaged<Start>.fromOpaque(context!).takeRetainedValue().body()
                return nil
            }, Unmanaged.passRetained(start).toOpaque())
        precondition(created == 0, "pthread_create failed: \(created)")
        thread.withLock { $0 = handle }
    }

    var isStopping: Bool { stopping.load(ordering: .acquiring) }

    /// What one round of `runRounds` did.
    enum Round {
        /// Did some work: look for more at once.
        case worked
        /// Found nothing to do: sleep until notified.
        case idle
        /// Stop for good.
        case finished
        /// Run `io` with the log released: slow I/O that needs only what it captured, so that a
        /// drop of the log meanwhile runs its deinit, and the lock release, on the dropping
        /// thread and not later on this one. Then `then`, with the log loaded again and `io`'s
        /// error, gives the round's outcome; the thread finishes if the log is gone by then.
        case withoutLog(_ io: () throws(Errno) -> Void, then: (Log, Errno?) -> Round)
    }

    /// The loop of every log thread (syncer, waker, converter, prefaulter): runs `round` on the
    /// log until it finishes, the log is gone or the thread is stopped, sleeping after each
    /// idle round until `wake` is notified. The log is held only during a
    /// round (and not during its `withoutLog` part), so that dropping it still stops the thread.
    func runRounds(log weakLog: WeakLog, _ round: (Log) -> Round) {
        while true {
            // The epoch is read before the stop flag: a `stop()` between the two then moves
            // the epoch, and the wait below returns at once instead of sleeping forever.
            let epoch = wake.prepareWait()
            if isStopping { return }
            guard let log = weakLog.log else { return }
            var outcome = round(log)
            _ = consume log
            while case .withoutLog(let io, let then) = outcome {
                let failure: Errno?
                do throws(Errno) {
                    try io()
                    failure = nil
                } catch {
                    failure = error
                }
                guard let log = weakLog.log else { return }
                outcome = then(log, failure)
            }
            switch outcome {
            case .worked: continue
            case .finished: return
            case .idle, .withoutLog: break
            }
            wake.wait(epoch)
        }
    }

    /// Whether the thread is running syncs (set by the thread itself).
    var isBusy: Bool {
        get { busy.load(ordering: .relaxed) }
        set { busy.store(newValue, ordering: .relaxed) }
    }

    /// Asks the thread to finish and waits for it (unless called from the thread itself).
    func stop() {
        stopping.store(true, ordering: .sequentiallyConsistent)
        wake.notifyAll()
        guard let handle = thread.withLock({ (handle: inout pthread_t?) -> pthread_t? in
            defer { handle = nil }
            return handle
        }) else { return }
        if pthread_equal(handle, pthread_self()) != 0 {
            pthread_detach(handle)
        } else {
            pthread_join(handle, nil)
        }
    }
}
