import CLinuxShims
import Foundation
@testable import LogStore
import MetricsTestKit
import Synchronization
import Testing

/// The converter thread (ExtentConversion.swift): after commits it writes back the pages past
/// the records so that their extents are converted before a commit reaches them, and it never
/// changes a byte, even of records appended into the range it is converting.
@Suite struct ExtentConversionTests {
    static let dimensions = [("log", "conversion")]

    static func conversionOptions(_ metrics: TestMetrics, ahead: Int, segmentSize: Int = 4 << 20) -> Log.Options {
        var options = options(segmentSize: segmentSize, metrics: metrics, dimensions: dimensions)
        options.convertAheadBytes = ahead
        // The prefaulter's dirty pages past the records would be written back (and their
        // extents converted) by the FIEMAP sync of `unwrittenBytes`, in the control log too.
        options.prefaultAheadBytes = 0
        return options
    }

    static func convertedBytes(_ metrics: TestMetrics) -> Int64 { counterTotal(metrics, "logstore.converted_bytes", dimensions) }

    /// Waits (at most 20 s: the converter is a background thread) until `condition` holds.
    static func eventually(_ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(20)
        while !condition() {
            if Date() > deadline { return false }
            usleep(2_000)
        }
        return true
    }

    /// Bytes of unwritten extents in `range` of the first segment, nil where the filesystem has
    /// no extent map (tmpfs).
    static func unwrittenBytes(_ directory: String, _ range: Range<Int>) throws -> Int64? {
        let descriptor = open(segmentPath(directory), O_RDONLY | O_CLOEXEC)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        let unwritten = logstore_unwritten_bytes(descriptor, Int64(range.lowerBound), Int64(range.count))
        return unwritten < 0 ? nil : unwritten
    }

    @Test func extentsPastTheRecordsAreConvertedBeforeACommitReachesThem() throws {
        let ahead = 256 << 10
        let converted = TemporaryDirectory("conversion")
        let control = TemporaryDirectory("conversion-off")
        let metrics = TestMetrics()
        let controlMetrics = TestMetrics()
        let log = try Log.open(converted.path, options: Self.conversionOptions(metrics, ahead: ahead))
        let controlLog = try Log.open(control.path, options: Self.conversionOptions(controlMetrics, ahead: 0))
        for index in 0..<20 {
            try log.appendAndCommit(payload(index, maxLength: 100))
            try controlLog.appendAndCommit(payload(index, maxLength: 100))
        }
        let tail = alignUp(log.segments[0].bytesUsed, to: Format.pageSize)
        #expect(Self.eventually { Self.convertedBytes(metrics) >= Int64(ahead / 2) },
                "the converter wrote back the pages past the records after the commits")
        try log.close()
        try controlLog.close()
        #expect(Self.convertedBytes(controlMetrics) == 0, "convertAheadBytes 0 turns it off")
        // Where the filesystem reports extents, the converted range holds no unwritten extent
        // and the same range of the control log still does.
        let range = tail..<(tail + ahead / 2)
        // (Skipped where fallocate wrote the blocks instead: no unwritten extents to convert.)
        if let unwritten = try Self.unwrittenBytes(converted.path, range),
           let controlUnwritten = try Self.unwrittenBytes(control.path, range), controlUnwritten > 0
        {
            #expect(unwritten == 0)
            #expect(controlUnwritten == Int64(range.count))
        }
    }

    /// With `.page` alignment no write may touch a page holding acknowledged bytes again, which
    /// the converter could do when the records overtake it.
    @Test func pageAlignedCommitsTurnTheConverterOff() throws {
        let directory = TemporaryDirectory("conversion-page")
        let metrics = TestMetrics()
        var options = Self.conversionOptions(metrics, ahead: 256 << 10)
        options.commitAlignment = .page
        let log = try Log.open(directory.path, options: options)
        for index in 0..<50 { try log.appendAndCommit(payload(index, maxLength: 100)) }
        usleep(300_000)
        try log.close()
        #expect(Self.convertedBytes(metrics) == 0)
    }

    @Test func onlySyncsStartConversionsSoABulkLoadIsNotWrittenTwice() throws {
        let directory = TemporaryDirectory("conversion-bulk")
        let metrics = TestMetrics()
        let log = try Log.open(directory.path, options: Self.conversionOptions(metrics, ahead: 256 << 10))
        let record = [UInt8](repeating: 7, count: 1000)
        for _ in 0..<2_000 { try log.append(record) }
        usleep(300_000)
        #expect(Self.convertedBytes(metrics) == 0, "no sync asked for a conversion")
        try log.commit()
        #expect(Self.eventually { Self.convertedBytes(metrics) > 0 }, "the commit asked for one")
        let afterCommit = Self.convertedBytes(metrics)
        for _ in 0..<2_000 { try log.append(record) }
        usleep(300_000)
        #expect(Self.convertedBytes(metrics) == afterCommit, "one conversion per sync, not one per append")
        try log.close()
    }

    @Test func recordsAppendedIntoTheRangeBeingConvertedAreLeftIntact() throws {
        let directory = TemporaryDirectory("conversion-race")
        let metrics = TestMetrics()
        let ahead = 4 * Format.pageSize
        let appender = RangeHoldingAppender(seed: 9)
        FaultInjection.beforeConversion(directory: directory.path) { appender.hold($0) }
        defer { FaultInjection.beforeConversion(directory: directory.path, nil) }
        let log = try Log.open(directory.path, options: Self.conversionOptions(metrics, ahead: ahead))
        appender.log.withLock { $0 = log }
        // Every commit that leaves less than half of `ahead` converted past the records starts
        // a conversion; the converter may also have converted once at open, unheld.
        let deadline = Date().addingTimeInterval(20)
        while appender.holds.load(ordering: .relaxed) < 3, Date() < deadline {
            appender.appendOne()
            try log.commit()
        }
        #expect(appender.holds.load(ordering: .relaxed) >= 3)
        #expect(Self.eventually { Self.convertedBytes(metrics) >= Int64(3 * ahead / 2) })
        try appender.expectEveryRecordAfterClosing(log, directory: directory.path)
    }

    @Test func aWriterDroppedDuringAConversionReleasesItsLockBeforeTheDropReturns() throws {
        let directory = TemporaryDirectory("conversion-drop")
        let (started, release) = (DispatchSemaphore(value: 0), DispatchSemaphore(value: 0))
        let held = Atomic<Bool>(false)
        FaultInjection.beforeConversion(directory: directory.path) { _ in
            guard !held.exchange(true, ordering: .relaxed) else { return }
            started.signal()
            release.wait()
        }
        defer { FaultInjection.beforeConversion(directory: directory.path, nil) }
        do {
            let log = try Log.open(directory.path, options: Self.conversionOptions(TestMetrics(), ahead: 256 << 10))
            try log.appendAndCommit(payload(1))
            try withExtendedLifetime(log) {
                let conversionStarted = started.wait(timeout: .now() + 20) == .success
                // Longer than a reopen waits for a writer of this process (100 ms): a converter
                // holding the writer through its I/O would make the reopen below fail `locked`.
                DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(500)) { release.signal() }
                try #require(conversionStarted, "the commit started a conversion")
            }
        }
        let reopened = try Log.open(directory.path, options: Self.conversionOptions(TestMetrics(), ahead: 0))
        #expect(reopened.writtenLSN == 1)
        try reopened.close()
    }
}
