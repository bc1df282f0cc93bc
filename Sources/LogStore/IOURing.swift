import CLiburing
import SystemPackage

/// The io_uring a log with `SyncMode.uring` submits its fdatasyncs through. Only the thread
/// leading a group commit touches it (under the log's sync lock).
struct IOURing: ~Copyable {
    private let ring: OpaquePointer
    private let entries: Int

    /// `io_uring_queue_init(3)`; ENOSYS or EPERM when the kernel has io_uring disabled.
    init(entries: Int = 8) throws(Errno) {
        var ring: OpaquePointer?
        let result = logstore_uring_create(UInt32(entries), &ring)
        guard result == 0, let ring else { throw Errno(rawValue: -result) }
        self.ring = ring
        self.entries = entries
    }

    deinit { logstore_uring_destroy(ring) }

    /// `fdatasync(2)` of each descriptor's byte range, submitted together as `IORING_OP_FSYNC`
    /// with `IORING_FSYNC_DATASYNC` and bounded to the range; waits for every completion and
    /// stores each one's outcome (nil for success) in `outcomes`, in order (reusing its storage,
    /// so that a commit does not allocate).
    func dataSync(_ requests: [(descriptor: Int32, bytes: Range<Int>)], outcomes: inout [Errno?]) {
        outcomes.removeAll(keepingCapacity: true)
        outcomes.append(contentsOf: repeatElement(nil, count: requests.count))
        var start = 0
        while start < requests.count {
            let batch = start..<min(start + entries, requests.count)
            var queued = 0
            for index in batch {
                let (descriptor, bytes) = requests[index]
                // A length that does not fit the 32-bit field syncs to the end of the file instead.
                let length = bytes.count <= Int(UInt32.max) ? UInt32(bytes.count) : 0
                let result = logstore_uring_queue_fdatasync_range(
                    ring, descriptor, UInt64(bytes.lowerBound), length, UInt64(index))
                if result < 0 { outcomes[index] = Errno(rawValue: -result) } else { queued += 1 }
            }
            // The kernel may take fewer than were queued (a request allocation failing): the rest
            // stay in the submission queue, and waiting for their completions would never end.
            var submitted = 0
            while submitted < queued {
                let taken = logstore_uring_submit(ring)
                if taken <= 0 {
                    // Nothing taken but something left: treated as EIO. The log is poisoned by
                    // this failure, so completions left in the ring are never read.
                    let error = taken < 0 ? Errno(rawValue: -taken) : .ioError
                    for index in batch where outcomes[index] == nil { outcomes[index] = error }
                    return
                }
                submitted += Int(taken)
            }
            for _ in 0..<queued {
                var userData: UInt64 = 0
                var result: Int32 = 0
                let waited = logstore_uring_wait(ring, &userData, &result)
                if waited < 0 {
                    for index in batch where outcomes[index] == nil { outcomes[index] = Errno(rawValue: -waited) }
                    return
                }
                if result < 0 { outcomes[Int(userData)] = Errno(rawValue: -result) }
            }
            start = batch.upperBound
        }
    }
}
