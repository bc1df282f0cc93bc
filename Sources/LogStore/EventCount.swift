import CLinuxShims

/// Wakes every thread blocked in a commit with one futex call when the durable LSN moves or
/// the log starts refusing writes, instead of handing a lock from waiter to waiter (which, at
/// 64 writers on 2 cores, would put 64 context switches in series behind every sync).
final class EventCount: @unchecked Sendable {
    // Unchecked: the word is only accessed through the C functions, atomically.
    private let word: UnsafeMutablePointer<logstore_eventcount>

    init() {
        word = .allocate(capacity: 1)
        word.initialize(to: logstore_eventcount(epoch: 0, sleepers: 0))
    }

    deinit { word.deallocate() }

    /// Read before checking the condition; pass to `wait`.
    func prepareWait() -> UInt32 { logstore_eventcount_prepare(word) }

    /// Sleeps unless `notifyAll` ran since `prepareWait` returned `epoch`. May wake spuriously.
    func wait(_ epoch: UInt32) { logstore_eventcount_wait(word, epoch) }

    func notifyAll() { logstore_eventcount_notify_all(word) }

    /// How many threads a `notifyAll` now would wake (a hint: it may change at once).
    var sleepers: Int { Int(logstore_eventcount_sleepers(word)) }
}
