// Thin wrappers over the system calls LogStore needs and swift-system does not cover, in
// swift-system's style: Swift names, `Errno` as the typed cause, EINTR retried.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinuxShims
import SystemPackage

@inline(__always)
private func retryingInterrupts<T: FixedWidthInteger>(_ body: () -> T) throws(Errno) -> T {
    while true {
        let result = body()
        if result == -1 {
            let code = Errno(rawValue: errno)
            if code == .interrupted { continue }
            throw code
        }
        return result
    }
}

/// A file descriptor this value owns: closed exactly once, when the owner goes away.
struct OwnedDescriptor: ~Copyable {
    let raw: FileDescriptor

    /// `open(2)` with `O_CLOEXEC` always added.
    init(path: String, flags: Int32, mode: mode_t = 0o644) throws(Errno) {
        let fd = try retryingInterrupts { Glibc.open(path, flags | O_CLOEXEC, mode) }
        raw = FileDescriptor(rawValue: fd)
    }

    /// `open(2)` with `O_RDONLY | O_DIRECT`: reads bypass the page cache where the filesystem
    /// has real direct I/O (see `DiskContents`).
    init(directReadsOf path: String) throws(Errno) {
        let fd = try retryingInterrupts { logstore_open_direct_read(path) }
        raw = FileDescriptor(rawValue: fd)
    }

    deinit { _ = Glibc.close(raw.rawValue) }

    /// `fdatasync(2)`.
    func dataSync() throws(Errno) {
        _ = try retryingInterrupts { Glibc.fdatasync(raw.rawValue) }
        if FaultInjection.isObserving { FaultInjection.emit(.fileSynced(path: currentPath())) }
    }

