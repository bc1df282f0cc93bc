// A fixed set of threads that work through a batch of units together, batch after batch: the
// concurrent-writer benchmarks start their writer threads once (in a benchmark's setup) and
// run one batch per benchmark iteration, so that neither thread creation nor its allocations
// land in the measured window.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

public final class WorkerGang: @unchecked Sendable {
    // Unchecked: `generation`, `running`, `stopping` and `threads` are only touched under
    // `mutex`; the rest is immutable or atomic.
    public let threadCount: Int
    private let work: @Sendable () throws -> Void
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    /// Signalled (broadcast) when a batch starts or the gang stops.
    private let started: UnsafeMutablePointer<pthread_cond_t>
    /// Signalled when the last worker of a batch is done.
    private let finished: UnsafeMutablePointer<pthread_cond_t>
    private var generation: UInt64 = 0
    private var running = 0
    private var stopping = false
    private var threads: [pthread_t] = []
    /// Units of the current batch not claimed yet (goes below 0 once they all are).
    private let unclaimed = Atomic<Int>(0)
    /// The first error a unit threw in the current batch.
    private let failure = Mutex<String?>(nil)

    /// Starts `threads` threads. Each unit of a batch is one call of `work`, on whichever thread
    /// claims it next.
    public init(threads: Int, work: @escaping @Sendable () throws -> Void) {
        precondition(threads > 0)
        threadCount = threads
        self.work = work
        mutex = .allocate(capacity: 1)
        started = .allocate(capacity: 1)
        finished = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(started, nil)
        pthread_cond_init(finished, nil)
        final class Context {
            let gang: WorkerGang
            init(_ gang: WorkerGang) { self.gang = gang }
        }
        var handles: [pthread_t] = []
        for _ in 0..<threads {
            var handle = pthread_t()
            let created = pthread_create(
                &handle, nil,
                { context in
                    Unmanaged<Context>.fromOpaque(context!).takeRetainedValue().gang.workerLoop()
                    return nil
                }, Unmanaged.passRetained(Context(self)).toOpaque())
            precondition(created == 0, "pthread_create failed: \(created)")
            handles.append(handle)
        }
        pthread_mutex_lock(mutex)
        self.threads = handles
        pthread_mutex_unlock(mutex)
    }

    deinit {
        pthread_cond_destroy(started)
        pthread_cond_destroy(finished)
        pthread_mutex_destroy(mutex)
        started.deallocate()
        finished.deallocate()
        mutex.deallocate()
    }

    /// Runs `units` calls of `work` spread over the threads (each takes the next unclaimed unit
    /// until none is left) and returns once all have returned: nil, or the first error's
    /// description (the rest of the batch is then abandoned). Allocates nothing unless a unit
    /// fails.
    public func run(units: Int) -> String? {
        unclaimed.store(units, ordering: .relaxed)
        pthread_mutex_lock(mutex)
        precondition(!stopping && running == 0)
        running = threadCount
        generation &+= 1
        pthread_cond_broadcast(started)
        while running > 0 { pthread_cond_wait(finished, mutex) }
        pthread_mutex_unlock(mutex)
        return failure.withLock { failure in
            defer { failure = nil }
            return failure
        }
    }

    /// Stops and joins the threads. The gang cannot run batches afterwards.
    public func stop() {
        pthread_mutex_lock(mutex)
        stopping = true
        let handles = threads
        threads = []
        pthread_cond_broadcast(started)
        pthread_mutex_unlock(mutex)
        for handle in handles { pthread_join(handle, nil) }
    }

    private func workerLoop() {
        var seen: UInt64 = 0
        while true {
            pthread_mutex_lock(mutex)
            while generation == seen && !stopping { pthread_cond_wait(started, mutex) }
            if stopping {
                pthread_mutex_unlock(mutex)
                return
            }
            seen = generation
            pthread_mutex_unlock(mutex)

            while unclaimed.subtract(1, ordering: .relaxed).oldValue > 0 {
                do {
                    try work()
                } catch {
                    failure.withLock { if $0 == nil { $0 = "\(error)" } }
                    unclaimed.store(0, ordering: .relaxed)
                    break
                }
            }

            pthread_mutex_lock(mutex)
            running -= 1
            if running == 0 { pthread_cond_signal(finished) }
            pthread_mutex_unlock(mutex)
        }
    }
}

/// Voluntary context switches of the whole process so far (`getrusage(RUSAGE_SELF).ru_nvcsw`,
/// summed over all threads): a thread that blocks (a futex wait, a sync waiting for the disk)
/// switches out voluntarily. No allocation.
public func voluntaryContextSwitches() -> Int {
    #if canImport(Glibc)
    let who = __rusage_who_t(RUSAGE_SELF.rawValue)  // an enum in glibc's headers
    #else
    let who = RUSAGE_SELF
    #endif
    var usage = rusage()
    guard getrusage(who, &usage) == 0 else { return 0 }
    return Int(usage.ru_nvcsw)
}
