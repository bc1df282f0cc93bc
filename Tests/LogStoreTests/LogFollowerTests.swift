import Foundation
@testable import LogStore
import Synchronization
import Testing

/// `LogFollower`: a read-only reader following a log that another process writes. It returns
/// every durable record exactly once and in order, nothing beyond the durable LSN, across
/// segment rolls, writer restarts and removed segments, and never writes a byte.
@Suite struct LogFollowerTests {
    /// The logctl binary built beside the test bundle (or $LOGCTL).
    static let logctlPath: String = {
        if let path = ProcessInfo.processInfo.environment["LOGCTL"] { return path }
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("logctl").path
    }()

    /// `logctl append` running in its own process, fed lines on stdin; reports the LSNs it
    /// printed (each one durable).
    final class ChildWriter: @unchecked Sendable {
        let process = Process()
        let input = Pipe()
        let output = Pipe()
        private let printed = Mutex<(lines: [LSN], partial: [UInt8])>(([], []))

        init(_ directory: String, batch: Int) throws {
            process.executableURL = URL(fileURLWithPath: LogFollowerTests.logctlPath)
            process.arguments = ["append", directory, "--create", "--segment-size", "1MiB", "--batch", String(batch)]
            process.standardInput = input
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            output.fileHandleForReading.readabilityHandler = { [self] handle in
                let data = handle.availableData
                printed.withLock { state in
                    state.partial += data
                    while let newline = state.partial.firstIndex(of: UInt8(ascii: "\n")) {
                        state.lines.append(LSN(String(decoding: state.partial[..<newline], as: UTF8.self))!)
                        state.partial.removeSubrange(...newline)
                    }
                }
            }
            try process.run()
        }

        func write(_ lines: [String]) {
            input.fileHandleForWriting.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        }

        var lastPrinted: LSN { printed.withLock { $0.lines.last ?? 0 } }

        func waitUntilPrinted(_ lsn: LSN) {
            while lastPrinted < lsn, process.isRunning { usleep(1_000) }
        }

        func finish() {
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
            output.fileHandleForReading.readabilityHandler = nil
        }

        func kill() {
            Foundation.kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            output.fileHandleForReading.readabilityHandler = nil
        }
    }

    static func line(_ index: Int) -> String {
        "record \(index) " + String(repeating: Character(UnicodeScalar(UInt8(97 + index % 26))), count: 100 + index % 200)
    }

    /// Collects `count` records from `follower.records` on a task.
    static func collect(_ follower: LogFollower, count: Int) -> Task<[Log.Record], any Error> {
        Task {
            var records: [Log.Record] = []
            for try await record in follower.records {
                records.append(record)
                if records.count == count { break }
            }
            return records
        }
    }

    @Test func followsAWriterInAnotherProcessAcrossSegmentRolls() async throws {
        let directory = TemporaryDirectory("follow-child")
        let count = 15_000
        let writer = try ChildWriter(directory.path, batch: 50)
        writer.write((0..<50).map(Self.line))
        writer.waitUntilPrinted(50)
        let follower = try LogFollower(directory.path)
        #expect(follower.isFollowingWatermark)
        let collected = Self.collect(follower, count: count)
        for start in stride(from: 50, to: count, by: 1_000) {
            writer.write((start..<min(start + 1_000, count)).map(Self.line))
        }
        writer.finish()
        let records = try await collected.value
        #expect(records.map(\.lsn) == Array(1...LSN(count)))
        #expect(records.map { String(decoding: $0.payload, as: UTF8.self) } == (0..<count).map(Self.line))
        #expect(Set(records.map(\.segment)).count >= 3, "the records should span several segment rolls")
        #expect(try follower.nextIfAvailable() == nil)
    }

    @Test func survivesTheWriterBeingKilledAndANewWriterReopening() async throws {
        let directory = TemporaryDirectory("follow-restart")
        let first = try ChildWriter(directory.path, batch: 10)
        first.write((0..<3_000).map(Self.line))
        first.waitUntilPrinted(3_000)
        let follower = try LogFollower(directory.path)
        let collected = Self.collect(follower, count: 8_000)
        first.kill()
        let second = try ChildWriter(directory.path, batch: 10)
        second.write((3_000..<8_000).map(Self.line))
        second.finish()
        let records = try await collected.value
        #expect(records.map(\.lsn) == Array(1...8_000))
        #expect(records.map { String(decoding: $0.payload, as: UTF8.self) } == (0..<8_000).map(Self.line))
    }

