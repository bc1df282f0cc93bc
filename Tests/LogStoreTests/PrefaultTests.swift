import Foundation
@testable import LogStore
import MetricsTestKit
import Synchronization
import Testing

/// The prefaulter thread (Prefault.swift) maps the pages past the records writable before the
/// appends reach them, and write-behind drops the mappings of the pages it starts writing;
/// neither changes a byte.
@Suite struct PrefaultTests {
    static let dimensions = [("log", "prefault")]

    static func prefaultOptions(_ metrics: TestMetrics, ahead: Int, segmentSize: Int = 4 << 20) -> Log.Options {
        var options = options(segmentSize: segmentSize, metrics: metrics, dimensions: dimensions)
        options.prefaultAheadBytes = ahead
        return options
    }

    static func prefaultedBytes(_ metrics: TestMetrics) -> Int64 { counterTotal(metrics, "logstore.prefaulted_bytes", dimensions) }

    /// The active segment's mapping and the page-aligned end of its records.
    static func activeMapping(_ log: Log) -> (base: UnsafeMutableRawPointer, tail: Int) {
        log.state.withLock { state in
            (state.segments[state.segments.count - 1].base,
             alignUp(state.segments[state.segments.count - 1].end, to: Format.pageSize))
        }
    }

    /// How many pages of `range` (page-aligned offsets from `base`) this process's page tables
    /// map now: bit 63 of their /proc/self/pagemap entries.
    static func mappedPages(_ base: UnsafeRawPointer, _ range: Range<Int>) throws -> Int {
        let descriptor = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        try #require(descriptor >= 0, "/proc/self/pagemap is readable")
        defer { close(descriptor) }
        let firstPage = (Int(bitPattern: base) + range.lowerBound) / Format.pageSize
        var entries = [UInt64](repeating: 0, count: range.count / Format.pageSize)
        let read = entries.withUnsafeMutableBytes { buffer in
            pread(descriptor, buffer.baseAddress, buffer.count, off_t(firstPage * 8))
        }
        try #require(read == entries.count * 8)
        return entries.filter { $0 & (1 << 63) != 0 }.count
    }

    @Test func pagesPastTheRecordsAreMappedBeforeTheAppendsReachThem() throws {
        let ahead = 24 << 20
        let segmentSize = 64 << 20
        let prefaulted = TemporaryDirectory("prefault")
        let control = TemporaryDirectory("prefault-off")
        let metrics = TestMetrics()
        let log = try Log.open(prefaulted.path, options: Self.prefaultOptions(metrics, ahead: ahead, segmentSize: segmentSize))
        let controlLog = try Log.open(
            control.path, options: Self.prefaultOptions(TestMetrics(), ahead: 0, segmentSize: segmentSize))
        defer {
            try? log.close()
            try? controlLog.close()
        }
        // The first append only counts the syncs (it may start a durable workload); records
        // passing half of the window with no sync meanwhile ask. (Two pages of margin: the
        // question is asked at half a window past where it was last asked.)
        let record = [UInt8](repeating: 3, count: 1000)
        while log.segments[0].bytesUsed < ahead / 2 + 2 * Format.pageSize {
            try log.append(record)
            try controlLog.append(record)
        }
        #expect(ExtentConversionTests.eventually { Self.prefaultedBytes(metrics) >= Int64(ahead - Format.pageSize) })
        // A fault maps more than its page: here its whole read-ahead window (read_ahead_kb, 8 MiB
        // on the machine this was written on). So look well past the stores (at 12 MiB), where
        // the control log shows that they mapped nothing.
        let pastTheStores = (28 << 20)..<(32 << 20)
        let pages = pastTheStores.count / Format.pageSize
        try #require(try Self.mappedPages(Self.activeMapping(controlLog).base, pastTheStores) == 0,
                     "without the prefaulter the stores did not map this far")
        #expect(try Self.mappedPages(Self.activeMapping(log).base, pastTheStores) == pages)

