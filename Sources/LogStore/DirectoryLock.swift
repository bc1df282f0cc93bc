#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization
import SystemPackage

/// The one-writer-per-directory lock: `flock(2)` on `LOCK`, which holds the owner's pid.
///
/// flock locks belong to an open file description, so a second open in the same process
/// conflicts just like one in another process, and the kernel drops the lock when the holder
/// dies, so a killed writer never leaves a stale lock behind.
final class DirectoryLock: Sendable {
    /// The lock files (device, inode) this process holds. A second writer in this process is
    /// refused from here at once; a conflict on a file that is *not* here, but whose recorded
    /// holder is this process, is a child forked while the descriptor was open and not yet
    /// exec'd (it shares the open file description until exec closes it): that passes quickly.
    private static let heldByThisProcess = Mutex<Set<[UInt64]>>([])

    private let descriptor: Int32
    private let identity: [UInt64]
    private let released = Atomic<Bool>(false)

    private init(descriptor: Int32, identity: [UInt64]) {
        self.descriptor = descriptor
        self.identity = identity
    }

    static func acquire(directory: String) throws(LogError) -> DirectoryLock {
        let path = directory + "/" + Format.lockFileName
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw LogError.system(Errno(rawValue: errno), "cannot open the writer lock file", path: path)
        }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let cause = Errno(rawValue: errno)
            Glibc.close(fd)
            throw LogError.system(cause, "cannot stat the writer lock file", path: path)
        }
        let identity = [UInt64(info.st_dev), UInt64(info.st_ino)]
        // A writer of this process that its owner just dropped may still be finishing a round
        // on its syncer or waker thread, which then runs its deinit (and the release); such a
        // holder lets go within milliseconds, so a second open waits up to 100 ms before it
        // reports `locked`.
        var alreadyHeld = true
        for attempt in 0..<50 {
            alreadyHeld = heldByThisProcess.withLock { held in
                if held.contains(identity) { return true }
                held.insert(identity)
                return false
            }
            if !alreadyHeld || attempt == 49 { break }
            usleep(2000)
        }
        if alreadyHeld {
            Glibc.close(fd)
            throw LogError(
                .locked, "the log is locked by a writer (process \(getpid()), this one)", path: path,
                errno: .wouldBlock)
        }
        var attempts = 0
        while true {
            if flock(fd, LOCK_EX | LOCK_NB) == 0 { break }
            let cause = Errno(rawValue: errno)
            if cause == .interrupted { continue }
            let holder = readHolder(fd)
            attempts += 1
            if cause == .wouldBlock, holder == getpid(), attempts < 100 {
                usleep(2000)
                continue
            }
            Glibc.close(fd)
            heldByThisProcess.withLock { _ = $0.remove(identity) }
            if cause == .wouldBlock {
                let who = holder.map { "process \($0)" } ?? "another process"
                throw LogError(.locked, "the log is locked by a writer (\(who))", path: path, errno: cause)
            }
            throw LogError.system(cause, "cannot lock the log", path: path)
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return DirectoryLock(descriptor: fd, identity: identity)
    }

    /// The pid recorded by the writer that holds the lock of `directory`, or nil when no
    /// process holds it. Never modifies the file or takes the lock for longer than a probe.
    static func holder(directory: String) -> Int32? {
        let fd = Glibc.open(directory + "/" + Format.lockFileName, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { Glibc.close(fd) }
        if flock(fd, LOCK_SH | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return nil
        }
        return readHolder(fd) ?? 0
    }

    private static func readHolder(_ fd: Int32) -> Int32? {
        var buffer = [UInt8](repeating: 0, count: 32)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        return Int32(String(decoding: buffer[0..<count], as: UTF8.self).trimmingSuffixNewlines())
    }

    func release() {
        if !released.exchange(true, ordering: .acquiringAndReleasing) {
            Glibc.close(descriptor)
            DirectoryLock.heldByThisProcess.withLock { _ = $0.remove(identity) }
        }
    }

    deinit { release() }
}

extension String {
    fileprivate func trimmingSuffixNewlines() -> String {
        var s = Substring(self)
        while let last = s.last, last == "\n" || last == "\r" || last == " " { s = s.dropLast() }
        return String(s)
    }
}