    /// `fsync(2)`.
    func sync() throws(Errno) {
        _ = try retryingInterrupts { Glibc.fsync(raw.rawValue) }
        if FaultInjection.isObserving {
            var info = stat()
            let isDirectory = Glibc.fstat(raw.rawValue, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
            let path = currentPath()
            FaultInjection.emit(isDirectory ? .directorySynced(path: path) : .fileSynced(path: path))
        }
    }

    /// The path this descriptor's file has now (`readlink(2)` of /proc/self/fd/N), for the
    /// power-loss simulator's bookkeeping.
    func currentPath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let count = readlink("/proc/self/fd/\(raw.rawValue)", &buffer, buffer.count - 1)
        guard count > 0 else { return "" }
        return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `posix_fallocate(3)` (the `fallocate(2)` system call on Linux filesystems that have it):
    /// allocates blocks so that later writes cannot fail for space.
    func allocate(offset: Int, length: Int) throws(Errno) {
        while true {
            let result = posix_fallocate(raw.rawValue, off_t(offset), off_t(length))
            if result == 0 { return }
            if result != EINTR { throw Errno(rawValue: result) }
        }
    }

    /// `fstat(2)`: the file's size in bytes.
    func size() throws(Errno) -> Int {
        var info = stat()
        _ = try retryingInterrupts { Glibc.fstat(raw.rawValue, &info) }
        return Int(info.st_size)
    }

    /// `fstat(2)`: the file's inode number.
    func inode() throws(Errno) -> UInt64 {
        var info = stat()
        _ = try retryingInterrupts { Glibc.fstat(raw.rawValue, &info) }
        return UInt64(info.st_ino)
    }

    /// `pread(2)` until `buffer` is full or end of file; returns the bytes read.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(Errno) -> Int {
        var done = 0
        while done < buffer.count {
            let n = try retryingInterrupts {
                Glibc.pread(raw.rawValue, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// One `pread(2)` (direct I/O reads whole blocks, so a short read is the end of the file).
    func readOnce(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(Errno) -> Int {
        try retryingInterrupts { Glibc.pread(raw.rawValue, buffer.baseAddress!, buffer.count, off_t(offset)) }
    }

    /// `pwrite(2)` of all of `buffer`.
    func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws(Errno) {
        var done = 0
        while done < buffer.count {
            done += try retryingInterrupts {
                Glibc.pwrite(raw.rawValue, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            }
        }
        if FaultInjection.isObserving {
            FaultInjection.emit(.written(path: currentPath(), bytes: offset..<(offset + buffer.count)))
        }
    }

    /// `sync_file_range(2)` with `SYNC_FILE_RANGE_WRITE`: starts write-back without waiting.
    /// Durability still comes only from msync/fdatasync, which also report any write-back error.
    func startWriteback(offset: Int, length: Int) {
        _ = logstore_start_writeback(raw.rawValue, Int64(offset), Int64(length))
    }

    /// The byte ranges of the file from `offset` on that may hold nonzero bytes: everything but
    /// holes, as `lseek(2)` with `SEEK_DATA`/`SEEK_HOLE` reports them (unwritten extents with
    /// nothing cached read as zero and count as holes). Falls back to `offset..<end` on error.
    func dataRanges(from offset: Int, to end: Int) -> [Range<Int>] {
        var ranges: [Range<Int>] = []
        var position = offset
        while position < end {
            let data = logstore_seek_data(raw.rawValue, Int64(position))
            if data < 0 {
                if errno == ENXIO { break }
                return [offset..<end]
            }
            let hole = logstore_seek_hole(raw.rawValue, data)
            if hole < 0 { return [offset..<end] }
            let range = max(Int(data), position)..<min(Int(hole), end)
            if !range.isEmpty { ranges.append(range) }
            position = Int(hole)
        }
        return ranges
    }

    /// `posix_fadvise(2)` with `POSIX_FADV_DONTNEED` from `offset` to the end of the file:
    /// drops clean cached pages (dirty ones stay). Advice only: a failure is ignored.
    func dropCachedPages(from offset: Int = 0) {
        _ = posix_fadvise(raw.rawValue, off_t(offset), 0, POSIX_FADV_DONTNEED)
    }

    /// `pwrite(2)` of all of `bytes`.
    func write(_ bytes: [UInt8], at offset: Int) throws(Errno) {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(Errno) in try write(raw, at: offset) } }
        try result.get()
    }

    /// Writes `length` zero bytes at `offset` with `pwrite(2)`, in large chunks.
    func writeZeros(at offset: Int, length: Int, chunkSize: Int = 1 << 20) throws(Errno) {
        let chunk = min(length, chunkSize)
        guard chunk > 0 else { return }
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: Format.pageSize)
        defer { zeros.deallocate() }
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        var done = 0
        while done < length {
            let n = min(chunk, length - done)
            try write(UnsafeRawBufferPointer(rebasing: zeros[0..<n]), at: offset + done)
            done += n
        }
    }
}

enum FileSystem {
    /// `fsync(2)` of a directory, making its entries (creations, renames, unlinks) durable.
    static func syncDirectory(_ path: String) throws(Errno) {
        let dir = try OwnedDescriptor(path: path, flags: O_RDONLY | O_DIRECTORY)
        try dir.sync()
    }

    /// `rename(2)`.
    static func rename(_ from: String, to: String) throws(Errno) {
        _ = try retryingInterrupts { Glibc.rename(from, to) }
    }

    /// `unlink(2)`.
    static func unlink(_ path: String) throws(Errno) {
        _ = try retryingInterrupts { Glibc.unlink(path) }
    }

    /// `mkdir(2)`; an existing directory is not an error.
    static func makeDirectory(_ path: String) throws(Errno) {
        do {
            _ = try retryingInterrupts { Glibc.mkdir(path, 0o755) }
        } catch {
            if error != .fileExists { throw error }
        }
    }

    /// `stat(2)`: whether `path` names a directory; throws ENOENT when it does not exist.
    static func isDirectory(_ path: String) throws(Errno) -> Bool {
        var info = stat()
        _ = try retryingInterrupts { stat(path, &info) as Int32 }
        return (info.st_mode & S_IFMT) == S_IFDIR
    }

    /// `stat(2)`: the inode number of the file `path` names.
    static func inode(_ path: String) throws(Errno) -> UInt64 {
        var info = stat()
        _ = try retryingInterrupts { stat(path, &info) as Int32 }
        return UInt64(info.st_ino)
    }

    /// `opendir(3)`/`readdir(3)`: the names in a directory, without "." and "..".
    static func listDirectory(_ path: String) throws(Errno) -> [String] {
        guard let dir = opendir(path) else { throw Errno(rawValue: errno) }
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
}

/// A shared mapping of a file, unmapped exactly once when its owner goes away.
struct Mapping: ~Copyable {
    let base: UnsafeMutableRawPointer
    let length: Int

    /// `mmap(2)` with `MAP_SHARED` of `length` bytes of `descriptor` from `offset` (a multiple
    /// of the page size).
    init(_ descriptor: borrowing OwnedDescriptor, offset: Int = 0, length: Int, writable: Bool) throws(Errno) {
        precondition(length > 0)
        let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
        let address = Glibc.mmap(nil, length, protection, MAP_SHARED, descriptor.raw.rawValue, off_t(offset))
        guard let address, address != MAP_FAILED else { throw Errno(rawValue: errno) }
        base = address
        self.length = length
    }

    deinit { Glibc.munmap(base, length) }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: length) }

    /// The pages covering `range` (byte offsets), clipped to the mapping.
    func pages(covering range: Range<Int>) -> Range<Int> {
        let start = alignDown(range.lowerBound, to: Format.pageSize)
        let end = min(alignUp(range.upperBound, to: Format.pageSize), alignUp(length, to: Format.pageSize))
        return start..<max(start, end)
    }

    /// `madvise(2)` with `MADV_POPULATE_WRITE` over the whole mapping: faults every page in
    /// writable (dirtying it) as a store would, without storing anything.
    func populateWritable() throws(Errno) {
        try populateWritable(pages: 0..<length)
    }

    /// `madvise(2)` with `MADV_POPULATE_WRITE` over `pages` (page-aligned byte offsets).
    func populateWritable(pages: Range<Int>) throws(Errno) {
        guard !pages.isEmpty else { return }
        _ = try retryingInterrupts { logstore_populate_write(base + pages.lowerBound, pages.count) }
    }

    /// `madvise(2)` with `MADV_POPULATE_READ` over `pages` (page-aligned byte offsets): faults
    /// them in readable as a load would, which for a file reads them into the page cache.
    func populateReadable(pages: Range<Int>) throws(Errno) {
        guard !pages.isEmpty else { return }
        _ = try retryingInterrupts { logstore_populate_read(base + pages.lowerBound, pages.count) }
    }

    /// `madvise(2)` with `MADV_DONTNEED` over `pages` (page-aligned byte offsets): drops this
    /// mapping's page-table entries for them, with one TLB flush for the range. The shared
    /// file's cached pages, dirty or not, stay as they are; a later access maps them again.
    func unmapPageTables(pages: Range<Int>) {
        guard !pages.isEmpty else { return }
        _ = Glibc.madvise(base + pages.lowerBound, pages.count, MADV_DONTNEED)
    }

    /// `msync(2)` with `MS_SYNC` over `pages` (page-aligned byte offsets).
    func sync(pages: Range<Int>) throws(Errno) {
        guard !pages.isEmpty else { return }
        _ = try retryingInterrupts { Glibc.msync(base + pages.lowerBound, pages.count, MS_SYNC) }
    }
}
