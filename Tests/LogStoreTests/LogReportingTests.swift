import Foundation
@testable import LogStore
import Logging
import Synchronization
import SystemPackage
import Testing

/// What a writer logs through `Options.logger` (LogReporting.swift): the recovery outcome at
/// info, corruption at error, a failed sync at critical, rolls at debug, close at info, with
/// the facts as metadata, and nothing per record.
@Suite struct LogReportingTests {
    /// Keeps every message logged through it, at every level.
    struct CapturingLogHandler: LogHandler {
        final class Events: Sendable {
            let list = Mutex<[LogEvent]>([])
            var all: [LogEvent] { list.withLock { $0 } }
            func messages(at level: Logger.Level) -> [LogEvent] { all.filter { $0.level == level } }
        }

        let events: Events
        var metadata: Logger.Metadata = [:]
        var metadataProvider: Logger.MetadataProvider?
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var event = event
            event.metadata = metadata.merging(event.metadata ?? [:]) { $1 }
            events.list.withLock { $0.append(event) }
        }
    }

    /// Options whose logger captures into the returned events.
    static func capturing(recovery: RecoveryMode = .tornTail, sync: Log.SyncMode = .msync)
        -> (Log.Options, CapturingLogHandler.Events)
    {
        let events = CapturingLogHandler.Events()
        var options = options(recovery: recovery, sync: sync)
        options.logger = Logger(label: "test") { _ in CapturingLogHandler(events: events) }
        return (options, events)
    }

    static func value(_ event: LogEvent, _ key: String) -> String? { event.metadata?[key].map { "\($0)" } }

    @Test func cleanOpenAndCloseAreInfoAndNothingIsLoggedPerRecord() throws {
        let directory = TemporaryDirectory("logging")
        let (options, events) = Self.capturing()
        let log = try Log.open(directory.path, options: options)
        let opened = events.all
        #expect(opened.count == 1)
        #expect(opened.first?.level == .info)
        #expect(opened.first.flatMap { Self.value($0, "outcome") } == "clean")
        #expect(opened.first.flatMap { Self.value($0, "directory") } == directory.path)
        for index in 0..<1_000 {
            try log.append(payload(index, maxLength: 100))
            if index % 10 == 0 { try log.commit() }
        }
        #expect(log.segments.count == 1)
        #expect(events.all.count == 1, "appends and commits log nothing")
        try log.close()
        let closed = try #require(events.all.last)
        #expect(closed.level == .info && closed.message.description == "closed the log")
        #expect(Self.value(closed, "durable_lsn") == "1000")
    }

    @Test func tornTailRecoveryIsInfoAndSaysWhatWasDroppedAndWhere() throws {
        let damaged = try RecoveryModeTests.make(.tornTail)
        let work = TemporaryDirectory("logging-torn")
        try restore(damaged.files, into: work.path)
        let (options, events) = Self.capturing()
        let log = try Log.open(work.path, options: options)
        let event = try #require(events.all.first)
        #expect(event.level == .info)
        #expect(Self.value(event, "outcome") == "torn-tail")
        #expect(Self.value(event, "segment") == damaged.cutSegment)
        #expect(Self.value(event, "offset") == "\(damaged.cutOffset)")
        #expect(Self.value(event, "lsn") == "\(damaged.cutLSN)")
        #expect(Self.value(event, "dropped_bytes") == "\(log.recoveryReport.droppedBytes)")
        let preserved = try #require(log.recoveryReport.droppedRegions.first?.preservedAt)
        #expect(Self.value(event, "dropped")?.contains(preserved) == true, "names the side file")
        #expect(events.messages(at: .error).isEmpty)
        try log.close()
    }

    @Test func refusingDamagedDurableDataIsAnError() throws {
        let damaged = try RecoveryModeTests.make(.durableRecord)
        let work = TemporaryDirectory("logging-refused")
        try restore(damaged.files, into: work.path)
        let (options, events) = Self.capturing()
        expectLogError(.corruption) { _ = try Log.open(work.path, options: options) }
        let errors = events.messages(at: .error)
        #expect(errors.count == 1)
        let event = try #require(errors.first)
        #expect(Self.value(event, "offset") == "\(damaged.cutOffset)")
        #expect(Self.value(event, "lsn") == "\(damaged.cutLSN)")
        #expect(Self.value(event, "path") == work.path + "/" + damaged.cutSegment)
        #expect(Self.value(event, "directory") == work.path)
    }

    @Test func pointInTimeRecoveryOfDamagedDurableDataIsAnErrorWithTheLostLSNs() throws {
        let damaged = try RecoveryModeTests.make(.durableRecord)
        let work = TemporaryDirectory("logging-pit")
        try restore(damaged.files, into: work.path)
        let (options, events) = Self.capturing(recovery: .pointInTime)
        let log = try Log.open(work.path, options: options)
        let event = try #require(events.all.first)
        let lost = try #require(log.recoveryReport.lostLSNs)
        #expect(event.level == .error)
        #expect(Self.value(event, "outcome") == "corruption")
        #expect(Self.value(event, "lost_lsns") == "\(lost.lowerBound)...\(lost.upperBound)")
        #expect(Self.value(event, "segment") == damaged.cutSegment)
        try log.close()
    }

    @Test(arguments: GroupCommitTests.durableModes)
    func failedSyncIsCriticalOnce(mode: Log.SyncMode) throws {
        let directory = TemporaryDirectory("logging-poison")
        let (options, events) = Self.capturing(sync: mode)
        let log = try Log.open(directory.path, options: options)
        FaultInjection.arm(.sync, directory: directory.path, after: 1, errno: .ioError)
        defer { FaultInjection.disarm(directory: directory.path) }
        try log.appendAndCommit(payload(0))
        for index in 1..<4 { _ = try? log.appendAndCommit(payload(index)) }
        let critical = events.messages(at: .critical)
        #expect(critical.count == 1, "the first failure only: later calls are refused without a sync")
        let event = try #require(critical.first)
        #expect(Self.value(event, "errno") == "\(Errno.ioError)")
        #expect(Self.value(event, "path") == directory.path + "/" + Format.segmentFileName(id: 1))
        #expect(Self.value(event, "durable_lsn") == "1")
        try log.close()
    }

    @Test func segmentRollIsDebug() throws {
        let directory = TemporaryDirectory("logging-roll")
        let (options, events) = Self.capturing()
        let log = try Log.open(directory.path, options: options)
        var index = 0
        while log.segments.count < 2 {
            try log.append(payload(index, maxLength: 8_000))
            index += 1
        }
        let rolls = events.messages(at: .debug)
        #expect(rolls.count == 1)
        #expect(rolls.first.flatMap { Self.value($0, "segment") } == Format.segmentFileName(id: 2))
        #expect(rolls.first.flatMap { Self.value($0, "lsn") } == "\(log.segments[1].baseLSN)")
        try log.close()
    }
}
