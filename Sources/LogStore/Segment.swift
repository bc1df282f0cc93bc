#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SystemPackage

/// One segment file: its descriptor, its header and a shared mapping of it.
///
/// Immutable after creation. Records are written into `base` by the writer under the log's
/// state lock; bytes of a record never change after it is appended, so readers may copy them
/// without a lock once they learned the record's offset under the lock.
final class Segment: @unchecked Sendable {
    let name: String
    let path: String
    let header: SegmentHeader
    let descriptor: OwnedDescriptor
    let mapping: Mapping
    /// Bytes of the file that may be read: the segment size, or less for a truncated file.
    let readableLength: Int
    let saltCRC: UInt32

    var id: UInt64 { header.segmentID }
    var size: Int { Int(header.segmentSize) }
    var base: UnsafeMutableRawPointer { mapping.base }
    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: mapping.base, count: readableLength) }

    private init(name: String, path: String, header: SegmentHeader, descriptor: consuming OwnedDescriptor,
                 mapping: consuming Mapping, readableLength: Int) {
        self.name = name
        self.path = path
        self.header = header
        self.descriptor = descriptor
        self.mapping = mapping
        self.readableLength = readableLength
        self.saltCRC = RecordHeader.saltCRC(header.salt)
    }

    /// Opens and maps an existing segment. Never maps past the end of the file, so a truncated
    /// segment cannot SIGBUS a reader.
    static func open(directory: String, name: String, writable: Bool) throws(LogError) -> Segment {
        let path = directory + "/" + name
        let descriptor = try openDescriptor(path, writable: writable)
        let fileSize: Int
        do { fileSize = try descriptor.size() } catch {
            throw LogError.system(error, "cannot stat segment", path: path)
        }
        var prefix = [UInt8](repeating: 0, count: min(fileSize, Format.segmentHeaderSize))
        do {
            try prefix.withUnsafeMutableBytes { raw in
                Result { () throws(Errno) in _ = try descriptor.read(into: raw, at: 0) }
            }.get()
        } catch {
            throw LogError.system(error, "cannot read segment header", path: path)
        }
        let header = try prefix.withUnsafeBytes { raw in
            Result { () throws(LogError) in try SegmentHeader.decode(raw, path: path) }
        }.get()
        let readable = min(fileSize, Int(header.segmentSize))
        let mapping = try map(descriptor, length: readable, writable: writable, path: path)
        return Segment(name: name, path: path, header: header, descriptor: descriptor, mapping: mapping,
                       readableLength: readable)
    }

    private static func openDescriptor(_ path: String, writable: Bool) throws(LogError) -> OwnedDescriptor {
        do { return try OwnedDescriptor(path: path, flags: writable ? O_RDWR : O_RDONLY) } catch {
            throw LogError.system(error, "cannot open segment", path: path)
        }
    }

    private static func map(_ descriptor: borrowing OwnedDescriptor, length: Int, writable: Bool, path: String)
        throws(LogError) -> Mapping
    {
        do { return try Mapping(descriptor, length: length, writable: writable) } catch {
            throw LogError.system(error, "cannot map segment", path: path)
        }
    }

    /// Creates a segment durably: written under a temporary name, preallocated, header written,
    /// fsync'd, renamed into place, directory fsync'd. A crash at any point leaves either no
    /// segment of this name or a complete one.
    static func create(directory: String, header: SegmentHeader, preallocation: Preallocation)
        throws(LogError) -> Segment
    {
        let temporaryPath = try preallocateTemporary(
            directory: directory, id: header.segmentID, size: Int(header.segmentSize), preallocation: preallocation)
        return try install(preallocatedAt: temporaryPath, directory: directory, header: header)
    }

    /// Preallocates `<segment name>.seg.tmp` for segment `id` and returns its path.
    static func preallocateTemporary(
        directory: String, id: UInt64, size: Int, preallocation: Preallocation,
        stopZeroFilling: () -> Bool = { false }
    ) throws(LogError) -> String {
        let name = Format.segmentFileName(id: id)
        let temporaryPath = directory + "/" + name + "." + Format.temporaryFileExtension
        do {
            try preallocate(temporaryPath, size: size, preallocation: preallocation, directory: directory,
                            stopZeroFilling: stopZeroFilling)
        } catch {
            throw LogError.system(error, "cannot create segment \(name) (\(size) bytes)", path: temporaryPath)
        }
        return temporaryPath
    }

    /// Makes a file of `size` bytes whose blocks are all allocated (and, for `.zeroFill`,
    /// written, unless `stopZeroFilling` cuts that short), and fsyncs it. The name is temporary
    /// (`*.seg.tmp`): a writer deletes such files when it opens the log. On failure the file is
    /// removed.
    static func preallocate(
        _ path: String, size: Int, preallocation: Preallocation, directory: String,
        stopZeroFilling: () -> Bool = { false }
    ) throws(Errno) {
        do {
            let descriptor = try OwnedDescriptor(path: path, flags: O_RDWR | O_CREAT | O_TRUNC)
            try FaultInjection.check(.segmentPreallocation, directory: directory)
            try descriptor.allocate(offset: 0, length: size)
            if preallocation == .zeroFill {
                // One page per write: large writes leave the file cached in large folios, and a
                // folio is written back whole, so every later msync of 4 KiB would write up to
                // 1 MiB (BENCHMARKS.md, "Preallocation"). Zero-filling is only an optimization
                // (the blocks are allocated already), so a roll that needs the file now stops it.
                var filled = 0
                while filled < size, !stopZeroFilling() {
                    let chunk = min(256 << 10, size - filled)
                    try descriptor.writeZeros(at: filled, length: chunk, chunkSize: Format.pageSize)
                    filled += chunk
                }
                if filled < size { return }  // installing the file fsyncs it
            }
            try descriptor.sync()
        } catch {
            try? FileSystem.unlink(path)
            throw error
        }
    }

    /// Turns a preallocated file into the segment `header` describes: header page written and
    /// synced, renamed to the segment's name, directory fsync'd; then opened and mapped. Only
    /// a complete, durable file ever carries a segment's name.
    static func install(preallocatedAt temporaryPath: String, directory: String, header: SegmentHeader)
        throws(LogError) -> Segment
    {
        let segment = try openUnnamed(temporaryPath: temporaryPath, directory: directory, header: header)
        do {
            try segment.install(from: temporaryPath)
            try FileSystem.syncDirectory(directory)
        } catch {
            try? FileSystem.unlink(temporaryPath)
            throw LogError.system(error, "cannot create segment \(segment.name)", path: temporaryPath)
        }
        return segment
    }

    /// Writes `header` into a preallocated file that still has its temporary name and maps it,
    /// without any sync: records can be appended at once. It becomes part of the log only with
    /// `install(from:)` and a directory fsync; until then a crash leaves a `*.seg.tmp` file,
    /// which recovery deletes (none of its records can have been acknowledged).
    static func openUnnamed(temporaryPath: String, directory: String, header: SegmentHeader) throws(LogError)
        -> Segment
    {
        let name = Format.segmentFileName(id: header.segmentID)
        let descriptor: OwnedDescriptor
        do { descriptor = try OwnedDescriptor(path: temporaryPath, flags: O_RDWR) } catch {
            throw LogError.system(error, "cannot open the preallocated file for segment \(name)", path: temporaryPath)
        }
        do throws(Errno) {
            guard try descriptor.size() == Int(header.segmentSize) else { throw Errno.invalidArgument }
            var page = [UInt8](repeating: 0, count: Format.segmentHeaderSize)
            page.withUnsafeMutableBytes { header.encode(into: $0) }
            try descriptor.write(page, at: 0)
        } catch {
            try? FileSystem.unlink(temporaryPath)
            throw LogError.system(error, "cannot write the header of segment \(name)", path: temporaryPath)
        }
        let mapping = try map(descriptor, length: Int(header.segmentSize), writable: true, path: temporaryPath)
        return Segment(name: name, path: directory + "/" + name, header: header, descriptor: descriptor,
                       mapping: mapping, readableLength: Int(header.segmentSize))
    }

    /// Reads the first `bytes` of the file at `path` into the page cache through a mapping of
    /// its own, 1 MiB at a time until `stop` returns true (an optimization: errors end it).
    static func warmPageCache(_ path: String, bytes: Int, stop: () -> Bool) {
        guard bytes > 0, let descriptor = try? OwnedDescriptor(path: path, flags: O_RDONLY),
            let mapping = try? Mapping(descriptor, length: bytes, writable: false)
        else { return }
        var warmed = 0
        while warmed < bytes, !stop() {
            let chunk = min(1 << 20, bytes - warmed)
            guard (try? mapping.populateReadable(pages: warmed..<(warmed + chunk))) != nil else { return }
            warmed += chunk
        }
    }

    /// Makes the file durable (`fsync`: its data, size and allocation) and gives it its segment
    /// name (`rename`). The caller fsyncs the directory before acknowledging any record in it.
    func install(from temporaryPath: String) throws(Errno) {
        try descriptor.sync()
        try FileSystem.rename(temporaryPath, to: path)
    }
}

/// How a new segment's blocks are reserved before anything is written into its mapping.
/// Either way the blocks are allocated, so a write into the mapping can never SIGBUS for space.
/// The default is measured in BENCHMARKS.md ("Preallocation").
public enum Preallocation: String, Sendable, CaseIterable {
    /// `fallocate(2)` only: unwritten extents, converted to written ones as records reach disk
    /// (a small journal update inside the sync). Creating a 64 MiB segment takes well under 1 ms.
    case fallocate
    /// `fallocate(2)`, then the whole file written with zeros, a page per write: every extent is
    /// already written, so a sync writes only data, but creating a segment writes it twice.
    case zeroFill = "zero-fill"
}
