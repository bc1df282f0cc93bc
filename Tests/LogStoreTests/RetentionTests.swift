import Foundation
@testable import LogStore
import Testing

/// `RetentionPolicy` and `Log.applyRetention`.
@Suite struct RetentionTests {
    func segmentFiles(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".seg") }.sorted()
    }

    @Test func maxSegmentsDeletesTheOldestWholeSegments() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        let appended = try TruncationTests.fill(log, segments: 5)
        let bases = log.segments.map(\.baseLSN)
        let plan = try log.applyRetention(RetentionPolicy(maxSegments: 2))
        #expect(plan?.removedSegments.count == 3)
        #expect(log.segments.map(\.id) == [4, 5])
        #expect(log.firstLSN == bases[3])
        #expect(try segmentFiles(directory.path).count == 2)
        #expect(try log.read(bases[3]) == appended[Int(bases[3]) - 1])
        #expect(try log.applyRetention(RetentionPolicy(maxSegments: 2)) == nil, "nothing more to delete")
        try log.close()
    }

    @Test func maxBytesCountsWholeSegmentFilesAndKeepsTheActiveOne() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        _ = try TruncationTests.fill(log, segments: 5)
        try log.applyRetention(RetentionPolicy(maxBytes: 3 << 20))
        #expect(log.segments.map(\.id) == [3, 4, 5])
        try log.applyRetention(RetentionPolicy(maxBytes: 1))
        #expect(log.segments.map(\.id) == [5], "the active segment stays even when it alone is too big")
        try log.close()
    }

    @Test func maxAgeDeletesSegmentsWhoseFilesWereLastModifiedBeforeIt() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        _ = try TruncationTests.fill(log, segments: 4)
        let twoHoursAgo = Date(timeIntervalSinceNow: -7200)
        for id: UInt64 in [1, 2] {
            try FileManager.default.setAttributes([.modificationDate: twoHoursAgo], ofItemAtPath: segmentPath(directory.path, id: id))
        }
        #expect(try log.applyRetention(RetentionPolicy(maxAge: .seconds(3 * 3600))) == nil)
        try log.applyRetention(RetentionPolicy(maxAge: .seconds(3600)))
        #expect(log.segments.map(\.id) == [3, 4])
        try log.close()
    }

    @Test func aSegmentHoldingRecordsNotYetDurableIsKept() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        _ = try TruncationTests.fill(log, segments: 2)
        // Roll twice more without a commit: segments 2 and 3 hold records nothing made durable.
        var index = 0
        while log.segments.count < 4 {
            try log.append(payload(index, seed: 5, maxLength: 20_000))
            index += 1
        }
        try log.applyRetention(RetentionPolicy(maxSegments: 1))
        #expect(log.segments.first?.id == 2, "only segment 1 holds nothing but durable records")
        try log.commit()
        try log.applyRetention(RetentionPolicy(maxSegments: 1))
        #expect(log.segments.map(\.id) == [4])
        try log.close()
    }

    @Test func theBackgroundTaskAppliesTheOptionsPolicy() throws {
        let directory = TemporaryDirectory()
        var settings = options()
        settings.retention = RetentionPolicy(maxSegments: 2, checkInterval: .milliseconds(20))
        let log = try Log.open(directory.path, options: settings)
        _ = try TruncationTests.fill(log, segments: 2)
        let reader = try Log.openReadOnly(directory.path)
        // Segments are deleted while this appends, so it counts ids, not segments.
        var index = 0
        while log.segments.last!.id < 5 || log.segments.last!.recordCount < 3 {
            try log.append(payload(index, seed: 2, maxLength: 20_000))
            index += 1
        }
        try log.commit()
        // Not a timing assertion: the task runs every 20 ms; this only bounds the wait. Readers
        // see the shorter list before the files are unlinked, so it waits for both.
        let deadline = Date(timeIntervalSinceNow: 30)
        while try log.segments.count > 2 || segmentFiles(directory.path).count > 2, Date() < deadline {
            usleep(10_000)
        }
        #expect(log.segments.map(\.id) == [4, 5])
        #expect(log.firstLSN == log.segments[0].baseLSN)
        #expect(try segmentFiles(directory.path).count == 2)
        // A reader that mapped segment 1 before it was deleted still reads it (unlinked, not
        // shortened: no SIGBUS).
        #expect(try reader.read(1) == payload(0, seed: 1, maxLength: 20_000))
        try reader.close()
        try log.close()
    }

    @Test func aReadOnlyLogRefusesToApplyRetention() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        try log.close()
        let reader = try Log.openReadOnly(directory.path)
        expectLogError(.readOnly) { try reader.applyRetention(RetentionPolicy(maxSegments: 1)) }
        try reader.close()
    }
}
