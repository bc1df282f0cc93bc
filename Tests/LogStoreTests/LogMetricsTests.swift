import CoreMetrics
import Foundation
@testable import LogStore
import MetricsTestKit
import SystemPackage
import Testing

/// The metrics a writer reports (LogMetrics.swift): counts that match a known workload and
/// arrive with syncs, not per record; recovery, rolls, preallocation and the poisoned gauge.
/// Every log gets its own `TestMetrics` through `Options.metricsFactory`, so tests running in
/// parallel never see each other's values (nothing bootstraps `MetricsSystem`).
@Suite struct LogMetricsTests {
    static let dimensions = [("log", "test")]

    static func metricsOptions(_ metrics: TestMetrics, sync: Log.SyncMode = .msync, recovery: RecoveryMode = .tornTail)
        -> Log.Options
    {
        var options = options(recovery: recovery, sync: sync)
        options.metricsFactory = metrics
        options.metricsDimensions = dimensions
        return options
    }

    static func total(_ metrics: TestMetrics, _ name: String) throws -> Int64 {
        try metrics.expectCounter("logstore." + name, dimensions).totalValue
    }

    @Test(arguments: GroupCommitTests.durableModes)
    func countsMatchTheWorkloadAndArriveWithTheSyncs(mode: Log.SyncMode) throws {
        let metrics = TestMetrics()
        let directory = TemporaryDirectory("metrics")
        let log = try Log.open(directory.path, options: Self.metricsOptions(metrics, sync: mode))
        // 25 commits of 1 to 7 records each, from one thread: every commit runs exactly one sync.
        var batches: [Int] = []
        var bytes = 0
        var index = 0
        for commit in 0..<25 {
            let batch = commit % 7 + 1
            for _ in 0..<batch {
                let record = payload(index, maxLength: 500)
                try log.append(record)
                bytes += record.count
                index += 1
            }
            if commit == 0 {
                #expect(try Self.total(metrics, "appends") == 0, "appends are reported with the sync, not per record")
            }
            try log.commit()
            batches.append(batch)
        }
        #expect(try Self.total(metrics, "appends") == Int64(index))
        #expect(try Self.total(metrics, "appended_bytes") == Int64(bytes))
        #expect(try Self.total(metrics, "commits") == 25)
        let batchSizes = try metrics.expectRecorder("logstore.commit_records", Self.dimensions).values
        #expect(batchSizes == batches.map(Double.init))
        #expect(batchSizes.reduce(0, +) == Double(index))
        let syncDurations = try metrics.expectTimer("logstore.sync_duration", Self.dimensions).values
        #expect(syncDurations.count == 25 && syncDurations.allSatisfy { $0 > 0 })
        #expect(try metrics.expectGauge("logstore.poisoned", Self.dimensions).values == [0])
        try log.close()
        #expect(try Self.total(metrics, "appends") == Int64(index), "close adds no data record")
    }

    @Test func concurrentCommitsShareSyncsAndTheBatchSizesStillAddUp() throws {
        let metrics = TestMetrics()
        let directory = TemporaryDirectory("metrics-concurrent")
        let log = try Log.open(directory.path, options: Self.metricsOptions(metrics))
        GroupCommitTests.onThreads(8, 50) { writer, index in
            _ = try? log.appendAndCommit(payload(writer * 100 + index, maxLength: 200))
        }
        let commits = try Self.total(metrics, "commits")
        let batchSizes = try metrics.expectRecorder("logstore.commit_records", Self.dimensions).values
        #expect(try Self.total(metrics, "appends") == 400)
        #expect(batchSizes.reduce(0, +) == 400)
        #expect(Int64(batchSizes.count) == commits)
        #expect(commits < 400, "concurrent commits should share syncs")
        try log.close()
    }

    @Test func rollsAndPreallocationsAreCounted() throws {
        let metrics = TestMetrics()
        let directory = TemporaryDirectory("metrics-rolls")
        let log = try Log.open(directory.path, options: Self.metricsOptions(metrics))
        var index = 0
        while log.segments.count < 4 {
            try log.append(payload(index, maxLength: 8_000))
            index += 1
        }
        #expect(try Self.total(metrics, "segment_rolls") == 3)
        // Rolls hand over the appends counted so far, so a writer that never commits is seen too.
        #expect(try Self.total(metrics, "appends") == Int64(index - log.segments[3].recordCount))
        let background = metrics.timers(label: "logstore.preallocation_duration", dimensions: Self.dimensions + [("during", "background")])
        let inRoll = metrics.timers(label: "logstore.preallocation_duration", dimensions: Self.dimensions + [("during", "roll")])
        let preparations = (background.first?.values.count ?? 0) + (inRoll.first?.values.count ?? 0)
        #expect(preparations >= 3, "every roll's file was prepared in the background or by the roll")
        try log.close()
        #expect(try Self.total(metrics, "appends") == Int64(index))
    }

