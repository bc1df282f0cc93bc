import Foundation
@testable import LogStore
import Synchronization
import Testing

/// `Log.durableRecords(from:)`: an in-process tail that yields a record only once a completed
/// sync covers it, never asks for a sync, and ends on close and cancellation.
@Suite struct DurableRecordsTests {
    /// `append` without waiting (in async code the plain call resolves to the waiting overload).
    func appendOnly(_ log: Log, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { _ = try log.append($0) }
    }

    /// Consumes `log.durableRecords(from:)` on a task, checking at each record that the log's
    /// durable LSN already covers it.
    final class Consumer: Sendable {
        final class Received: Sendable {
            let records = Mutex<[Log.Record]>([])
            let beyondDurable = Mutex<[LSN]>([])
        }
        let seen = Received()
        let task: Task<LogError?, Never>

        init(_ log: Log, from start: LSN? = nil) {
            let seen = self.seen
            task = Task {
                do {
                    for try await record in log.durableRecords(from: start) {
                        if record.lsn > log.durableLSN { seen.beyondDurable.withLock { $0.append(record.lsn) } }
                        seen.records.withLock { $0.append(record) }
                    }
                    return nil
                } catch { return error as? LogError ?? LogError(.ioError, "\(error)") }
            }
        }

        var lsns: [LSN] { seen.records.withLock { $0.map(\.lsn) } }

        /// Waits until `count` records arrived (or the consumer ended).
        func waitFor(_ count: Int) async {
            while seen.records.withLock({ $0.count }) < count {
                try? await Task.sleep(for: .milliseconds(2))
            }
        }
    }

    @Test func yieldsOnlyDurableRecordsInOrderAndNeverAsksForASync() async throws {
        let directory = TemporaryDirectory("durable-records")
        let log = try Log.open(directory.path, options: options())
        var expected: [[UInt8]] = []
        for index in 0..<5 { expected.append(payload(index)); try appendOnly(log, expected.last!) }
        try await log.commit()
        let consumer = Consumer(log)
        await consumer.waitFor(5)
        // Appended, not committed: the consumer waits for them without making them durable.
        for index in 5..<8 { expected.append(payload(index)); try appendOnly(log, expected.last!) }
        try await Task.sleep(for: .milliseconds(100))
        #expect(consumer.lsns == Array(1...5))
        #expect(log.durableLSN == 5, "a waiting consumer must not cause a sync")
        try await log.commit()
        await consumer.waitFor(8)
        // Many commits, across several segment rolls.
        for index in 8..<3_000 {
            expected.append(payload(index, maxLength: 1_200))
            try appendOnly(log, expected.last!)
            if index % 7 == 0 { try await log.commit() }
        }
        try await log.commit()
        await consumer.waitFor(3_000)
        #expect(log.segments.count > 1)
        #expect(consumer.lsns == Array(1...3_000))
        #expect(consumer.seen.records.withLock { $0.map(\.payload) } == expected)
        #expect(consumer.seen.beyondDurable.withLock { $0 }.isEmpty, "records yielded before they were durable")
        try log.close()
        #expect(await consumer.task.value == nil)
    }

