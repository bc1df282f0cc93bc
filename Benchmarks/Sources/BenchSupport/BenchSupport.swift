// Helpers shared by the ordo-one suite and LogStoreMeasure: temporary directories, a monotonic
// clock, and the raw pwrite+fdatasync baseline that the durable append path is compared with.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

public enum Bench {
    /// CLOCK_MONOTONIC in nanoseconds.
    @inline(__always)
    public static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// A new empty directory `<base>/<prefix>-XXXXXX` (mkdtemp). Default base: $LOGSTORE_BENCH_DIR or /tmp.
    public static func makeTemporaryDirectory(_ prefix: String, base: String? = nil) -> String {
        let root = base ?? getenv("LOGSTORE_BENCH_DIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array("\(root)/\(prefix)-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp under \(root) failed: errno \(errno)")
        return String(cString: made!)
    }

    /// Removes the files in `path` (one level, as a log directory has) and then `path`.
    public static func removeDirectory(_ path: String) {
        for name in fileNames(in: path) { unlink(path + "/" + name) }
        rmdir(path)
    }

    /// The names in directory `path` but `.` and `..` (none if it cannot be opened).
    public static func fileNames(in path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// `count` bytes of a fixed, non-zero pattern.
    public static func payload(_ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) | 1 }
    }

    /// Deterministic pseudo-random bytes (xorshift), for checksum inputs.
    public static func randomBytes(_ count: Int, seed: UInt64 = 0x9E37_79B9_7F4A_7C15) -> [UInt8] {
        var state = seed
        var out = [UInt8](repeating: 0, count: count)
        for i in 0..<count {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            out[i] = UInt8(truncatingIfNeeded: state)
        }
        return out
    }

    /// Element at quantile `q` (0...1) of an ascending array (nearest rank).
    public static func percentile(_ sorted: [UInt64], _ q: Double) -> UInt64 {
        precondition(!sorted.isEmpty)
        let rank = Int((q * Double(sorted.count)).rounded(.up)) - 1
        return sorted[min(max(rank, 0), sorted.count - 1)]
    }

    public static func median(_ values: [Double]) -> Double {
        precondition(!values.isEmpty)
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }

    /// Writes `length` zero bytes at `offset` in pwrites of `chunk` bytes. LogStore's
    /// `.zeroFill` writes 4 KiB at a time; the raw baseline's file is filled in 1 MiB writes
    /// (a buffered pwrite + fdatasync writes only the blocks it dirtied either way).
    public static func writeZeros(_ fd: Int32, offset: Int, length: Int, chunk: Int = 1 << 20) {
        let zeros = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { zeros.deallocate() }
        memset(zeros, 0, chunk)
        var done = 0
        while done < length {
            let n = min(chunk, length - done)
            let w = pwrite(fd, zeros, n, off_t(offset + done))
            precondition(w == n, "pwrite zeros failed: errno \(errno)")
            done += n
        }
    }

    /// The steps of LogStore's `Segment.create` (`Segment.preallocate`, then `install`) with raw
    /// system calls, timed as a whole: open(O_CREAT|O_TRUNC) a temporary name, posix_fallocate,
    /// (zero fill in 4 KiB pwrites), fsync; write a 4 KiB header page, fdatasync, rename into
    /// place, fsync the directory. Returns nanoseconds.
    public static func createSegmentLikeFile(directory: String, name: String, size: Int, zeroFill: Bool) -> UInt64 {
        let path = directory + "/" + name
        let temporary = path + ".tmp"
        let start = now()
        let fd = open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        precondition(fd >= 0, "open \(temporary): errno \(errno)")
        let rc = posix_fallocate(fd, 0, off_t(size))
        precondition(rc == 0, "posix_fallocate: \(rc)")
        if zeroFill { writeZeros(fd, offset: 0, length: size, chunk: 4096) }
        precondition(fsync(fd) == 0)
        var header = [UInt8](repeating: 0, count: 4096)
        header[0] = 0x4C
        let w = header.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, 0) }
        precondition(w == 4096)
        precondition(fdatasync(fd) == 0)
        close(fd)
        precondition(rename(temporary, path) == 0)
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        precondition(fsync(dfd) == 0)
        close(dfd)
        return now() - start
    }
}

/// The baseline: a file preallocated with posix_fallocate, zero-filled and fsync'd (so its
/// extents are written, like a zero-filled LogStore segment), then one pwrite of a record at
/// increasing offsets followed by fdatasync for each record.
public final class RawSyncFile {
    public let path: String
    public let fd: Int32
    public let size: Int
    public private(set) var offset = 0

    /// `fillChunk`: the size of the pwrites that zero-fill the file (1 MiB by default).
    public init(directory: String, size: Int = 64 << 20, fillChunk: Int = 1 << 20) {
        self.path = directory + "/raw.dat"
        self.size = size
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        precondition(fd >= 0, "open \(path): errno \(errno)")
        let rc = posix_fallocate(fd, 0, off_t(size))
        precondition(rc == 0, "posix_fallocate: \(rc)")
        Bench.writeZeros(fd, offset: 0, length: size, chunk: fillChunk)
        precondition(fsync(fd) == 0, "fsync: errno \(errno)")
        let dfd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        precondition(fsync(dfd) == 0)
        Glibc.close(dfd)
    }

    /// pwrite(record) at the next offset, then fdatasync.
    @inline(__always)
    public func writeAndSync(_ record: UnsafeRawBufferPointer) {
        if offset + record.count > size { offset = 0 }
        let w = pwrite(fd, record.baseAddress, record.count, off_t(offset))
        precondition(w == record.count, "pwrite: errno \(errno)")
        precondition(fdatasync(fd) == 0, "fdatasync: errno \(errno)")
        offset += record.count
    }

    public func close() { Glibc.close(fd) }
}

/// Sectors written by the block device that holds a path, from /sys/dev/block/MAJ:MIN/stat.
/// Device-wide: writes by other processes on the same disk are counted too.
public struct DeviceWriteCounter: Sendable {
    public let statPath: String?

    public init(path: String) {
        var info = stat()
        guard stat(path, &info) == 0 else { statPath = nil; return }
        let dev = UInt64(info.st_dev)
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff)
        let minor = (dev & 0xff) | ((dev >> 12) & ~0xff)
        let candidate = "/sys/dev/block/\(major):\(minor)/stat"
        statPath = access(candidate, R_OK) == 0 ? candidate : nil
    }

    /// Bytes written so far (sectors of 512 bytes), or nil when unknown.
    public func bytesWritten() -> UInt64? {
        guard let statPath, let file = fopen(statPath, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 512)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        let line = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count > 6, let sectors = UInt64(fields[6]) else { return nil }
        return sectors * 512
    }
}
