import Foundation
@testable import LogStore
import Testing

/// Opening after a clean close checks only the last segment; sealed segments are checked
/// when first read (DeferredSegmentIndex, FORMAT.md §8.7). After a crash everything is
/// checked at open, as before.
@Suite struct DeferredSegmentIndexTests {
    /// A log of 1 MiB segments holding at least `segments` of them, every record committed
    /// (later records and segment headers claim the earlier ones durable). Returns the records.
    static func writeLog(_ directory: String, segments: Int = 3, close: Bool) throws -> [Log.Record] {
        let log = try Log.open(directory, options: options())
        var index = 0
        while log.segments.count < segments || log.segments[segments - 1].recordCount < 20 {
            try log.append(payload(index, maxLength: 2000))
            index += 1
            if index % 50 == 0 { try log.commit() }
        }
        try log.commit()
        let records = (try log.records().collect())
        if close { try log.close() }
        return records
    }

    /// A record in the middle of the first segment, and the byte in its payload to damage.
    static func victim(_ records: [Log.Record]) -> (record: Log.Record, byte: Int) {
        let first = records.filter { $0.segment == records[0].segment && $0.payload.count > 10 }
        let record = first[first.count / 2]
        return (record, record.offset + Format.recordHeaderSize + 5)
    }

    static func flipByte(_ path: String, at offset: Int) throws {
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        let byte = try #require(try handle.read(upToCount: 1)).first!
        try handle.seek(toOffset: UInt64(offset))
        try handle.write(contentsOf: [byte ^ 0x40])
    }

