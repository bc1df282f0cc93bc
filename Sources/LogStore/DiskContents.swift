#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinuxShims
import SystemPackage

/// What the disk itself holds of a segment, read past the page cache.
///
/// With `commitAlignment` `.page`, recovery writes the records nothing proves durable again
/// (FORMAT.md §8.6 step 5) only where the disk does not already hold them as the cache shows
/// them: the pages of an acknowledged commit are on disk, and writing them again would expose
/// their acknowledged bytes to a second power loss during that write, which `.page` promises
/// never to do. What the disk lacks is a process crash's unsynced pages, or a failed sync's
/// pages that the kernel marked clean (they would never be written otherwise).
enum DiskContents {
    /// The parts of `range` (byte offsets in `segment`), cut at page boundaries and merged, whose
    /// bytes on disk differ from the cached ones (the segment's mapping), in order; nil when the
    /// disk cannot be asked: the file has no real direct I/O (`statx(2)` reports no alignment
    /// for it, or one larger than a page), or a direct read failed. The caller then writes all
    /// of `range`, as it would without the question.
    static func rangesNotOnDisk(of segment: Segment, in range: Range<Int>) -> [Range<Int>]? {
        guard !range.isEmpty else { return [] }
        let pages = alignDown(range.lowerBound, to: Format.pageSize)..<alignUp(range.upperBound, to: Format.pageSize)
        var differing: [Range<Int>] = []
        if let image = FaultInjection.simulatedDiskContents(path: segment.descriptor.currentPath(), bytes: pages) {
            image.withUnsafeBytes { compare(disk: $0, at: pages.lowerBound, with: segment, in: range, into: &differing) }
            return differing
        }
        guard hasRealDirectIO(segment.descriptor.raw.rawValue),
            let direct = try? OwnedDescriptor(directReadsOf: "/proc/self/fd/\(segment.descriptor.raw.rawValue)")
        else { return nil }
        // Direct I/O needs an aligned buffer; a megabyte at a time bounds the memory.
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: Format.pageSize)
        defer { buffer.deallocate() }
        var position = pages.lowerBound
        while position < pages.upperBound {
            let wanted = min(chunk, pages.upperBound - position)
            // One read per chunk: a short one (the end of the file) leaves the rest unread, and
            // unread bytes count as differing. A read that fails (an unreadable sector, a
            // write-back error the read reports) leaves the answer to the rewrite and its sync.
            guard let count = try? direct.readOnce(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<wanted]), at: position)
            else { return nil }
            compare(disk: UnsafeRawBufferPointer(rebasing: buffer[0..<count]), at: position, with: segment,
                    in: max(position, range.lowerBound)..<min(position + wanted, range.upperBound), into: &differing)
            position += wanted
        }
        return differing
    }

    /// Whether files in `directory` have real direct I/O (what `rangesNotOnDisk` needs to answer
    /// without a simulator), for tests.
    static func canReadPastTheCache(in directory: String) -> Bool {
        let probe = directory + "/.direct-io-probe-\(getpid())"
        guard let file = try? OwnedDescriptor(path: probe, flags: O_RDWR | O_CREAT | O_EXCL) else { return false }
        defer { _ = unlink(probe) }
        return hasRealDirectIO(file.raw.rawValue)
    }

    /// Whether the file has direct I/O that page-aligned reads can use. `statx(2)` reports no
    /// alignment where a filesystem would quietly serve an O_DIRECT read from the cache.
    private static func hasRealDirectIO(_ descriptor: Int32) -> Bool {
        let alignment = logstore_direct_io_offset_alignment(descriptor)
        return alignment > 0 && alignment <= Format.pageSize
    }

    /// Appends to `differing` each page's part of `range` whose bytes in `disk` (which starts at
    /// file offset `offset`) differ from the segment's mapping, merging neighbours. Bytes past
    /// the end of `disk` differ.
    private static func compare(disk: UnsafeRawBufferPointer, at offset: Int, with segment: Segment, in range: Range<Int>,
                                into differing: inout [Range<Int>]) {
        let cached = segment.bytes
        var page = alignDown(range.lowerBound, to: Format.pageSize)
        while page < range.upperBound {
            let part = max(page, range.lowerBound)..<min(page + Format.pageSize, range.upperBound)
            page += Format.pageSize
            guard !part.isEmpty else { continue }
            let onDisk = part.upperBound - offset <= disk.count
                && memcmp(disk.baseAddress! + (part.lowerBound - offset), cached.baseAddress! + part.lowerBound, part.count) == 0
            guard !onDisk else { continue }
            if let last = differing.last, last.upperBound == part.lowerBound {
                differing[differing.count - 1] = last.lowerBound..<part.upperBound
            } else {
                differing.append(part)
            }
        }
    }
}
