import Foundation
@testable import LogStore
import Testing

@Suite struct SegmentPreparerTests {
    func temporaryFiles(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".seg.tmp") }
    }

    @Test func rollInstallsTheFilePreparedInTheBackground() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        var index = 0
        while log.segments[0].bytesUsed < (1 << 20) * 6 / 10 { try log.append(payload(index, maxLength: 2000)); index += 1 }
        // Past half of the segment, the next file is being prepared.
        let deadline = Date().addingTimeInterval(10)
        var prepared: [String] = []
        while prepared.isEmpty && Date() < deadline {
            prepared = try temporaryFiles(directory.path)
            usleep(2000)
        }
        #expect(prepared.count == 1 && prepared[0].hasPrefix("prepared-"))
        while log.segments.count < 2 { try log.append(payload(index, maxLength: 2000)); index += 1 }
        // Rolled into; installed in the background, and certainly once a commit returns.
        try log.commit()
        // The prepared file became segment 2 (renamed, not copied).
        #expect(try !temporaryFiles(directory.path).contains(prepared[0]))
        #expect(FileManager.default.fileExists(atPath: segmentPath(directory.path, id: 2)))
        try log.close()
        #expect(try temporaryFiles(directory.path).isEmpty, "close removes a file prepared for a third segment")
        let records = try readAll(directory.path)
        #expect(records.count == index)
        #expect(records.last?.segment == Format.segmentFileName(id: 2))
        for record in records { #expect(record.payload == payload(Int(record.lsn) - 1, maxLength: 2000)) }
    }

    /// A crash while preparing leaves the file (here written as a crash leaves it: a full-size
    /// file of zeros under a `prepared-*.seg.tmp` name). Readers leave it; a writer deletes it.
    @Test func preparedFileLeftByACrashIsRemovedOnOpen() throws {
        let directory = TemporaryDirectory()
        try Log.open(directory.path, options: options()).appendAndCommit(payload(0))
        let leftover = directory.child("prepared-5eed.seg.tmp")
        #expect(FileManager.default.createFile(atPath: leftover, contents: Data(count: 1 << 20)))
        let reader = try Log.openReadOnly(directory.path)
        #expect(reader.recoveryReport.outcome == .clean)
        #expect(try temporaryFiles(directory.path) == ["prepared-5eed.seg.tmp"], "readers leave it alone")
        try reader.close()
        try Log.open(directory.path, options: options()).close()
        #expect(try temporaryFiles(directory.path).isEmpty)
        #expect(try readAll(directory.path).map(\.payload) == [payload(0)])
    }

    /// A log dropped without close releases its lock, and the next writer may own the
    /// directory at once: the preparer must not be left to create (or keep) its file there,
    /// where it would take the space that writer's recovery needs for side files.
    @Test func aLogDroppedWithoutCloseLeavesNoPreparedFileBehind() throws {
        let directory = TemporaryDirectory()
        do {
            let log = try Log.open(directory.path, options: options())
            var index = 0
            while log.segments[0].bytesUsed < (1 << 20) * 6 / 10 { try log.appendAndCommit(payload(index)); index += 1 }
            let deadline = Date().addingTimeInterval(10)
            while try temporaryFiles(directory.path).isEmpty && Date() < deadline { usleep(2000) }
            #expect(try temporaryFiles(directory.path).count == 1, "the next segment is being prepared")
            // Abandoned without close.
        }
        #expect(try temporaryFiles(directory.path).isEmpty)
        let reopened = try Log.open(directory.path, options: options())
        #expect(reopened.recoveryReport.outcome == .clean)
        try reopened.close()
    }

    @Test func recordsInARolledIntoSegmentAreAcknowledgedOnlyByACommit() throws {
        let directory = TemporaryDirectory()
        var committed = 0
        do {
            let log = try Log.open(directory.path, options: options())
            while log.segments.count < 2 {
                try log.append(payload(committed, maxLength: 2000))
                committed += 1
                if log.segments.count < 2 { try log.commit() } else { committed -= 1 }
            }
            #expect(log.durableLSN == LSN(committed), "the record that rolled is not durable")
            // Crash before any commit: segment 2 may or may not have been installed yet.
        }
        let log = try Log.open(directory.path, options: options())
        #expect(log.writtenLSN >= LSN(committed))
        for index in 0..<committed { #expect(try log.read(LSN(index + 1)) == payload(index, maxLength: 2000)) }
        #expect(try temporaryFiles(directory.path).isEmpty)
        try log.close()
    }

    @Test func failedInstallPoisonsTheLog() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        var index = 0
        while log.segments[0].bytesUsed < (1 << 20) * 9 / 10 { try log.append(payload(index, maxLength: 2000)); index += 1 }
        try log.commit()
        let durable = log.durableLSN
        // The next sync-like step is the installation of segment 2.
        FaultInjection.arm(.sync, directory: directory.path, errno: .ioError)
        defer { FaultInjection.disarm(directory: directory.path) }
        while log.segments.count < 2 { try log.append(payload(index, maxLength: 2000)); index += 1 }
        let error = expectLogError(.ioError) { try log.commit() }
        #expect(error?.path == segmentPath(directory.path, id: 2))
        #expect(log.durableLSN == durable)
        expectLogError(.poisoned) { try log.append([1]) }
        try log.close()
    }

    /// How many of the first `bytes` of the file at `path` the page cache holds (mincore(2)).
    static func cachedPages(_ path: String, bytes: Int) throws -> Int {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        let base = mmap(nil, bytes, PROT_READ, MAP_SHARED, descriptor, 0)
        try #require(base != MAP_FAILED)
        defer { munmap(base, bytes) }
        var residency = [UInt8](repeating: 0, count: bytes / Format.pageSize)
        try #require(mincore(base, bytes, &residency) == 0)
        return residency.filter { $0 & 1 != 0 }.count
    }

    /// The first stores after a roll would otherwise each allocate and zero-fill a read-ahead
    /// window of page cache in the appending thread.
    @Test func thePreparedFileStartsInThePageCache() throws {
        let warmBytes = 2 << 20
        let directory = TemporaryDirectory()
        let warm = SegmentPreparer(directory: directory.path, size: 8 << 20, preallocation: .fallocate, warmBytes: warmBytes)
        let cold = SegmentPreparer(directory: directory.path, size: 8 << 20, preallocation: .fallocate)
        warm.prepareNext()
        cold.prepareNext()
        // As a log's preparer, started when the active segment is half full, long before the roll.
        warm.waitUntilPrepared()
        let warmPath = try #require(warm.take())
        let coldPath = try #require(cold.take())
        defer {
            unlink(warmPath)
            unlink(coldPath)
        }
        #expect(try Self.cachedPages(warmPath, bytes: warmBytes) == warmBytes / Format.pageSize)
        #expect(try Self.cachedPages(coldPath, bytes: warmBytes) == 0)
        // Clean pages of zeros: nothing for a later sync to write, and the file reads as zeros.
        let bytes = try #require(FileManager.default.contents(atPath: warmPath))
        #expect(bytes.count == 8 << 20 && bytes.allSatisfy { $0 == 0 })
    }
}