    @Test func openAfterCleanCloseLeavesSealedSegmentsUncheckedAndReadsThemOnDemand() throws {
        let directory = TemporaryDirectory()
        let records = try Self.writeLog(directory.path, close: true)
        let checked = try Log.openReadOnly(directory.path, checkSealedSegments: true)
        let log = try Log.open(directory.path, options: options())
        #expect(log.recoveryReport.outcome == .clean)
        #expect(log.recoveryReport.deferredSegments == checked.segments.count - 1)
        #expect(checked.recoveryReport.deferredSegments == 0)
        #expect(log.writtenLSN == LSN(records.count) && log.durableLSN == LSN(records.count))
        for record in records.reversed() { #expect(try log.record(record.lsn) == record) }
        // Record counts come from the chain; the rest from the pass over each segment.
        #expect(log.segments == checked.segments)
        #expect(try log.append(Array("next".utf8)) == LSN(records.count + 1))
        try log.close()
        try checked.close()
    }

    @Test func damageInASealedSegmentAfterCleanCloseIsReportedOnFirstReadNotAtOpen() throws {
        let directory = TemporaryDirectory()
        let records = try Self.writeLog(directory.path, close: true)
        let (damaged, byte) = Self.victim(records)
        try Self.flipByte(directory.child(damaged.segment), at: byte)

        let log = try Log.open(directory.path, options: options())
        #expect(log.recoveryReport.outcome == .clean, "open does not read the sealed segment")
        #expect(log.recoveryReport.deferredSegments >= 2)
        let error = expectLogError(.corruption) { _ = try log.read(damaged.lsn) }
        #expect(error?.path == directory.child(damaged.segment))
        #expect(error?.offset == UInt64(damaged.offset))
        #expect(error?.lsn == damaged.lsn)
        #expect(error?.message.contains("checksum mismatch") == true)
        // Before the damage the segment reads; from it to the segment's end nothing does.
        #expect(try log.read(damaged.lsn - 1) == records[Int(damaged.lsn) - 2].payload)
        let lastOfSegment = try #require(records.last { $0.segment == damaged.segment })
        expectLogError(.corruption) { try log.withPayload(of: lastOfSegment.lsn) { _ in } }
        #expect(try log.read(lastOfSegment.lsn + 1) == records[Int(lastOfSegment.lsn)].payload)
        var visited: [LSN] = []
        let iteration = expectLogError(.corruption) {
            try log.forEachRecord(in: 1...log.writtenLSN) { lsn, _ in visited.append(lsn) }
        }
        #expect(iteration?.lsn == damaged.lsn)
        #expect(visited == Array(1..<damaged.lsn))
        // The writer goes on: the damage is in durable data it never rewrites.
        try log.append(Array("after".utf8))
        try log.close()
    }

    @Test func sameDamageAfterACrashIsCorruptionAtOpen() throws {
        let directory = TemporaryDirectory()
        let records = try Self.writeLog(directory.path, close: false)  // dropped: no close marker
        let (damaged, byte) = Self.victim(records)
        try Self.flipByte(directory.child(damaged.segment), at: byte)

        let error = expectLogError(.corruption) { _ = try Log.open(directory.path, options: options()) }
        #expect(error?.path == directory.child(damaged.segment))
        #expect(error?.offset == UInt64(damaged.offset))
        #expect(error?.lsn == damaged.lsn)
        let report = try Log.openReadOnly(directory.path).recoveryReport
        #expect(report.outcome == .corruption && report.deferredSegments == 0)
    }

    @Test func fullCheckAtOpenFindsDamageInSealedSegmentsAfterCleanClose() throws {
        let directory = TemporaryDirectory()
        let records = try Self.writeLog(directory.path, close: true)
        let (damaged, byte) = Self.victim(records)
        try Self.flipByte(directory.child(damaged.segment), at: byte)

        var checking = options()
        checking.checkSealedSegmentsAtOpen = true
        let error = expectLogError(.corruption) { _ = try Log.open(directory.path, options: checking) }
        #expect(error?.lsn == damaged.lsn && error?.offset == UInt64(damaged.offset))
        let report = try Log.openReadOnly(directory.path, checkSealedSegments: true).recoveryReport
        #expect(report.outcome == .corruption)
        #expect(report.damage?.lsn == damaged.lsn && report.damage?.segment == damaged.segment)
    }

    @Test func damageInTheLastSegmentIsStillFoundAtOpenAfterCleanClose() throws {
        let directory = TemporaryDirectory()
        let records = try Self.writeLog(directory.path, close: true)
        let last = records[records.count - 3]
        try Self.flipByte(directory.child(last.segment), at: last.offset + 8)  // its LSN field

        let error = expectLogError(.corruption) { _ = try Log.open(directory.path, options: options()) }
        #expect(error?.lsn == last.lsn && error?.offset == UInt64(last.offset))
    }

    @Test func truncatedSealedSegmentIsCorruptionAtOpenEvenAfterCleanClose() throws {
        let directory = TemporaryDirectory()
        let records = try Self.writeLog(directory.path, close: true)
        let (damaged, _) = Self.victim(records)
        #expect(truncate(directory.child(damaged.segment), off_t(damaged.offset + 10)) == 0)

        let report = try Log.openReadOnly(directory.path).recoveryReport
        #expect(report.outcome == .corruption && report.deferredSegments == 0)
        #expect(report.damage?.segment == damaged.segment && report.damage?.lsn == damaged.lsn)
        expectLogError(.corruption) { _ = try Log.open(directory.path, options: options()) }
    }

    @Test func appendsAfterACleanReopenAndACrashGetTheFullCheck() throws {
        let directory = TemporaryDirectory()
        let records = try Self.writeLog(directory.path, close: true)
        do {
            let log = try Log.open(directory.path, options: options())
            #expect(log.recoveryReport.deferredSegments > 0)
            try log.append(Array("one more".utf8))
            try log.commit()
        }  // dropped without close: the close marker is no longer last
        let (damaged, byte) = Self.victim(records)
        try Self.flipByte(directory.child(damaged.segment), at: byte)
        let report = try Log.openReadOnly(directory.path).recoveryReport
        #expect(report.deferredSegments == 0)
        #expect(report.outcome == .corruption && report.damage?.lsn == damaged.lsn)
    }

    @Test func recordsIterationThrowsAtDamageFoundOnFirstReadInsteadOfEndingEarly() throws {
        let directory = TemporaryDirectory()
        let records = try Self.writeLog(directory.path, close: true)
        let (damaged, byte) = Self.victim(records)
        try Self.flipByte(directory.child(damaged.segment), at: byte)

        let log = try Log.openReadOnly(directory.path)
        var iterator = log.records()
        var seen: [LSN] = []
        let error = expectLogError(.corruption) {
            while let record = try iterator.next() { seen.append(record.lsn) }
        }
        #expect(error?.lsn == damaged.lsn && error?.offset == UInt64(damaged.offset))
        #expect(seen == Array(1..<damaged.lsn))
        // Asking again does not skip past the damage.
        expectLogError(.corruption) { _ = try iterator.next() }
    }

    @Test func removeAfterIntoASealedSegmentNotCheckedAtOpenCutsItAndAppendsAfterTheCut() throws {
        let directory = TemporaryDirectory()
        let records = try Self.writeLog(directory.path, close: true)
        let firstSegment = records.filter { $0.segment == records[0].segment }
        let keep = firstSegment[firstSegment.count / 2].lsn

        let log = try Log.open(directory.path, options: options())
        #expect(log.recoveryReport.deferredSegments >= 2)
        try log.removeAfter(keep)
        #expect(log.writtenLSN == keep && log.segments.count == 1)
        #expect(log.segments[0].recordCount == Int(keep))
        let appended = try log.appendAndCommit(Array("after the cut".utf8))
        #expect(appended == keep + 1)
        try log.close()

        for reopened in [try Log.openReadOnly(directory.path), try Log.openReadOnly(directory.path, checkSealedSegments: true)] {
            #expect(reopened.recoveryReport.outcome == .clean)
            let kept = try reopened.records().collect()
            #expect(kept.map(\.payload) == records.prefix(Int(keep)).map(\.payload) + [Array("after the cut".utf8)])
        }
    }

    @Test func removeAfterIntoADamagedSealedSegmentThrowsTheDamageAndRemovesNothing() throws {
        let directory = TemporaryDirectory()
        let records = try Self.writeLog(directory.path, close: true)
        let (damaged, byte) = Self.victim(records)
        try Self.flipByte(directory.child(damaged.segment), at: byte)

        let log = try Log.open(directory.path, options: options())
        let written = log.writtenLSN
        let error = expectLogError(.corruption) { try log.removeAfter(damaged.lsn + 1) }
        #expect(error?.lsn == damaged.lsn)
        #expect(log.writtenLSN == written)
        // A cut before the damage removes it along with everything after.
        try log.removeAfter(damaged.lsn - 1)
        try log.close()
        let reopened = try Log.openReadOnly(directory.path, checkSealedSegments: true)
        #expect(reopened.recoveryReport.outcome == .clean && reopened.writtenLSN == damaged.lsn - 1)
    }

    @Test func removeBeforeDeletesSealedSegmentsNotCheckedAtOpen() throws {
        let directory = TemporaryDirectory()
        let records = try Self.writeLog(directory.path, segments: 4, close: true)
        let log = try Log.open(directory.path, options: options())
        let third = log.segments[2]
        try log.removeBefore(third.baseLSN)
        #expect(log.firstLSN == third.baseLSN)
        #expect(try log.read(third.baseLSN) == records[Int(third.baseLSN) - 1].payload)
        try log.close()
        let reopened = try Log.openReadOnly(directory.path)
        #expect(reopened.firstLSN == third.baseLSN)
        #expect(try reopened.records().collect().map(\.payload) == records[(Int(third.baseLSN) - 1)...].map(\.payload))
    }
}