        // Records passing the next half window ask for the next part.
        while log.segments[0].bytesUsed < ahead + 3 * Format.pageSize { try log.append(record) }
        let nextPart = (44 << 20)..<(48 << 20)
        #expect(ExtentConversionTests.eventually {
            (try? Self.mappedPages(Self.activeMapping(log).base, nextPart)) == pages
        })
    }

    /// Syncs between appends are a durable workload, where the converter writes back the pages
    /// past the records (write-protecting them again): the prefaulter is not asked.
    @Test func commitsBetweenAppendsStopThePrefaulter() throws {
        let ahead = 256 << 10
        let directory = TemporaryDirectory("prefault-durable")
        let metrics = TestMetrics()
        let log = try Log.open(directory.path, options: Self.prefaultOptions(metrics, ahead: ahead))
        defer { try? log.close() }
        let record = [UInt8](repeating: 4, count: 1000)
        while log.segments[0].bytesUsed < 4 * ahead { try log.appendAndCommit(record) }
        usleep(200_000)
        #expect(Self.prefaultedBytes(metrics) == 0, "not even for the log's first append")
        // Appends without commits between them ask (after one question that sees the syncs
        // before them, and one more half window).
        let start = log.segments[0].bytesUsed
        while log.segments[0].bytesUsed < start + ahead + 2 * Format.pageSize { try log.append(record) }
        #expect(ExtentConversionTests.eventually { Self.prefaultedBytes(metrics) > 0 })
    }

    @Test func recordsAppendedIntoTheRangeBeingPrefaultedAreLeftIntact() throws {
        let directory = TemporaryDirectory("prefault-race")
        let metrics = TestMetrics()
        let ahead = 8 * Format.pageSize
        let appender = RangeHoldingAppender(seed: 11)
        FaultInjection.beforePrefault(directory: directory.path) { appender.hold($0) }
        defer { FaultInjection.beforePrefault(directory: directory.path, nil) }
        let log = try Log.open(directory.path, options: Self.prefaultOptions(metrics, ahead: ahead))
        appender.log.withLock { $0 = log }
        let deadline = Date().addingTimeInterval(20)
        while appender.holds.load(ordering: .relaxed) < 5, Date() < deadline { appender.appendOne() }
        #expect(appender.holds.load(ordering: .relaxed) >= 5)
        #expect(ExtentConversionTests.eventually { Self.prefaultedBytes(metrics) >= Int64(5 * ahead / 2) })
        try appender.expectEveryRecordAfterClosing(log, directory: directory.path)
    }

    /// With `.page` alignment no write may touch a page holding acknowledged bytes again; a
    /// fault of the prefaulter on a page the records overtook and a commit cleaned would dirty
    /// it for a second write.
    @Test func pageAlignedCommitsTurnThePrefaulterOff() throws {
        let directory = TemporaryDirectory("prefault-page")
        let metrics = TestMetrics()
        var options = Self.prefaultOptions(metrics, ahead: 256 << 10)
        options.commitAlignment = .page
        let log = try Log.open(directory.path, options: options)
        #expect(log.prefaulter == nil)
        for index in 0..<50 { try log.appendAndCommit(payload(index, maxLength: 100)) }
        try log.close()
        #expect(Self.prefaultedBytes(metrics) == 0)
    }

    @Test func writeBehindDropsTheMappingsOfThePagesItStartsWriting() throws {
        let unmapped = TemporaryDirectory("write-behind-unmap")
        let control = TemporaryDirectory("write-behind-off")
        var options = Self.prefaultOptions(TestMetrics(), ahead: 0, segmentSize: 16 << 20)
        let log = try Log.open(unmapped.path, options: options)
        options.writeBehindBytes = 0
        let controlLog = try Log.open(control.path, options: options)
        var records: [[UInt8]] = []
        // Write-behind starts at whole 2 MiB: [header, 6 MiB) once the records pass 6 MiB.
        while log.segments[0].bytesUsed < (6 << 20) + Format.pageSize {
            let record = payload(records.count, seed: 5, maxLength: 2000)
            try log.append(record)
            try controlLog.append(record)
            records.append(record)
        }
        let started = Format.pageSize..<(6 << 20)
        #expect(try Self.mappedPages(Self.activeMapping(log).base, started) == 0)
        #expect(try Self.mappedPages(Self.activeMapping(controlLog).base, started) == started.count / Format.pageSize,
                "without write-behind every page stored into stays mapped")
        // Reading maps them again, with the bytes stored before.
        for (index, record) in records.enumerated() { #expect(try log.record(LSN(index + 1)).payload == record) }
        try log.commit()
        try log.close()
        try controlLog.close()
        let reopened = try Log.openReadOnly(unmapped.path)
        #expect(reopened.writtenLSN == LSN(records.count))
        for (index, record) in records.enumerated() { #expect(try reopened.record(LSN(index + 1)).payload == record) }
    }

    @Test func writeBehindCountsInAPowerOfTwoFromAPageToTheLargestFolio() {
        let page = Format.pageSize
        let cases = [
            (0, page), (1, page), (page, page), (3 * page, 2 * page), (1 << 20, 1 << 20), ((1 << 20) + page, 1 << 20),
            (3 << 20, 2 << 20), (4 << 20, 2 << 20), (Int.max, 2 << 20),
        ]
        for (bytes, unit) in cases { #expect(Log.writeBehindUnit(for: bytes) == unit, "\(bytes) bytes") }
        // alignDown masks, so anything else would round to a value that is no multiple of it.
        for bytes in stride(from: 0, through: 5 << 20, by: 1_000) {
            let unit = Log.writeBehindUnit(for: bytes)
            #expect(unit.nonzeroBitCount == 1 && unit >= page && unit <= Log.largestFolioSize, "\(bytes) bytes: \(unit)")
            #expect(unit <= max(bytes, page) && (unit * 2 > min(bytes, Log.largestFolioSize) || unit == page), "\(bytes) bytes: \(unit)")
        }
    }
}