    /// After `removeAfter`, records appended in place of removed ones are yielded only once
    /// durable, and a cut below a record already yielded throws `truncated`.
    @Test func removeAfterBelowAYieldedRecordThrowsAndReplacementsWaitUntilDurable() async throws {
        let directory = TemporaryDirectory("durable-records-cut")
        let log = try Log.open(directory.path, options: options())
        for index in 0..<10 { try appendOnly(log, payload(index)) }
        try await log.commit()
        var iterator = log.durableRecords(from: 1).makeAsyncIterator()
        for lsn in LSN(1)...5 { #expect(try await iterator.next()?.lsn == lsn) }

        try log.removeAfter(5)
        try appendOnly(log, Array("replacement".utf8))
        // Committed by another task a little later: `next()` waits for that sync.
        let committer = Task {
            try await Task.sleep(for: .milliseconds(100))
            #expect(log.durableLSN == 5, "a waiting iterator must not cause a sync")
            try await log.commit()
        }
        let replacement = try await iterator.next()
        #expect(replacement?.lsn == 6 && replacement?.payload == Array("replacement".utf8))
        #expect(log.durableLSN >= 6, "the replacement was yielded before it was durable")
        try await committer.value

        for index in 0..<3 { try appendOnly(log, payload(index)) }
        try await log.commit()
        #expect(try await iterator.next()?.lsn == 7)
        #expect(try await iterator.next()?.lsn == 8)
        try log.removeAfter(6)
        do {
            _ = try await iterator.next()
            Issue.record("a cut below a yielded record went unreported")
        } catch {
            #expect(error.code == .truncated)
        }
        try log.close()
    }

    @Test func startsAtTheGivenLSN() async throws {
        let directory = TemporaryDirectory("durable-records-from")
        let log = try Log.open(directory.path, options: options())
        for index in 0..<10 { try appendOnly(log, payload(index)) }
        try await log.commit()
        let consumer = Consumer(log, from: 7)
        await consumer.waitFor(4)
        #expect(consumer.lsns == [7, 8, 9, 10])
        try log.close()
        _ = await consumer.task.value
    }

    @Test func endsWhenTheLogIsClosed() async throws {
        let directory = TemporaryDirectory("durable-records-close")
        let log = try Log.open(directory.path, options: options())
        try log.appendAndCommit([1])
        let consumer = Consumer(log)
        await consumer.waitFor(1)
        try log.close()
        #expect(await consumer.task.value == nil)
        #expect(consumer.lsns == [1])
    }

    @Test func throwsTheSyncFailureOnceTheLogIsPoisoned() async throws {
        let directory = TemporaryDirectory("durable-records-poison")
        let log = try Log.open(directory.path, options: options())
        try log.appendAndCommit([1])
        let consumer = Consumer(log)
        await consumer.waitFor(1)
        FaultInjection.arm(.sync, directory: directory.path, errno: .ioError)
        defer { FaultInjection.disarm(directory: directory.path) }
        try appendOnly(log, [2])
        await #expect(throws: LogError.self) { try await log.commit() }
        let error = await consumer.task.value
        #expect(error?.code == .poisoned)
        #expect(consumer.lsns == [1])
        try log.close()
    }

    @Test func cancellationEndsTheSequenceAndRemovesItsWaiter() async throws {
        let directory = TemporaryDirectory("durable-records-cancel")
        let log = try Log.open(directory.path, options: options())
        try log.appendAndCommit([1])
        let consumer = Consumer(log)
        await consumer.waitFor(1)
        while log.asyncWaiterCount.load(ordering: .sequentiallyConsistent) == 0 {
            try await Task.sleep(for: .milliseconds(2))
        }
        consumer.task.cancel()
        #expect(await consumer.task.value == nil)
        #expect(log.asyncWaiterCount.load(ordering: .sequentiallyConsistent) == 0)
        #expect(log.asyncWaiters.withLock { $0.isEmpty })
        try log.close()
    }

    /// With `SyncMode.none` nothing becomes durable after open: the records recovered at open
    /// are yielded, later ones never, and closing ends the sequence.
    @Test func withoutSyncsOnlyTheRecordsRecoveredAtOpenAreYielded() async throws {
        let directory = TemporaryDirectory("durable-records-none")
        let first = try Log.open(directory.path, options: options())
        try first.appendAndCommit([1])
        try first.appendAndCommit([2])
        try first.close()
        let log = try Log.open(directory.path, options: options(sync: .none))
        let consumer = Consumer(log)
        await consumer.waitFor(2)
        try appendOnly(log, [3])
        try await log.commit()
        try await Task.sleep(for: .milliseconds(100))
        #expect(consumer.lsns == [1, 2])
        try log.close()
        #expect(await consumer.task.value == nil)
        #expect(consumer.lsns == [1, 2])
    }
}