    /// A writer in this process: the follower must not return anything past `durableLSN`, even
    /// with records appended (and visible in the mapping) but not committed.
    @Test func neverReturnsARecordBeyondTheDurableLSN() throws {
        let directory = TemporaryDirectory("follow-durable")
        let log = try Log.open(directory.path, options: options())
        let follower = try LogFollower(directory.path)
        var returned: [Log.Record] = []
        func drain() throws {
            while let record = try follower.nextIfAvailable() {
                #expect(record.lsn <= log.durableLSN, "LSN \(record.lsn) returned, durable is \(log.durableLSN)")
                returned.append(record)
            }
        }
        var expected: [[UInt8]] = []
        for round in 0..<60 {
            for index in 0..<50 {
                expected.append(payload(round * 50 + index, maxLength: 1_000))
                try log.append(expected.last!)
            }
            try drain()
            #expect(returned.count == round * 50, "uncommitted records returned in round \(round)")
            try log.commit()
            try drain()
            #expect(returned.count == (round + 1) * 50)
        }
        #expect(log.segments.count > 1)
        #expect(returned.map(\.payload) == expected)
        #expect(returned.map(\.lsn) == Array(1...3_000))
        try log.close()
    }

    /// `removeAfter` lowers the durable LSN and rewrites bytes a follower may be about to read:
    /// a follower never returns a record that replaced a removed one before it is durable, and
    /// one that already returned removed records is told so.
    @Test func removeAfterNeverLetsAFollowerReturnAReplacementBeforeItIsDurable() throws {
        let directory = TemporaryDirectory("follow-remove-after")
        let log = try Log.open(directory.path, options: options())
        for index in 0..<10 { try log.append(payload(index)) }
        try log.commit()
        let follower = try LogFollower(directory.path)
        for lsn in LSN(1)...5 { #expect(try follower.nextIfAvailable()?.lsn == lsn) }

        // 6...10 were durable and unread; the replacements of 6...8 are not durable yet.
        try log.removeAfter(5)
        let replacements = (0..<3).map { Array("replacement \($0)".utf8) }
        for replacement in replacements { try log.append(replacement) }
        #expect(try follower.nextIfAvailable() == nil, "a replacement was returned before it was durable")
        try log.commit()
        let returned = [try follower.nextIfAvailable(), try follower.nextIfAvailable(), try follower.nextIfAvailable()]
        #expect(returned.map { $0?.lsn } == [6, 7, 8])
        #expect(returned.map { $0?.payload } == replacements)
        #expect(try follower.nextIfAvailable() == nil)

        // Now a cut below what it returned: the follower reports it instead of going on.
        try log.removeAfter(6)
        let error = expectLogError(.lsnOutOfRange) { _ = try follower.nextIfAvailable() }
        #expect(error?.lsn == 8)
        // A new follower reads the log as it is.
        try log.appendAndCommit(Array("after the second cut".utf8))
        let fresh = try LogFollower(directory.path)
        var all: [Log.Record] = []
        while let record = try fresh.nextIfAvailable() { all.append(record) }
        #expect(all.map(\.lsn) == Array(1...7))
        #expect(all.last?.payload == Array("after the second cut".utf8))
        try log.close()
    }

    /// A follower positioned in a segment that `removeAfter` unlinked finds the records written
    /// after the cut, in the segment file that replaces it under the same name.
    @Test func aFollowerInARemovedSegmentMovesToItsReplacement() throws {
        let directory = TemporaryDirectory("follow-removed-segment")
        let log = try Log.open(directory.path, options: options())
        var index = 0
        while log.segments.count < 2 {
            try log.append(payload(index, maxLength: 2_000))
            index += 1
        }
        try log.commit()
        // The roll put exactly one record, `secondBase`, in the second segment.
        let secondBase = log.segments[1].baseLSN
        let secondName = log.segments[1].name
        #expect(log.writtenLSN == secondBase)
        func inode(_ name: String) throws -> Int {
            try #require(try FileManager.default.attributesOfItem(atPath: directory.child(name))[.systemFileNumber] as? Int)
        }
        let removedInode = try inode(secondName)
        // Starting at `secondBase + 1`, the follower sits in the second segment, past its one
        // record, and has returned nothing.
        let follower = try LogFollower(directory.path, from: secondBase + 1)
        #expect(try follower.nextIfAvailable() == nil)
        // Keeping LSNs before `secondBase - 1` cuts the first segment and unlinks the second.
        try log.removeAfter(secondBase - 2)
        #expect(log.segments.count == 1)
        // A first replacement too big for what is left of the first segment rolls into a new
        // second one, which then holds every later LSN.
        var written: [LSN: [UInt8]] = [:]
        let left = log.segments[0].bytesAllocated - log.segments[0].bytesUsed
        let big = [UInt8](repeating: 0x5A, count: left)
        written[try log.append(big)] = big
        while log.writtenLSN < secondBase + 3 {
            let bytes = payload(index, maxLength: 2_000)
            written[try log.append(bytes)] = bytes
            index += 1
        }
        try log.commit()
        #expect(log.segments.count == 2 && log.segments[1].name == secondName)
        #expect(log.segments[1].baseLSN == secondBase - 1)
        #expect(try inode(secondName) != removedInode, "the second segment's file should have been replaced")
        let record = try #require(try follower.nextIfAvailable())
        #expect(record.lsn == secondBase + 1)
        #expect(record.segment == secondName)
        #expect(record.payload == written[secondBase + 1])
        try log.close()
    }

    /// A cut below records a follower returned is reported even when the log has grown past
    /// them again (truncate, then append and commit: the Raft pattern) before it looks.
    @Test func aCutBelowReturnedRecordsIsReportedEvenAfterTheLogGrewBack() throws {
        let directory = TemporaryDirectory("follow-cut-grew-back")
        let log = try Log.open(directory.path, options: options())
        for index in 0..<10 { try log.append(payload(index)) }
        try log.commit()
        let follower = try LogFollower(directory.path)
        for lsn in LSN(1)...8 { #expect(try follower.nextIfAvailable()?.lsn == lsn) }
        try log.removeAfter(6)
        for index in 0..<5 { try log.append(Array("replacement \(index)".utf8)) }
        try log.commit()
        #expect(log.durableLSN == 11)
        let error = expectLogError(.lsnOutOfRange) { _ = try follower.nextIfAvailable() }
        #expect(error?.lsn == 8)
        try log.close()
    }

    /// Without a `DURABLE` file, a `removeAfter` that rewrites the tail the follower parsed
    /// makes it forget the claims of the removed records: replacements are returned only once
    /// something proves them durable.
    @Test func withoutAWatermarkFileReplacementsAreReturnedOnlyOnceProvenDurable() throws {
        let directory = TemporaryDirectory("follow-poll-cut")
        let log = try Log.open(directory.path, options: options())
        try FileSystem.unlink(directory.child(Format.watermarkFileName))
        for index in 0..<10 { try log.append(payload(index)) }
        try log.commit()
        for index in 10..<20 { try log.append(payload(index)) }
        try log.commit()
        let follower = try LogFollower(directory.path, options: .init(pollInterval: .milliseconds(1)))
        #expect(!follower.isFollowingWatermark)
        // Records 11...20 claim 1...10 durable.
        for lsn in LSN(1)...5 { #expect(try follower.nextIfAvailable()?.lsn == lsn) }
        try log.removeAfter(5)
        for index in 0..<3 { try log.append(Array("replacement \(index)".utf8)) }
        usleep(2_000)
        #expect(try follower.nextIfAvailable() == nil, "a replacement was returned before anything proved it durable")
        try log.commit()
        try log.append(Array("claims 6...8".utf8))
        try log.commit()
        usleep(2_000)
        let next = try #require(try follower.nextIfAvailable())
        #expect(next.lsn == 6 && next.payload == Array("replacement 0".utf8))
        try log.close()
    }

    /// The same across a segment boundary: the claims the follower parsed in a segment that
    /// the cut unlinks are forgotten too, though that file's mapping still shows them.
    @Test func withoutAWatermarkFileACutThatUnlinksTheParsedSegmentIsNoticed() throws {
        let directory = TemporaryDirectory("follow-poll-cut-segments")
        let log = try Log.open(directory.path, options: options())
        try FileSystem.unlink(directory.child(Format.watermarkFileName))
        var index = 0
        while log.segments.count < 2 || log.segments[1].recordCount < 10 {
            try log.append(payload(index, maxLength: 2_000))
            index += 1
        }
        try log.commit()
        try log.append(Array("claims everything before".utf8))
        try log.commit()
        let firstSegmentEnd = log.segments[1].baseLSN - 1
        let follower = try LogFollower(directory.path, options: .init(pollInterval: .milliseconds(1)))
        #expect(!follower.isFollowingWatermark)
        for lsn in LSN(1)...5 { #expect(try follower.nextIfAvailable()?.lsn == lsn) }

        // Keep 1...10 (all in the first segment); the second segment is unlinked.
        try log.removeAfter(10)
        #expect(log.segments.count == 1 && firstSegmentEnd > 11)
        try log.append(Array("replacement".utf8))
        usleep(2_000)
        var lsns: [LSN] = []
        while let record = try follower.nextIfAvailable() { lsns.append(record.lsn) }
        #expect(lsns == Array(6...10), "only the records still proven durable; the replacement is not")
        try log.commit()
        try log.append(Array("claims 11".utf8))
        try log.commit()
        usleep(2_000)
        let next = try #require(try follower.nextIfAvailable())
        #expect(next.lsn == 11 && next.payload == Array("replacement".utf8))
        try log.close()
    }

    /// Without a `DURABLE` file the follower polls and returns what the log proves durable:
    /// records that a later record's durable claim covers, everything after a clean close.
    @Test func withoutAWatermarkFileReturnsWhatTheLogProvesDurable() throws {
        let directory = TemporaryDirectory("follow-poll")
        let log = try Log.open(directory.path, options: options())
        try FileSystem.unlink(directory.child(Format.watermarkFileName))
        for index in 0..<10 { try log.append(payload(index)) }
        try log.commit()
        let follower = try LogFollower(directory.path, options: .init(pollInterval: .milliseconds(1)))
        #expect(!follower.isFollowingWatermark)
        #expect(try follower.nextIfAvailable() == nil, "nothing proves records 1...10 durable yet")
        for index in 10..<20 { try log.append(payload(index)) }
        try log.commit()
        var lsns: [LSN] = []
        while let record = try follower.nextIfAvailable() { lsns.append(record.lsn) }
        #expect(lsns == Array(1...10), "records 11...20 claim 1...10 durable, nothing claims them")
        try log.close()
        usleep(2_000)
        while let record = try follower.nextIfAvailable() { lsns.append(record.lsn) }
        #expect(lsns == Array(1...20), "the close marker proves every record durable")
    }

    @Test func followingWritesNothing() throws {
        let directory = TemporaryDirectory("follow-readonly")
        let log = try Log.open(directory.path, options: options())
        for index in 0..<2_000 { try log.append(payload(index, maxLength: 1_000)) }
        try log.close()
        let before = try snapshot(directory.path)
        let follower = try LogFollower(directory.path)
        var count = 0
        while try follower.nextIfAvailable() != nil { count += 1 }
        #expect(count == 2_000)
        #expect(try snapshot(directory.path) == before)
    }

    /// Retention unlinks whole segments, possibly the one a follower reads: its mapping stays
    /// valid. A follower that had not reached the removed records yet is told so.
    @Test func segmentsRemovedBehindOrUnderTheFollowerAreHandled() throws {
        let directory = TemporaryDirectory("follow-retention")
        let log = try Log.open(directory.path, options: options())
        for index in 0..<6_000 { try log.append(payload(index, maxLength: 1_000)) }
        try log.commit()
        #expect(log.segments.count >= 4)
        let reading = try LogFollower(directory.path)
        let lagging = try LogFollower(directory.path)
        #expect(try lagging.nextIfAvailable()?.lsn == 1)
        let segments = log.segments
        var lsns: [LSN] = []
        while let record = try reading.nextIfAvailable() {
            lsns.append(record.lsn)
            if record.segment == segments[1].name { break }
        }
        // Retention removes the first two segments: `reading` maps the second, `lagging` needs it.
        for segment in segments[0...1] { try FileSystem.unlink(directory.child(segment.name)) }
        let firstKept = segments[2].baseLSN
        while let record = try reading.nextIfAvailable() { lsns.append(record.lsn) }
        #expect(lsns == Array(1...6_000))
        let error = expectLogError(.lsnOutOfRange) {
            while try lagging.nextIfAvailable() != nil {}
        }
        #expect(error?.lsn != nil && error!.lsn! < firstKept)
        try log.close()
    }

    @Test func stopEndsABlockedNext() async throws {
        let directory = TemporaryDirectory("follow-stop")
        let log = try Log.open(directory.path, options: options())
        try log.appendAndCommit([1])
        let follower = try LogFollower(directory.path, options: .init(watermarkTimeout: .seconds(60)))
        let blocked = Task.detached { () throws -> [LSN] in
            var lsns: [LSN] = []
            while let record = try follower.next() { lsns.append(record.lsn) }
            return lsns
        }
        // Once record 1 was read: a stop before the task's first look would end it empty.
        for _ in 0..<20_000 where follower.nextLSN < 2 { try await Task.sleep(for: .milliseconds(1)) }
        try await Task.sleep(for: .milliseconds(50))  // most likely blocked in `next` by now
        follower.stop()
        #expect(try await blocked.value == [1])
        try log.close()
    }

    @Test func cancellingTheAsyncSequenceEndsIt() async throws {
        let directory = TemporaryDirectory("follow-cancel")
        let log = try Log.open(directory.path, options: options())
        try log.appendAndCommit([1])
        let follower = try LogFollower(directory.path, options: .init(watermarkTimeout: .seconds(60)))
        let task = Task { () throws -> [LSN] in
            var lsns: [LSN] = []
            for try await record in follower.records { lsns.append(record.lsn) }
            return lsns
        }
        for _ in 0..<20_000 where follower.nextLSN < 2 { try await Task.sleep(for: .milliseconds(1)) }
        task.cancel()
        #expect(try await task.value == [1])
        try log.close()
    }
}