    @Test func appendsWithoutSyncsAreReportedAtCommitAndClose() throws {
        let metrics = TestMetrics()
        let directory = TemporaryDirectory("metrics-none")
        let log = try Log.open(directory.path, options: Self.metricsOptions(metrics, sync: .none))
        for index in 0..<10 { try log.append(payload(index)) }
        try log.commit()
        #expect(try Self.total(metrics, "appends") == 10)
        for index in 10..<15 { try log.append(payload(index)) }
        try log.close()
        #expect(try Self.total(metrics, "appends") == 15)
        #expect(try Self.total(metrics, "commits") == 0)
    }

    @Test func tornTailRecoveryReportsItsDurationAndDroppedBytes() throws {
        let damaged = try RecoveryModeTests.make(.tornTail)
        let work = TemporaryDirectory("metrics-torn")
        try restore(damaged.files, into: work.path)
        let metrics = TestMetrics()
        let log = try Log.open(work.path, options: Self.metricsOptions(metrics))
        let report = log.recoveryReport
        #expect(report.outcome == .tornTail && report.droppedBytes > 0)
        let durations = try metrics.expectTimer("logstore.recovery_duration", Self.dimensions + [("outcome", "torn-tail")])
        #expect(durations.values.count == 1 && durations.values[0] > 0)
        #expect(try Self.total(metrics, "recovery_dropped_bytes") == Int64(report.droppedBytes))
        #expect(try Self.total(metrics, "recovery_lost_records") == 0)
        try log.close()
    }

    @Test func pointInTimeRecoveryCountsTheLostRecords() throws {
        let damaged = try RecoveryModeTests.make(.durableRecord)
        let work = TemporaryDirectory("metrics-pit")
        try restore(damaged.files, into: work.path)
        let metrics = TestMetrics()
        let log = try Log.open(work.path, options: Self.metricsOptions(metrics, recovery: .pointInTime))
        let lost = try #require(log.recoveryReport.lostLSNs)
        #expect(try Self.total(metrics, "recovery_lost_records") == Int64(lost.count))
        #expect(try Self.total(metrics, "recovery_dropped_bytes") == Int64(log.recoveryReport.droppedBytes))
        #expect(metrics.timers(label: "logstore.recovery_duration", dimensions: Self.dimensions + [("outcome", "corruption")]).count == 1)
        try log.close()
    }

    @Test(arguments: GroupCommitTests.durableModes)
    func failedSyncSetsThePoisonedGauge(mode: Log.SyncMode) throws {
        let metrics = TestMetrics()
        let directory = TemporaryDirectory("metrics-poison")
        let log = try Log.open(directory.path, options: Self.metricsOptions(metrics, sync: mode))
        FaultInjection.arm(.sync, directory: directory.path, after: 2, errno: .ioError)
        defer { FaultInjection.disarm(directory: directory.path) }
        for index in 0..<2 { try log.appendAndCommit(payload(index)) }
        expectLogError(.ioError) { try log.appendAndCommit(payload(2)) }
        expectLogError(.poisoned) { try log.appendAndCommit(payload(3)) }
        #expect(try metrics.expectGauge("logstore.poisoned", Self.dimensions).values == [0, 1])
        #expect(try Self.total(metrics, "commits") == 2, "a failed sync is not a commit")
        try log.close()
    }

    @Test func prefixAndFactoryKeepLogsApart() throws {
        let (first, second) = (TestMetrics(), TestMetrics())
        let (one, two) = (TemporaryDirectory("metrics-a"), TemporaryDirectory("metrics-b"))
        var options = options()
        options.metricsFactory = first
        options.metricsLabelPrefix = "wal"
        let a = try Log.open(one.path, options: options)
        options.metricsFactory = second
        options.metricsLabelPrefix = ""
        let b = try Log.open(two.path, options: options)
        for index in 0..<3 { try a.appendAndCommit(payload(index)) }
        try b.appendAndCommit(payload(0))
        #expect(try first.expectCounter("wal.appends").totalValue == 3)
        #expect(try second.expectCounter("appends").totalValue == 1)
        #expect(first.counters(label: "appends").isEmpty && second.counters(label: "wal.appends").isEmpty)
        try a.close()
        try b.close()
    }

    @Test func withoutABackendNoInstrumentsAreMadeAndSyncsSkipThem() throws {
        let directory = TemporaryDirectory("metrics-noop")
        var options = options()
        // Nothing bootstraps MetricsSystem in the tests: its factory is the no-op one.
        for factory in [nil, NOOPMetricsHandler.instance] as [(any MetricsFactory)?] {
            options.metricsFactory = factory
            let log = try Log.open(directory.path, options: options)
            try log.appendAndCommit([1, 2, 3])
            #expect(log.metrics == nil)
            try log.close()
        }
        options.metricsFactory = TestMetrics()
        let measured = try Log.open(directory.path, options: options)
        #expect(measured.metrics != nil)
        try measured.close()
    }
}
