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
    private let descriptor: Int32
    private let released = Atomic<Bool>(false)

    private init(descriptor: Int32) { self.descriptor = descriptor }

    static func acquire(directory: String) throws(LogError) -> DirectoryLock {
        let path = directory + "/" + Format.lockFileName
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw LogError.system(Errno(rawValue: errno), "cannot open the writer lock file", path: path)
        }
        var result: Int32
        repeat { result = flock(fd, LOCK_EX | LOCK_NB) } while result == -1 && errno == EINTR
        if result == -1 {
            let cause = Errno(rawValue: errno)
            let holder = readHolder(fd)
            Glibc.close(fd)
            if cause == .wouldBlock {
                let who = holder.map { "process \($0)" } ?? "another process"
                throw LogError(.locked, "the log is locked by a writer (\(who))", path: path, errno: cause)
            }
            throw LogError.system(cause, "cannot lock the log", path: path)
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return DirectoryLock(descriptor: fd)
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
        if !released.exchange(true, ordering: .acquiringAndReleasing) { Glibc.close(descriptor) }
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
