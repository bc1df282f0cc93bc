import CLinuxShims

/// The lock around the log's state, which every append takes. `Synchronization.Mutex` spins
/// for a long time before it sleeps: right on idle cores, but with 64 appending threads on 2
/// CPUs `perf` showed 44 % of all CPU time spinning in it on a lock whose holder had been
/// preempted; a `pthread_mutex_t` fixed that but costs two calls per append. This one (see
/// `logstore_lock` in CLinuxShims) spins briefly, then sleeps, and its uncontended paths are
/// inlined atomics.
final class SleepingLock<Value>: @unchecked Sendable {
    // Unchecked: `value` is only reached through `withLock`, under `lock`.
    private let lock: UnsafeMutablePointer<logstore_lock>
    private let value: UnsafeMutablePointer<Value>

    init(_ initialValue: Value) {
        lock = .allocate(capacity: 1)
        lock.initialize(to: logstore_lock(state: 0))
        value = .allocate(capacity: 1)
        value.initialize(to: initialValue)
    }

    deinit {
        lock.deallocate()
        value.deinitialize(count: 1)
        value.deallocate()
    }

    @inline(__always)
    func withLock<Result, Failure: Error>(_ body: (inout Value) throws(Failure) -> Result) throws(Failure) -> Result {
        logstore_lock_acquire(lock)
        defer { logstore_lock_release(lock) }
        return try body(&value.pointee)
    }
}
