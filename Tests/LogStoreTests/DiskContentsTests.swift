import Foundation
@testable import LogStore
import Synchronization
import Testing

/// Recovery asks the disk (past the page cache) which unproven pages it lacks, and writes only
/// those again (FORMAT.md §8.6 step 5): with page-aligned commits an acknowledged commit's
/// pages must never be written twice.
@Suite struct DiskContentsTests {
    /// Whether the test directories' filesystem has real direct I/O (ext4 and xfs do).
    static let directReads = DiskContents.canReadPastTheCache(in: NSTemporaryDirectory())

    /// The directory's real path: events name files by the path /proc/self/fd resolves.
    static func resolved(_ directory: TemporaryDirectory) throws -> String {
        let resolved = try #require(realpath(directory.path, nil))
        defer { free(resolved) }
        return String(cString: resolved)
    }

    static func pageAligned() -> Log.Options {
        var options = options()
        options.commitAlignment = .page
        return options
    }

    @Test(.enabled(if: directReads)) func recoveryAfterAProcessCrashWritesNoAcknowledgedPageAgain() throws {
        let directory = TemporaryDirectory("disk-contents")
        let path = try Self.resolved(directory)
        var appended: [[UInt8]] = []
        do {
            // Dropped without close: a process crash. Its last commit is acknowledged, and no
            // record was written after it completed (which would claim it): nothing proves it.
            let log = try Log.open(path, options: Self.pageAligned())
            for index in 0..<14 {
                appended.append(payload(index, maxLength: 2_000))
                try log.append(appended[index])
                if index % 5 == 4 || index == 13 { try log.commit() }
            }
        }
        let writes = Mutex<[Range<Int>]>([])
        FaultInjection.observe(under: path) { event in
            if case .written(let file, let bytes) = event, file.hasSuffix(".seg") { writes.withLock { $0.append(bytes) } }
        }
        let reopened: Log
        do {
            defer { FaultInjection.stopObserving(under: path) }
            reopened = try Log.open(path, options: Self.pageAligned())
        }
        defer { try? reopened.close() }
        // Everything is kept, and durable.
        #expect(reopened.writtenLSN == 14)
        #expect(reopened.durableLSN == 14)
        for lsn in LSN(1)...14 { #expect(try reopened.read(lsn) == appended[Int(lsn - 1)]) }
        // Every record was acknowledged: no page holding one may be written again.
        let last = try reopened.record(14)
        let acknowledgedEnd = last.offset + Format.recordFootprint(payloadLength: last.payload.count)
        let overlapping = writes.withLock { $0 }.filter { $0.lowerBound < alignUp(acknowledgedEnd, to: Format.pageSize) }
        #expect(overlapping.isEmpty, "recovery wrote \(overlapping) again; the acknowledged records end at \(acknowledgedEnd)")
    }

    @Test(.enabled(if: directReads)) func whatACompletedSyncWroteIsOnDisk() throws {
        let directory = TemporaryDirectory("disk-contents")
        let log = try Log.open(directory.path, options: options())
        for index in 0..<50 { try log.append(payload(index)) }
        try log.commit()
        let (name, end) = (log.segments[0].name, log.segments[0].bytesUsed)
        try log.close()
        let segment = try Segment.open(directory: directory.path, name: name, writable: false)
        #expect(DiskContents.rangesNotOnDisk(of: segment, in: 100..<end) == [])
    }

    @Test func pagesTheDiskLacksAreReportedClippedAndMerged() throws {
        let directory = TemporaryDirectory("disk-contents")
        let path = try Self.resolved(directory)
        let log = try Log.open(path, options: options())
        for index in 0..<200 { try log.append(payload(index)) }
        try log.commit()
        try log.close()
        let segment = try Segment.open(directory: path, name: Format.segmentFileName(id: 1), writable: false)
        let page = Format.pageSize
        // A disk that lacks pages 2, 3 and 5 (as after a failed sync the kernel marked clean).
        FaultInjection.readDisk(under: path) { _, bytes in
            var image = Array(UnsafeRawBufferPointer(rebasing: segment.bytes[bytes]))
            for lacking in [2, 3, 5] where bytes.contains(lacking * page) { image[lacking * page - bytes.lowerBound + 7] ^= 0xFF }
            return image
        }
        defer { FaultInjection.readDisk(under: path, nil) }
        #expect(DiskContents.rangesNotOnDisk(of: segment, in: (page + 100)..<(5 * page + 10))
            == [(2 * page)..<(4 * page), (5 * page)..<(5 * page + 10)])
        // Only the bytes asked about count: the rest of their page may hold anything.
        #expect(DiskContents.rangesNotOnDisk(of: segment, in: (2 * page + 7)..<(2 * page + 9)) == [(2 * page + 7)..<(2 * page + 9)])
        #expect(DiskContents.rangesNotOnDisk(of: segment, in: (2 * page + 8)..<(2 * page + 9)) == [])
        #expect(DiskContents.rangesNotOnDisk(of: segment, in: (6 * page)..<(9 * page)) == [])
    }

    /// tmpfs reports no direct I/O alignment: its O_DIRECT reads are the cache.
    @Test(.enabled(if: access("/dev/shm", W_OK) == 0)) func withoutRealDirectIOThereIsNoAnswer() throws {
        let directory = "/dev/shm/logstore-disk-contents-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let log = try Log.open(directory, options: options())
        try log.appendAndCommit([1, 2, 3])
        let name = log.segments[0].name
        try log.close()
        #expect(!DiskContents.canReadPastTheCache(in: directory))
        let segment = try Segment.open(directory: directory, name: name, writable: false)
        #expect(DiskContents.rangesNotOnDisk(of: segment, in: 100..<200) == nil)
    }
}
