import CLiburing
import Foundation
import Testing

/// The io_uring shim is wired up here and used by the sync-modes work: this checks that
/// liburing links and that an fdatasync submitted through it completes.
@Suite struct IOUringShimTests {
    @Test func fdatasyncThroughIOUringCompletes() throws {
        var ring: OpaquePointer?
        let created = logstore_uring_create(8, &ring)
        if created == -ENOSYS || created == -EPERM {
            // io_uring disabled on this kernel: the shim must say so, not crash.
            #expect(ring == nil)
            return
        }
        #expect(created == 0)
        defer { logstore_uring_destroy(ring) }
        let directory = TemporaryDirectory("uring")
        let fd = open(directory.child("file"), O_RDWR | O_CREAT, 0o644)
        #expect(fd >= 0)
        defer { close(fd) }
        #expect(write(fd, "durable", 7) == 7)
        #expect(logstore_uring_submit_fdatasync(ring, fd, 42) == 0)
        var userData: UInt64 = 0
        var result: Int32 = -1
        #expect(logstore_uring_wait(ring, &userData, &result) == 0)
        #expect(userData == 42)
        #expect(result == 0)
    }

    @Test func fdatasyncOfABadDescriptorReportsTheError() throws {
        var ring: OpaquePointer?
        guard logstore_uring_create(8, &ring) == 0 else { return }
        defer { logstore_uring_destroy(ring) }
        #expect(logstore_uring_submit_fdatasync(ring, 987_654, 7) == 0)
        var userData: UInt64 = 0
        var result: Int32 = 0
        #expect(logstore_uring_wait(ring, &userData, &result) == 0)
        #expect(result == -EBADF)
    }
}
