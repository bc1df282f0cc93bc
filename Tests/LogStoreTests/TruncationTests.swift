import Foundation
@testable import LogStore
import Synchronization
import Testing

/// `removeBefore` and `removeAfter` (FORMAT.md §11), without crashes; TruncationCrashTests
/// crashes them.
@Suite struct TruncationTests {
    /// Appends records of up to 20 KB until the log has `segments` segments and the last one
    /// holds a few records; returns every payload appended (index LSN - 1).
    static func fill(_ log: Log, segments: Int, seed: UInt64 = 1) throws -> [[UInt8]] {
        var appended: [[UInt8]] = []
        while log.segments.count < segments || log.segments[segments - 1].recordCount < 3 {
            let bytes = payload(appended.count, seed: seed, maxLength: 20_000)
            try log.append(bytes)
            appended.append(bytes)
        }
        try log.commit()
        return appended
    }

    static func segmentNames(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".seg") }.sorted()
    }

    // MARK: - removeBefore

    @Test func removeBeforeDeletesOnlyWholeSegmentsBelowTheLSN() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        let appended = try Self.fill(log, segments: 4)
        let bases = log.segments.map(\.baseLSN)
        // An LSN inside segment 3: segments 1 and 2 go, 3 stays although it holds LSNs below.
        let lsn = bases[2] + 1
        #expect(try log.planRemoveBefore(lsn).removedSegments == [Format.segmentFileName(id: 1), Format.segmentFileName(id: 2)])
        try log.removeBefore(lsn)
        #expect(log.firstLSN == bases[2], "firstLSN is the base of the first kept segment, below the argument")
        #expect(log.segments.map(\.id) == [3, 4])
        #expect(try Self.segmentNames(directory.path) == [Format.segmentFileName(id: 3), Format.segmentFileName(id: 4)])
        #expect(try log.read(bases[2]) == appended[Int(bases[2]) - 1])
        expectLogError(.lsnOutOfRange) { _ = try log.read(bases[2] - 1) }
        #expect(!FileManager.default.fileExists(atPath: directory.child(Format.truncationIntentFileName)))
        let next = try log.appendAndCommit(Array("after".utf8))
        #expect(next == LSN(appended.count + 1))
        try log.close()

        let reopened = try Log.open(directory.path, options: options())
        #expect(reopened.recoveryReport.outcome == .clean)
        #expect(reopened.firstLSN == bases[2])
        #expect(reopened.writtenLSN == next)
        #expect((try reopened.records().collect()).map(\.payload) == Array(appended[(Int(bases[2]) - 1)...]) + [Array("after".utf8)])
        try reopened.close()
    }

    @Test func removeBeforeNeverDeletesTheActiveSegment() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        let appended = try Self.fill(log, segments: 3)
        try log.removeBefore(LSN(appended.count + 1000))
        #expect(log.segments.count == 1)
        #expect(log.firstLSN == log.segments[0].baseLSN)
        #expect(log.writtenLSN == LSN(appended.count))
        // Nothing left to delete is not an error, and changes nothing.
        try log.removeBefore(LSN(appended.count + 1000))
        try log.removeBefore(1)
        #expect(try log.planRemoveBefore(.max).isEmpty)
        try log.close()
    }

    @Test func aReaderKeepsReadingASegmentThatRemoveBeforeDeleted() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        let appended = try Self.fill(log, segments: 3)
        let reader = try Log.openReadOnly(directory.path)
        try log.removeBefore(log.segments[2].baseLSN)
        #expect(try Self.segmentNames(directory.path).count == 1)
        // Unlinked, not shortened: the reader's mappings stay valid (no SIGBUS).
        for record in try reader.records().collect() { #expect(record.payload == appended[Int(record.lsn) - 1]) }
        try reader.close()
        try log.close()
    }

    // MARK: - removeAfter

    @Test func removeAfterCutsTheSuffixAndAppendsReuseItsLSNs() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        let appended = try Self.fill(log, segments: 3)
        let lsn = log.segments[1].baseLSN + 2
        let plan = try log.planRemoveAfter(lsn)
        #expect(plan.removedSegments == [Format.segmentFileName(id: 3)])
        #expect(plan.cutSegment == Format.segmentFileName(id: 2))
        #expect(plan.removedLSNs == (lsn + 1)...LSN(appended.count))
        try log.removeAfter(lsn)
        #expect(log.writtenLSN == lsn)
        #expect(log.durableLSN == lsn)
        #expect(log.segments.map(\.id) == [1, 2])
        #expect(try Self.segmentNames(directory.path).count == 2)
        expectLogError(.lsnOutOfRange) { _ = try log.read(lsn + 1) }
        let replacement = (0..<20).map { payload($0, seed: 99, maxLength: 20_000) }
        for (index, bytes) in replacement.enumerated() { #expect(try log.append(bytes) == lsn + 1 + LSN(index)) }
        try log.commit()
        try log.close()

        let reopened = try Log.open(directory.path, options: options())
        #expect(reopened.recoveryReport.outcome == .clean)
        let expected = Array(appended[0..<Int(lsn)]) + replacement
        #expect((try reopened.records().collect()).map(\.payload) == expected)
        try reopened.close()
    }

    @Test func removeAfterZeroesTheRemovedBytesInPlace() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        for index in 0..<10 { try log.append(payload(index, maxLength: 2_000)) }
        try log.commit()
        let cut = try log.record(8).offset
        try log.removeAfter(7)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: segmentPath(directory.path)))
        #expect(bytes[cut...].allSatisfy { $0 == 0 }, "removed records must not linger on disk")
        #expect(bytes[(cut - 32)..<cut].contains { $0 != 0 })
        try log.close()
    }

    @Test func removeAfterTheLSNBeforeTheFirstEmptiesTheLog() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        _ = try Self.fill(log, segments: 3)
        try log.removeBefore(log.segments[1].baseLSN)
        let first = log.firstLSN
        try log.removeAfter(first - 1)
        #expect(log.writtenLSN == first - 1)
        #expect(log.firstLSN == first)
        #expect((try log.records().collect()).isEmpty)
        #expect(try log.appendAndCommit(Array("again".utf8)) == first)
        try log.close()
        let reopened = try Log.open(directory.path, options: options())
        #expect(reopened.firstLSN == first)
        #expect(try reopened.read(first) == Array("again".utf8))
        try reopened.close()
    }

    @Test func removeAfterRefusesLSNsOutsideTheLog() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        _ = try Self.fill(log, segments: 3)
        try log.removeBefore(log.segments[1].baseLSN)
        let (first, written) = (log.firstLSN, log.writtenLSN)
        expectLogError(.lsnOutOfRange) { try log.removeAfter(first - 2) }
        expectLogError(.lsnOutOfRange) { try log.removeAfter(written + 1) }
        expectLogError(.lsnOutOfRange) { _ = try log.planRemoveAfter(written + 1) }
        try log.removeAfter(written)
        #expect(log.writtenLSN == written, "removing after the last LSN removes nothing")
        #expect(try log.planRemoveAfter(written).isEmpty)
        try log.close()
        let reader = try Log.openReadOnly(directory.path)
        expectLogError(.readOnly) { try reader.removeAfter(written - 1) }
        expectLogError(.readOnly) { try reader.removeBefore(written) }
        try reader.close()
    }

    @Test func removeAfterRemovesRecordsThatWereNeverDurable() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        let committed = try Self.fill(log, segments: 1)
        for index in 0..<5 { try log.append(payload(index, seed: 7)) }
        let durable = log.durableLSN
        #expect(durable == LSN(committed.count))
        try log.removeAfter(durable + 2)
        #expect(log.writtenLSN == durable + 2)
        #expect(log.durableLSN == durable, "records kept do not become durable by being kept")
        #expect(try log.commit() == durable + 2)
        try log.close()
    }

    @Test func aCommitWaitingForARemovedRecordFailsEvenOnceItsLSNIsDurableAgain() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        _ = try Self.fill(log, segments: 1)
        let lsn = try log.append([UInt8](repeating: 1, count: 10))
        let (sync, cutsSeen) = log.state.withLock { ($0.writtenCoveredBy, $0.suffixCuts.count) }
        try log.removeAfter(lsn - 1)
        // A new record takes the LSN and becomes durable: the old waiter must still fail.
        #expect(try log.appendAndCommit(Array("new".utf8)) == lsn)
        let error = expectLogError(.truncated) { _ = try log.waitUntilDurable(lsn, coveredBy: sync, cutsSeen: cutsSeen) }
        #expect(error?.lsn == lsn)
        // A record the truncation kept is not affected.
        #expect(try log.waitUntilDurable(lsn - 1, coveredBy: sync, cutsSeen: cutsSeen) >= lsn - 1)
        try log.close()
    }

    @Test func asyncAppendersWaitingWhileTheSuffixIsCutGetTruncatedOrKeepTheirRecord() async throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        _ = try Self.fill(log, segments: 1)
        let base = log.writtenLSN
        // Tasks append and wait while another cuts the suffix again and again. A waiter fails
        // only with `truncated`; an acknowledged record no later cut removed is in the log with
        // its bytes (the rule that a removed record is never acknowledged is checked
        // deterministically above).
        final class Shared: Sendable {
            let outcomes = Mutex<[(lsn: LSN, bytes: [UInt8], cutsBefore: Int)]>([])
            let failures = Mutex<[LogError]>([])
            let cuts = Mutex<[LSN]>([])
        }
        let shared = Shared()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<8 {
                group.addTask {
                    for index in 0..<40 {
                        let bytes = Array("task \(task) record \(index)".utf8)
                        let cutsBefore = log.suffixCutCount.load(ordering: .sequentiallyConsistent)
                        do throws(LogError) {
                            let lsn = try await log.append(bytes)
                            shared.outcomes.withLock { $0.append((lsn, bytes, cutsBefore)) }
                        } catch {
                            shared.failures.withLock { $0.append(error) }
                        }
                    }
                }
            }
            group.addTask {
                for _ in 0..<20 {
                    let written = log.writtenLSN
                    let lsn = written - min(written - base, 3)
                    try log.removeAfter(lsn)
                    shared.cuts.withLock { $0.append(lsn) }
                    await Task.yield()
                }
            }
            try await group.waitForAll()
        }
        #expect(shared.failures.withLock { $0 }.allSatisfy { $0.code == .truncated }, "\(shared.failures.withLock { $0 })")
        let final = Dictionary(uniqueKeysWithValues: (try log.records(from: base + 1).collect()).map { ($0.lsn, $0.payload) })
        let allCuts = shared.cuts.withLock { $0 }
        #expect(allCuts.count == 20)
        for outcome in shared.outcomes.withLock({ $0 }) where allCuts[outcome.cutsBefore...].allSatisfy({ $0 >= outcome.lsn }) {
            #expect(final[outcome.lsn] == outcome.bytes, "LSN \(outcome.lsn) was acknowledged, no cut removed it")
        }
        #expect(shared.outcomes.withLock { $0.count } + shared.failures.withLock { $0.count } == 320)
        try log.close()
    }

    @Test func removeAfterRefusesToCutIntoASealedSegmentShortenedFromOutside() throws {
        let directory = TemporaryDirectory()
        var log = try Log.open(directory.path, options: options())
        let appended = try Self.fill(log, segments: 3)
        let first = log.segments[0]
        try log.close()
        // Shortened to the page after its last record: its successor still chains, so the open
        // reads it up to its end and is clean.
        let shortLength = alignUp(first.bytesUsed, to: Format.pageSize)
        #expect(truncate(directory.child(first.name), off_t(shortLength)) == 0)
        log = try Log.open(directory.path, options: options())
        let written = log.writtenLSN
        // The cut would make it the segment appends go into, up to `segmentSize`: past the end
        // of its mapping.
        let refused = expectLogError(.corruption) { try log.removeAfter(first.baseLSN + 1) }
        #expect(refused?.path == directory.child(first.name))
        #expect(refused?.offset == UInt64(shortLength))
        #expect(log.writtenLSN == written)
        let next = try log.appendAndCommit(Array("after the refusal".utf8))
        #expect(next == written + 1)
        try log.close()
        #expect(try readAll(directory.path).map(\.payload) == appended + [Array("after the refusal".utf8)])
    }

    @Test func aRemoveAfterThatFailsWakesTheCommitsWaitingBehindIt() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        for index in 0..<10 { _ = try log.append(Array("durable \(index)".utf8)) }
        _ = try log.commit()
        for index in 0..<10 { _ = try log.append(Array("pending \(index)".utf8)) }
        let waited = log.durableLSN + 5
        let (sync, cutsSeen) = log.state.withLock { ($0.writtenCoveredBy, $0.suffixCuts.count) }
        let segment = directory.child(try #require(Self.segmentNames(directory.path).last))
        final class Waiter: Sendable {
            let outcome = Mutex<Result<LSN, LogError>?>(nil)
            let done = DispatchSemaphore(value: 0)
        }
        let waiter = Waiter()
        FaultInjection.observe(under: directory.path) { event in
            guard case .crashPoint("truncation: intent durable", _) = event else { return }
            // `removeAfter` holds `syncEngine` here: the waiter cannot lead a sync, so it posts a
            // request and sleeps.
            Thread.detachNewThread {
                let result = Result { () throws(LogError) in try log.waitUntilDurable(waited, coveredBy: sync, cutsSeen: cutsSeen) }
                waiter.outcome.withLock { $0 = result }
                waiter.done.signal()
            }
            let deadline = Date().addingTimeInterval(10)
            while log.requestedLSN.load(ordering: .sequentiallyConsistent) < waited, Date() < deadline { usleep(1000) }
            // Carrying out the cut then fails, which poisons the log.
            rename(segment, segment + ".away")
        }
        let failure = expectLogError(.notFound) { try log.removeAfter(waited + 2) }
        FaultInjection.stopObserving(under: directory.path)
        #expect(log.requestedLSN.load(ordering: .sequentiallyConsistent) >= waited, "the waiter never posted")
        // Its record was kept and is not durable: it must get the poisoning error, not sleep
        // until `close`.
        let woken = waiter.done.wait(timeout: .now() + 10) == .success
        #expect(woken, "the waiter was not woken")
        if case .failure(let error) = waiter.outcome.withLock({ $0 }) {
            #expect(error.code == failure?.code)
        } else {
            Issue.record("the waiter got \(String(describing: waiter.outcome.withLock { $0 }))")
        }
        rename(segment + ".away", segment)
        try? log.close()
        if !woken { _ = waiter.done.wait(timeout: .now() + 10) }
    }

    @Test func anAsyncAppendWhoseRecordACutKeptStillGetsItsSync() async throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        // Not async: the blocking overloads, which do not wait.
        @Sendable func appendWithoutWaiting(_ text: String) throws -> LSN { try log.append(Array(text.utf8)) }
        for index in 0..<10 { _ = try appendWithoutWaiting("durable \(index)") }
        _ = try await log.commit()
        let cut = Mutex(false)
        FaultInjection.observe(under: directory.path) { event in
            guard case .crashPoint(let name, _) = event, name.hasPrefix("before an async waiter"),
                !cut.withLock({ (done: inout Bool) -> Bool in
                    defer { done = true }
                    return done
                })
            else { return }
            // Between the append and the registration of its waiter: records after it, and a
            // cut that removes some of them but keeps the awaited one.
            for index in 0..<5 { _ = try? appendWithoutWaiting("later \(index)") }
            try? log.removeAfter(log.writtenLSN - 2)
        }
        let outcome = Mutex<Result<LSN, LogError>?>(nil)
        let appended = Task {
            let result: Result<LSN, LogError>
            do throws(LogError) { result = .success(try await log.append(Array("awaited".utf8))) } catch { result = .failure(error) }
            outcome.withLock { $0 = result }
        }
        let deadline = ContinuousClock.now + .seconds(10)
        while outcome.withLock({ $0 }) == nil, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        FaultInjection.stopObserving(under: directory.path)
        #expect(cut.withLock { $0 }, "the cut did not run before the registration")
        #expect(try outcome.withLock({ $0 })?.get() == 11, "the waiter of a record the cut kept was never resumed")
        #expect(log.durableLSN >= 11)
        // A waiter still asleep gets `closed` here, so the task ends either way.
        try log.close()
        await appended.value
    }

    // MARK: - Leftover intents

    @Test func aWriterCompletesALeftoverSuffixIntentBeforeRecovery() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        let appended = try Self.fill(log, segments: 3)
        let lsn = log.segments[1].baseLSN + 1
        // The directory as a crash right after the intent became durable leaves it (a process
        // crash: the page cache survives).
        let leftover = Mutex<[String: Data]?>(nil)
        FaultInjection.observe(under: directory.path) { event in
            guard case .crashPoint("truncation: intent durable", _) = event else { return }
            leftover.withLock { $0 = try? snapshot(directory.path) }
        }
        try log.removeAfter(lsn)
        FaultInjection.stopObserving(under: directory.path)
        try log.close()
        let crashed = TemporaryDirectory()
        let files = try #require(leftover.withLock { $0 })
        #expect(files[Format.truncationIntentFileName] != nil)
        try restore(files.filter { $0.key != Format.lockFileName }, into: crashed.path)

        // A reader shows the log as it will be, and changes nothing.
        let before = try snapshot(crashed.path)
        let reader = try Log.openReadOnly(crashed.path)
        #expect(reader.writtenLSN == lsn)
        #expect(reader.segments.map(\.id) == [1, 2])
        #expect((try reader.records().collect()).map(\.payload) == Array(appended[0..<Int(lsn)]))
        try reader.close()
        #expect(try snapshot(crashed.path) == before)

        let writer = try Log.open(crashed.path, options: options())
        #expect(writer.writtenLSN == lsn)
        #expect(writer.recoveryReport.outcome == .clean)
        #expect(try Self.segmentNames(crashed.path).count == 2)
        #expect(!FileManager.default.fileExists(atPath: crashed.child(Format.truncationIntentFileName)))
        #expect(try writer.appendAndCommit(Array("next".utf8)) == lsn + 1)
        try writer.close()
        #expect(try readAll(crashed.path).map(\.payload) == Array(appended[0..<Int(lsn)]) + [Array("next".utf8)])
    }

    @Test func aWriterCompletesALeftoverFrontIntent() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        _ = try Self.fill(log, segments: 3)
        let base = log.segments[2].baseLSN
        let logID = log.logID
        try log.close()
        try TruncationIntent(kind: .front, logID: logID, segmentID: 3, lsn: base, offset: 0).write(directory: directory.path)
        let reader = try Log.openReadOnly(directory.path)
        #expect(reader.firstLSN == base)
        try reader.close()
        let writer = try Log.open(directory.path, options: options())
        #expect(writer.firstLSN == base)
        #expect(try Self.segmentNames(directory.path) == [Format.segmentFileName(id: 3)])
        try writer.close()
    }

    /// A closed log of two segments, for an intent file written beside it; returns its id.
    static func closedLogOfTwoSegments(_ directory: TemporaryDirectory) throws -> LogID {
        let log = try Log.open(directory.path, options: options())
        _ = try fill(log, segments: 2)
        try log.close()
        return log.logID
    }

    @Test func aDamagedIntentRefusesTheOpenAsCorruption() throws {
        let directory = TemporaryDirectory()
        let logID = try Self.closedLogOfTwoSegments(directory)
        var bytes = TruncationIntent(kind: .front, logID: logID, segmentID: 2, lsn: 1, offset: 0).encoded()
        bytes[41] ^= 1
        try Data(bytes).write(to: URL(fileURLWithPath: directory.child(Format.truncationIntentFileName)))
        let before = try snapshot(directory.path)
        expectLogError(.corruption) { _ = try Log.open(directory.path, options: options()) }
        expectLogError(.corruption) { _ = try Log.openReadOnly(directory.path) }
        let after = try snapshot(directory.path)
        #expect(after.filter { $0.key != Format.lockFileName } == before.filter { $0.key != Format.lockFileName },
                "\(before.keys.sorted()) \(after.keys.sorted())")
    }

    @Test(arguments: [UInt64.max, UInt64(Int.max), UInt64(Format.maxSegmentSize) + 1])
    func anIntentWithAnOffsetPastTheLargestSegmentIsCorruptionNotATrap(offset: UInt64) throws {
        let directory = TemporaryDirectory()
        let logID = try Self.closedLogOfTwoSegments(directory)
        // A file with a valid CRC (written by something else, or a 2^-32 chance of damage).
        var bytes = TruncationIntent(kind: .suffix, logID: logID, segmentID: 2, lsn: 1, offset: 4096).encoded()
        withUnsafeBytes(of: offset.littleEndian) { bytes.replaceSubrange(48..<56, with: $0) }
        let crc = CRC32C.checksum(bytes[Format.truncationIntentHeaderSize...],
                                  continuing: CRC32C.checksum(bytes[0..<Format.truncationIntentCRCOffset]))
        withUnsafeBytes(of: crc.littleEndian) { bytes.replaceSubrange(60..<64, with: $0) }
        try Data(bytes).write(to: URL(fileURLWithPath: directory.child(Format.truncationIntentFileName)))
        let refused = expectLogError(.corruption) { _ = try Log.open(directory.path, options: options()) }
        #expect(refused?.message.contains("fields out of range") == true, "\(String(describing: refused))")
        expectLogError(.corruption) { _ = try Log.openReadOnly(directory.path) }
    }

    @Test func anIntentOfAnotherLogIsRefused() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        _ = try Self.fill(log, segments: 2)
        try log.close()
        try TruncationIntent(kind: .front, logID: LogID(high: 1, low: 2), segmentID: 2, lsn: 1, offset: 0)
            .write(directory: directory.path)
        expectLogError(.notALog) { _ = try Log.open(directory.path, options: options()) }
        #expect(try Self.segmentNames(directory.path).count == 2, "nothing may be deleted on a foreign intent")
    }

    @Test func intentEncodingRoundTripsAndMatchesTheDocumentedLayout() throws {
        let intent = TruncationIntent(
            kind: .suffix, logID: LogID(high: 0x0011_2233_4455_6677, low: 0x8899_AABB_CCDD_EEFF), segmentID: 2,
            lsn: 0x1234, offset: 0x2000)
        let bytes = intent.encoded()
        #expect(bytes.count == 64)
        #expect(Array(bytes[0..<8]) == Array("LOGSTTRN".utf8))
        #expect(bytes[12] == 2 && bytes[32] == 2 && bytes[40] == 0x34 && bytes[41] == 0x12 && bytes[49] == 0x20)
        #expect(try TruncationIntent.decode(bytes, path: "TRUNCATE") == intent)
    }
}

