import Foundation
@testable import LogStore
import Synchronization
import SystemPackage
import Testing

@Suite struct LogTests {
    @Test func appendedRecordsReadBackAcrossManySegmentRollsAndReopen() throws {
        let directory = TemporaryDirectory()
        let count = 3000
        do {
            let log = try Log.open(directory.path, options: options())
            for index in 0..<count {
                let lsn = try log.append(payload(index, maxLength: 2000))
                #expect(lsn == LSN(index + 1))
                if index % 100 == 99 { try log.commit() }
            }
            #expect(log.segments.count >= 3, "3000 records of up to 2 KB must roll 1 MiB segments")
            for index in stride(from: 0, to: count, by: 7) {
                #expect(try log.read(LSN(index + 1)) == payload(index, maxLength: 2000))
            }
            try log.close()
        }
        let reopened = try Log.open(directory.path, options: options())
        #expect(reopened.recoveryReport.outcome == .clean)
        #expect(reopened.firstLSN == 1)
        #expect(reopened.writtenLSN == LSN(count))
        #expect(reopened.durableLSN == LSN(count))
        let records = (try reopened.records().collect())
        #expect(records.count == count)
        for (index, record) in records.enumerated() {
            #expect(record.lsn == LSN(index + 1))
            #expect(record.payload == payload(index, maxLength: 2000))
        }
        #expect(try reopened.append(Array("after reopen".utf8)) == LSN(count + 1))
        try reopened.close()
        #expect(try readAll(directory.path).last?.payload == Array("after reopen".utf8))
    }

    @Test func emptyLogHasNoRecordsAndStartsAtLSNOne() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        #expect(log.firstLSN == 1)
        #expect(log.writtenLSN == 0)
        #expect(log.durableLSN == 0)
        #expect(try log.commit() == 0)
        expectLogError(.lsnOutOfRange) { _ = try log.read(1) }
        #expect(try log.append([]) == 1)
        #expect(try log.read(1) == [])
        try log.close()
    }

    @Test func commitMakesEverythingAppendedBeforeItDurable() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        try log.append(Array("a".utf8))
        try log.append(Array("b".utf8))
        #expect(log.writtenLSN == 2)
        #expect(log.durableLSN == 0, "append alone is never durable")
        #expect(try log.commit() == 2)
        #expect(log.durableLSN == 2)
        #expect(try log.appendAndCommit(Array("c".utf8)) == 3)
        #expect(log.durableLSN == 3)
        try log.close()
    }

    @Test func commitSyncsOnlyTheDirtyPages() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options(segmentSize: 4 << 20))
        FaultInjection.observeSyncs(directory: directory.path)
        defer { FaultInjection.disarm(directory: directory.path) }
        var end = Format.segmentHeaderSize
        for round in 0..<50 {
            let start = end
            for index in 0..<(round % 5 + 1) {
                let bytes = payload(round * 10 + index, maxLength: 3000)
                try log.append(bytes)
                end += Format.recordFootprint(payloadLength: bytes.count)
            }
            try log.commit()
            let syncs = FaultInjection.recordedSyncs(directory: directory.path)
            let last = try #require(syncs.last)
            // Exactly the page-aligned union of what was written since the previous commit.
            #expect(last.bytes == alignDown(start, to: 4096)..<alignUp(end, to: 4096))
            #expect(syncs.count == round + 1)
        }
        try log.close()
    }

    @Test func syncModeNoneNeverReportsDurability() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options(sync: .none))
        FaultInjection.observeSyncs(directory: directory.path)
        defer { FaultInjection.disarm(directory: directory.path) }
        for index in 0..<100 { try log.append(payload(index)) }
        #expect(try log.commit() == 0)
        #expect(log.durableLSN == 0)
        #expect(FaultInjection.recordedSyncs(directory: directory.path).isEmpty)
        try log.close()
        // Nothing was lost by the process, so the records are still there after reopening.
        #expect(try readAll(directory.path).count == 100)
    }

    @Test func fdatasyncModeCommitsToo() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options(sync: .fdatasync))
        FaultInjection.observeSyncs(directory: directory.path)
        defer { FaultInjection.disarm(directory: directory.path) }
        for index in 0..<10 { try log.appendAndCommit(payload(index)) }
        #expect(log.durableLSN == 10)
        #expect(FaultInjection.recordedSyncs(directory: directory.path).count == 10)
        try log.close()
    }

    @Test func concurrentAppendersGetDistinctContiguousLSNs() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        let threads = 8
        let perThread = 400
        let assigned = Mutex<[LSN: [UInt8]]>([:])
        let failures = Atomic<Int>(0)
        DispatchQueue.concurrentPerform(iterations: threads) { thread in
            for index in 0..<perThread {
                let bytes = payload(thread * 100_000 + index, maxLength: 1500)
                do {
                    let lsn = try log.append(bytes)
                    if index % 3 == 0 {
                        let durable = try log.commit()
                        if durable < lsn { failures.add(1, ordering: .relaxed) }
                    }
                    assigned.withLock { $0[lsn] = bytes }
                } catch {
                    failures.add(1, ordering: .relaxed)
                }
            }
        }
        #expect(failures.load(ordering: .relaxed) == 0)
        let byLSN = assigned.withLock { $0 }
        #expect(byLSN.count == threads * perThread)
        #expect(Set(byLSN.keys) == Set(1...LSN(threads * perThread)))
        try log.close()
        for record in try readAll(directory.path) { #expect(byLSN[record.lsn] == record.payload) }
    }

    @Test func oversizeRecordIsRejectedWithoutTouchingTheLog() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        try log.appendAndCommit(Array("keep".utf8))
        let maximum = log.maxRecordSize
        let error = expectLogError(.recordTooLarge) { try log.append([UInt8](repeating: 1, count: maximum + 1)) }
        #expect(error?.message.contains("\(maximum)") == true)
        // The largest record that fits does fit, in a segment of its own.
        #expect(try log.appendAndCommit([UInt8](repeating: 2, count: maximum)) == 2)
        #expect(try log.appendAndCommit(Array("next".utf8)) == 3)
        try log.close()
        let records = try readAll(directory.path)
        #expect(records.map(\.payload.count) == [4, maximum, 4])
    }

    @Test func secondWriterInTheSameProcessIsLockedOut() throws {
        let directory = TemporaryDirectory()
        let first = try Log.open(directory.path, options: options())
        let error = expectLogError(.locked) { _ = try Log.open(directory.path, options: options()) }
        #expect(error?.message.contains("\(getpid())") == true, "the message names the holder")
        #expect(Log.lockHolder(directory.path) == getpid())
        // Readers take no lock and are not blocked.
        #expect(try Log.openReadOnly(directory.path).writtenLSN == 0)
        try first.close()
        #expect(Log.lockHolder(directory.path) == nil)
        try Log.open(directory.path, options: options()).close()
    }

    @Test func abandonedWriterReleasesTheLock() throws {
        let directory = TemporaryDirectory()
        do {
            let log = try Log.open(directory.path, options: options())
            try log.appendAndCommit([1])
        }
        let log = try Log.open(directory.path, options: options())
        #expect(log.writtenLSN == 1)
        try log.close()
    }

    @Test func readOnlyOpenNeverModifiesAByteAndRefusesWrites() throws {
        let directory = TemporaryDirectory()
        do {
            let log = try Log.open(directory.path, options: options())
            for index in 0..<50 { try log.append(payload(index)) }
            try log.commit()
            for index in 50..<60 { try log.append(payload(index)) }
            // Abandoned with an uncommitted tail: a writer's recovery would have work to do.
        }
        // Tear the tail so that recovery would change the file.
        let path = segmentPath(directory.path)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let records = try readAll(directory.path)
        bytes[records[55].offset + 40] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: path))
        let before = try snapshot(directory.path)
        let reader = try Log.openReadOnly(directory.path)
        #expect(reader.recoveryReport.outcome == .tornTail)
        #expect(reader.recoveryReport.applied == false)
        #expect(reader.writtenLSN == 55)
        expectLogError(.readOnly) { try reader.append([1]) }
        expectLogError(.readOnly) { try reader.commit() }
        try reader.close()
        #expect(try snapshot(directory.path) == before)
    }

    @Test func failedSyncPoisonsTheLogUntilReopened() throws {
        for mode in [Log.SyncMode.msync, .fdatasync] {
            for failAt in 0..<4 {
                let directory = TemporaryDirectory()
                let log = try Log.open(directory.path, options: options(sync: mode))
                FaultInjection.arm(.sync, directory: directory.path, after: failAt, errno: .ioError)
                defer { FaultInjection.disarm(directory: directory.path) }
                var acknowledged: [LSN] = []
                var failed = false
                for index in 0..<6 {
                    do {
                        acknowledged.append(try log.appendAndCommit(payload(index)))
                    } catch {
                        #expect(error.code == (failed ? .poisoned : .ioError), "\(mode) failAt \(failAt): \(error)")
                        #expect(error.errno == .ioError)
                        failed = true
                    }
                }
                #expect(failed)
                #expect(acknowledged.count == failAt, "nothing is acknowledged from the failed sync on")
                #expect(log.durableLSN == LSN(failAt), "durableLSN never passes the failure")
                expectLogError(.poisoned) { try log.append([1]) }
                expectLogError(.poisoned) { try log.commit() }
                try log.close()
                FaultInjection.disarm(directory: directory.path)
                let reopened = try Log.open(directory.path, options: options(sync: mode))
                for lsn in acknowledged { #expect(try reopened.read(lsn) == payload(Int(lsn) - 1)) }
                try reopened.appendAndCommit([7])
                try reopened.close()
            }
        }
    }

    @Test func fullDiskAtSegmentCreationIsTypedAndTouchesNoAcknowledgedData() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        var acknowledged = 0
        // Every preallocation fails: the one in the background and the roll's own attempt.
        FaultInjection.arm(.segmentPreallocation, directory: directory.path, times: .max, errno: .noSpace)
        defer { FaultInjection.disarm(directory: directory.path) }
        var sawNoSpace = false
        for index in 0..<2000 {
            do {
                try log.appendAndCommit(payload(index, maxLength: 1000))
                acknowledged += 1
            } catch {
                #expect(error.code == .noSpace)
                #expect(error.path?.hasSuffix(".tmp") == true)
                sawNoSpace = true
                break
            }
        }
        #expect(sawNoSpace)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasSuffix(".tmp") }
        #expect(leftovers.isEmpty, "no temporary file is left behind")
        // A full disk is not a failed sync: once space is back, appends go on.
        FaultInjection.disarm(directory: directory.path)
        #expect(try log.appendAndCommit([9]) == LSN(acknowledged + 1))
        try log.close()
        let records = try readAll(directory.path)
        #expect(records.count == acknowledged + 1)
        for index in 0..<acknowledged { #expect(records[index].payload == payload(index, maxLength: 1000)) }
    }

    @Test(.enabled(if: canMountTmpfs, "needs root and mount(8) to make a real full filesystem"))
    func realFullFilesystemGivesNoSpaceNotSIGBUS() throws {
        let directory = TemporaryDirectory()
        #expect(run("/bin/mount", ["-t", "tmpfs", "-o", "size=3m", "tmpfs", directory.path]) == 0)
        defer { run("/bin/umount", [directory.path]) }
        let logPath = directory.child("log")
        let log = try Log.open(logPath, options: options())
        var acknowledged = 0
        var error: LogError?
        for index in 0..<10_000 {
            do {
                try log.appendAndCommit(payload(index, maxLength: 1000))
                acknowledged += 1
            } catch let caught {
                error = caught
                break
            }
        }
        #expect(error?.code == .noSpace, "\(String(describing: error))")
        try log.close()
        let records = try readAll(logPath)
        #expect(records.count == acknowledged)
        #expect(records.last?.payload == payload(acknowledged - 1, maxLength: 1000))
    }

    @Test(.enabled(if: canMountTmpfs, "needs root and mount(8) for a read-only filesystem"))
    func readOnlyFilesystemRefusesWritersButServesReaders() throws {
        let directory = TemporaryDirectory()
        #expect(run("/bin/mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", directory.path]) == 0)
        defer { run("/bin/umount", [directory.path]) }
        let logPath = directory.child("log")
        let log = try Log.open(logPath, options: options())
        try log.appendAndCommit(Array("x".utf8))
        try log.close()
        #expect(run("/bin/mount", ["-o", "remount,ro", directory.path]) == 0)
        expectLogError(.permissionDenied) { _ = try Log.open(logPath, options: options()) }
        #expect(try readAll(logPath).map(\.payload) == [Array("x".utf8)])
    }

    @Test func missingDirectoryIsNotFoundUnlessCreating() throws {
        let directory = TemporaryDirectory()
        expectLogError(.notFound) { _ = try Log.open(directory.child("missing"), options: Log.Options()) }
        expectLogError(.notFound) { _ = try Log.openReadOnly(directory.child("missing")) }
        try Log.open(directory.child("missing"), options: options()).close()
        #expect(try readAll(directory.child("missing")).isEmpty)
    }

    @Test func directoryOfRandomFilesIsNotALog() throws {
        let directory = TemporaryDirectory()
        var generator = SplitMix64(seed: 7)
        for index in 0..<5 {
            let bytes = (0..<(index * 3000)).map { _ in UInt8.random(in: 0...255, using: &generator) }
            try Data(bytes).write(to: URL(fileURLWithPath: directory.child("file\(index)")))
        }
        let before = try snapshot(directory.path)
        expectLogError(.notALog) { _ = try Log.openReadOnly(directory.path) }
        expectLogError(.notALog) { _ = try Log.open(directory.path, options: Log.Options()) }
        expectLogError(.notALog) { _ = try Log.open(directory.path, options: options()) }
        #expect(try snapshot(directory.path) == before, "not even a lock file is left behind")
    }

    @Test func aPlainFileIsNotALog() throws {
        let directory = TemporaryDirectory()
        try Data("hello".utf8).write(to: URL(fileURLWithPath: directory.child("file")))
        expectLogError(.notALog) { _ = try Log.openReadOnly(directory.child("file")) }
        expectLogError(.notALog) { _ = try Log.open(directory.child("file"), options: options()) }
    }

    @Test func segmentFileWithBadContentsIsRejected() throws {
        let cases: [(String, (inout Data) -> Void, LogError.Code)] = [
            ("random bytes", { data in data = Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }) }, .notALog),
            ("empty file", { data in data = Data() }, .corruption),
            ("shorter than its header", { data in data = data.prefix(1000) }, .corruption),
            ("future version", { data in data[8] = 9; resealHeader(&data) }, .unsupportedVersion),
            ("damaged version", { data in data[8] = 9 }, .corruption),
            ("header checksum", { data in data[30] ^= 1 }, .corruption),
        ]
        for (label, damage, code) in cases {
            let directory = TemporaryDirectory()
            let log = try Log.open(directory.path, options: options())
            try log.appendAndCommit(Array("x".utf8))
            try log.close()
            let path = segmentPath(directory.path)
            var data = try Data(contentsOf: URL(fileURLWithPath: path))
            damage(&data)
            try data.write(to: URL(fileURLWithPath: path))
            let readError = expectLogError(code) { _ = try Log.openReadOnly(directory.path) }
            #expect(readError?.path == path, "\(label)")
            expectLogError(code) { _ = try Log.open(directory.path, options: options()) }
        }
    }

    @Test func segmentsOfDifferentSizesAreRejected() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        var index = 0
        while log.segments.count < 2 { try log.appendAndCommit(payload(index, maxLength: 4000)); index += 1 }
        try log.close()
        let path = segmentPath(directory.path, id: 2)
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        data[34] = 0x20  // 2 MiB where the log's segments are 1 MiB
        resealHeader(&data)
        try data.write(to: URL(fileURLWithPath: path))
        let error = expectLogError(.corruption) { _ = try Log.open(directory.path, options: options()) }
        #expect(error?.path == path)
        expectLogError(.corruption) { _ = try Log.openReadOnly(directory.path) }
    }

    @Test func recordLengthPointingPastTheEndOfTheFileIsHandled() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        for index in 0..<10 { try log.appendAndCommit(payload(index)) }
        try log.close()
        let records = try readAll(directory.path)
        let path = segmentPath(directory.path)
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        // The last record claims 4 GiB - 1 bytes: past the segment and the file.
        let offset = records[9].offset
        data.replaceSubrange((offset + 4)..<(offset + 8), with: [0xFF, 0xFF, 0xFF, 0xFF])
        try data.write(to: URL(fileURLWithPath: path))
        let reader = try Log.openReadOnly(directory.path)
        // Record 9 was made durable by a later commit, but only the close marker says so and
        // that marker now sits after an unparseable record: damage to durable data.
        #expect(reader.recoveryReport.outcome == .corruption)
        #expect(reader.recoveryReport.damage?.offset == UInt64(offset))
        #expect(reader.recoveryReport.damage?.reason.contains("past the end") == true)
        #expect(reader.writtenLSN == 9)
    }

    @Test func invalidSegmentSizesAreRejected() {
        let directory = TemporaryDirectory()
        for size in [0, 4096, (1 << 20) + 1, (1 << 20) - 4096, (1 << 32) + 4096] {
            expectLogError(.invalidArgument) { _ = try Log.open(directory.path, options: options(segmentSize: size)) }
        }
    }

    @Test func closingFromManyThreadsAtOnceIsSafe() throws {
        for round in 0..<30 {
            let directory = TemporaryDirectory()
            let log = try Log.open(directory.path, options: options())
            try log.appendAndCommit(payload(round))
            DispatchQueue.concurrentPerform(iterations: 4) { _ in try? log.close() }
            #expect(try readAll(directory.path).count == 1)
        }
    }

    @Test func closedLogRefusesEverything() throws {
        let directory = TemporaryDirectory()
        let log = try Log.open(directory.path, options: options())
        try log.appendAndCommit([1])
        try log.close()
        expectLogError(.closed) { try log.append([1]) }
        expectLogError(.closed) { try log.commit() }
        expectLogError(.closed) { _ = try log.read(1) }
        try log.close()
    }

    @Test(arguments: [Log.CommitAlignment.sector, .page])
    func alignedCommitsStartTheNextRecordOnAFreshBoundary(alignment: Log.CommitAlignment) throws {
        let directory = TemporaryDirectory("aligned-commits")
        var opts = options()
        opts.commitAlignment = alignment
        let log = try Log.open(directory.path, options: opts)
        var lsns: [LSN] = []
        // The first record appended after each commit must start on a boundary.
        var firstAfterCommit: [LSN] = []
        for index in 0..<40 {
            let lsn = try log.appendAndCommit(payload(index, maxLength: 700))
            lsns.append(lsn)
            if index % 5 == 0 {
                firstAfterCommit.append(try log.append(payload(1_000 + index)))
            } else if index > 0, lsns.count >= 2, firstAfterCommit.last != lsn - 1 {
                firstAfterCommit.append(lsn)
            }
        }
        let boundary = alignment == .page ? 4096 : 512
        for lsn in firstAfterCommit {
            let offset = try log.record(lsn).offset
            #expect(offset % boundary == 0, "LSN \(lsn) starts at \(offset)")
        }
        try log.close()
        let reopened = try Log.openReadOnly(directory.path)
        #expect(reopened.recoveryReport.outcome == .clean)
        #expect(reopened.writtenLSN == 48)
        for (index, lsn) in lsns.enumerated() { #expect(try reopened.read(lsn) == payload(index, maxLength: 700)) }
        try reopened.close()
    }

    /// Recovery calls every record it keeps durable, the last one too: with aligned commits no
    /// later commit may change the sector (or page) it ends in, so the first record appended
    /// after recovery starts on a boundary, and the padding before it is already on disk.
    @Test(arguments: [Log.CommitAlignment.sector, .page])
    func appendsAfterRecoveryStartOnACommitBoundary(alignment: Log.CommitAlignment) throws {
        let directory = TemporaryDirectory("aligned-recovery")
        var opts = options()
        opts.commitAlignment = alignment
        do {
            // Dropped without close, its last record appended but never committed.
            let log = try Log.open(directory.path, options: opts)
            try log.appendAndCommit(payload(0, maxLength: 700))
            try log.append(Array("unacknowledged".utf8))
        }
        let log = try Log.open(directory.path, options: opts)
        #expect(log.durableLSN == 2)
        let kept = try log.record(2)
        let boundary = alignment == .page ? 4096 : 512
        #expect((kept.offset + Format.recordFootprint(payloadLength: kept.payload.count)) % boundary != 0,
                "the test needs a recovered end off the boundary")
        let next = try log.append(Array("after recovery".utf8))
        let start = try log.record(next).offset
        #expect(start % boundary == 0, "LSN \(next) starts at \(start)")
        try log.commit()
        try log.close()
        let reopened = try Log.openReadOnly(directory.path)
        #expect(reopened.writtenLSN == 3)
        #expect(try reopened.read(2) == Array("unacknowledged".utf8))
        #expect(try reopened.read(3) == Array("after recovery".utf8))
        try reopened.close()
    }
}

/// Recovery modes (FORMAT.md §8.5, §8.6) on four damaged logs: what each mode keeps, refuses,
/// reports, preserves in side files and (salvage) exports, and that the result is a log every
/// mode, a reader and a second recovery open cleanly.
@Suite struct RecoveryModeTests {
    enum Damage: String, CaseIterable, Sendable, CustomTestStringConvertible {
        /// Uncommitted records after a commit, one of them damaged: valid ones follow it.
        case tornTail = "torn tail"
        /// A flipped byte in a committed record followed by later commits (and a close marker).
        case durableRecord = "flipped byte in a durable record"
        /// A roll into segment 2 that was installed but never committed, and segment 1's
        /// unacknowledged tail torn: segment 2 is an orphan.
        case orphanAfterTornRoll = "orphan segment after a torn roll"
        /// A flipped byte in a committed record of segment 1 of 3: segments 2 and 3 are orphans.
        case durableRecordBeforeTwoSegments = "flipped byte in a durable record, two segments after it"

        var testDescription: String { rawValue }
    }

    /// A damaged log and what recovery must make of it.
    struct Case {
        var files: [String: Data]
        /// Every record as written, in LSN order (the damaged one included, undamaged).
        var records: [Log.Record]
        var cutLSN: LSN
        var cutSegment: String
        var cutOffset: Int
        var outcome: RecoveryReport.Outcome
        var orphans: [String]

        var lost: ClosedRange<LSN>? { outcome == .corruption ? cutLSN...records.last!.lsn : nil }
        var pastCut: [Log.Record] { records.filter { $0.lsn > cutLSN } }
        var salvageable: [ClosedRange<LSN>] { [(cutLSN + 1)...records.last!.lsn] }
        var gaps: [ClosedRange<LSN>] { [cutLSN...cutLSN] }
        var kept: [Log.Record] { Array(records.prefix(Int(cutLSN - 1))) }

        func opens(in mode: RecoveryMode) -> Bool {
            switch mode {
            case .strict: false
            case .tornTail: outcome == .tornTail
            case .pointInTime, .salvage: true
            }
        }
    }

    static func make(_ damage: Damage) throws -> Case {
        let source = TemporaryDirectory("damaged")
        let segmentOne = Format.segmentFileName(id: 1)
        switch damage {
        case .tornTail:
            let log = try Log.open(source.path, options: options())
            for index in 0..<10 { try log.append(payload(index)) }
            try log.commit()
            for index in 10..<30 { try log.append(payload(index)) }
            let records = (try log.records().collect())
            _ = consume log
            var files = try snapshot(source.path)
            let victim = records[15]
            files[segmentOne]![victim.offset + 17] ^= 0x40
            return Case(files: files, records: records, cutLSN: victim.lsn, cutSegment: segmentOne,
                        cutOffset: victim.offset, outcome: .tornTail, orphans: [])
        case .durableRecord:
            let log = try Log.open(source.path, options: options())
            for index in 0..<20 { try log.appendAndCommit(payload(index)) }
            let records = (try log.records().collect())
            try log.close()
            var files = try snapshot(source.path)
            let victim = records[9]
            files[segmentOne]![victim.offset + 17] ^= 0x40
            return Case(files: files, records: records, cutLSN: victim.lsn, cutSegment: segmentOne,
                        cutOffset: victim.offset, outcome: .corruption, orphans: [])
        case .orphanAfterTornRoll:
            let records = try logWithAnUnacknowledgedRoll(source.path)
            var files = try snapshot(source.path)
            let segmentTwo = Format.segmentFileName(id: 2)
            #expect(files[segmentTwo] != nil)
            let victim = records[100]
            files[segmentOne]![victim.offset + 2] ^= 0xFF
            return Case(files: files, records: records, cutLSN: victim.lsn, cutSegment: segmentOne,
                        cutOffset: victim.offset, outcome: .tornTail, orphans: [segmentTwo])
        case .durableRecordBeforeTwoSegments:
            let log = try Log.open(source.path, options: options())
            var index = 0
            while log.segments.count < 3 {
                try log.append(payload(index, maxLength: 8000))
                index += 1
                if index % 4 == 0 { try log.commit() }
            }
            try log.commit()
            let records = (try log.records().collect())
            // Dropped without close: after a clean close, damage in a sealed segment is found
            // on first read, not at open (FORMAT.md §8.7, DeferredSegmentIndexTests).
            _ = consume log
            var files = try snapshot(source.path)
            let inFirst = records.filter { $0.segment == segmentOne }
            let victim = inFirst[inFirst.count / 2]
            files[segmentOne]![victim.offset + 17] ^= 0x40
            return Case(files: files, records: records, cutLSN: victim.lsn, cutSegment: segmentOne,
                        cutOffset: victim.offset, outcome: .corruption,
                        orphans: [Format.segmentFileName(id: 2), Format.segmentFileName(id: 3)])
        }
    }

    /// The salvage export as (lsn, segment, offset, payload), in file order.
    static func exported(_ path: String) throws -> [Log.Record] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        return try text.split(separator: "\n").map { line in
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let data = try #require(Data(base64Encoded: object["data"] as? String ?? "?"))
            #expect(object["length"] as? Int == data.count)
            #expect(object["durable_lsn"] is Int)
            return Log.Record(lsn: LSN(object["lsn"] as? Int ?? -1), segment: object["segment"] as? String ?? "",
                              offset: object["offset"] as? Int ?? -1, payload: [UInt8](data))
        }
    }

    static func contents(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    /// The side files in `directory` holding bytes of `segment` from `offset` (`dropped-S-O-*`).
    static func droppedFiles(_ directory: String, segment: String, offset: Int) throws -> [String] {
        try Log.sideFiles(in: directory).filter { $0.hasPrefix("dropped-\(segment)-\(offset)-") }
    }

    /// Checks that the side files of `directory` preserve exactly what recovery of `damaged`
    /// dropped: one copy of the cut segment's nonzero tail, each orphan segment whole, and
    /// (salvage) one export of every valid record past the cut.
    static func checkSideFiles(_ directory: String, _ damaged: Case, mode: RecoveryMode) throws {
        let original = damaged.files[damaged.cutSegment]!
        let tailCopies = try droppedFiles(directory, segment: damaged.cutSegment, offset: damaged.cutOffset)
        #expect(tailCopies.count == 1, "\(tailCopies)")
        if let copy = tailCopies.first {
            let bytes = try contents(directory + "/" + copy)
            let end = damaged.cutOffset + bytes.count
            #expect(bytes == original[damaged.cutOffset..<end], "the copy holds the dropped bytes")
            #expect(original[end...].allSatisfy { $0 == 0 }, "and every nonzero byte after the cut")
        }
        for orphan in damaged.orphans {
            #expect(!FileManager.default.fileExists(atPath: directory + "/" + orphan), "\(orphan) left the log")
            let moved = try droppedFiles(directory, segment: orphan, offset: 0)
            #expect(moved.count == 1, "\(orphan): \(moved)")
            if let moved = moved.first { #expect(try contents(directory + "/" + moved) == damaged.files[orphan]) }
        }
        let exports = try Log.sideFiles(in: directory).filter { $0.hasPrefix("salvaged-") }
        if mode == .salvage {
            #expect(exports.count == 1, "\(exports)")
            #expect(exports.first?.hasPrefix("salvaged-\(damaged.cutSegment)-\(damaged.cutOffset)-") == true)
            if let export = exports.first {
                #expect(try exported(directory + "/" + export) == damaged.pastCut,
                        "every valid record past the cut, byte-identical, with its LSN and place")
            }
        } else {
            #expect(exports.isEmpty)
        }
        for name in try Log.sideFiles(in: directory) {
            #expect(Format.segmentID(fromFileName: name) == nil && !name.hasSuffix(".seg.tmp"))
        }
    }

    @Test(arguments: RecoveryMode.allCases, Damage.allCases)
    func eachModeOnEachDamagedLog(mode: RecoveryMode, damage: Damage) throws {
        let damaged = try Self.make(damage)
        let work = TemporaryDirectory("mode")
        try restore(damaged.files, into: work.path)

        // A read-only open plans the same in every mode and changes nothing.
        let plan = try Log.openReadOnly(work.path).recoveryReport
        #expect(plan.outcome == damaged.outcome)
        #expect(plan.lastLSN == damaged.cutLSN - 1)
        #expect(plan.lostLSNs == damaged.lost)
        #expect(plan.salvageableLSNs == damaged.salvageable)
        #expect(plan.gaps == damaged.gaps)
        #expect(plan.removedSegments == damaged.orphans)
        #expect(plan.sideFiles.isEmpty && plan.salvageFile == nil)

        guard damaged.opens(in: mode) else {
            let error = expectLogError(.corruption) { _ = try Log.open(work.path, options: options(recovery: mode)) }
            #expect(error?.lsn == damaged.cutLSN)
            #expect(error?.offset == UInt64(damaged.cutOffset))
            var after = try snapshot(work.path)
            after["LOCK"] = damaged.files["LOCK"]
            #expect(after == damaged.files, "a refused open changes nothing and writes no side file")
            return
        }

        let log = try Log.open(work.path, options: options(recovery: mode))
        let report = log.recoveryReport
        #expect(report.applied && report.mode == mode)
        #expect(report.outcome == damaged.outcome)
        #expect(report.damage?.lsn == damaged.cutLSN)
        #expect(report.damage?.segment == damaged.cutSegment)
        #expect(report.damage?.offset == UInt64(damaged.cutOffset))
        #expect(report.lastLSN == damaged.cutLSN - 1)
        #expect(report.lostLSNs == damaged.lost)
        #expect(report.salvageableLSNs == damaged.salvageable)
        #expect(report.gaps == damaged.gaps)
        #expect((try log.records().collect()) == damaged.kept, "exactly the valid prefix, byte-identical")
        // The report names each side file and where its region starts in it.
        #expect(report.droppedRegions.count == 1 + damaged.orphans.count)
        for region in report.droppedRegions {
            let path = try #require(region.preservedAt, "\(region.segment) was dropped without a side file")
            let bytes = try Self.contents(path)
            let original = damaged.files[region.segment]!
            let start = Int(region.offset)
            #expect(bytes[Int(region.preservedFileOffset)...].prefix(Int(region.length))
                == original[start..<(start + Int(region.length))])
        }
        #expect(report.droppedRegions.first?.offset == UInt64(damaged.cutOffset))
        #expect(report.droppedRegions.first?.preservedFileOffset == 0)
        #expect(report.droppedRegions.dropFirst().map(\.segment) == damaged.orphans)
        #expect(report.droppedRegions.dropFirst().allSatisfy { $0.preservedFileOffset == 4096 })
        #expect((report.salvageFile != nil) == (mode == .salvage))
        #expect(report.sideFiles.allSatisfy { $0.hasPrefix(work.path + "/") })
        #expect(Set(report.sideFiles.map { String($0.dropFirst(work.path.count + 1)) }) == Set(try Log.sideFiles(in: work.path)),
                "the report names every side file in the directory")
        try Self.checkSideFiles(work.path, damaged, mode: mode)
        _ = consume log  // a crash right after recovery: no close marker

        // A second recovery finds a clean log and writes no second side file.
        let sideFiles = try Log.sideFiles(in: work.path)
        let again = try Log.open(work.path, options: options(recovery: mode))
        #expect(again.recoveryReport.outcome == .clean)
        #expect(again.recoveryReport.droppedRegions.isEmpty && again.recoveryReport.sideFiles.isEmpty)
        #expect((try again.records().collect()) == damaged.kept)
        #expect(try Log.sideFiles(in: work.path) == sideFiles)
        // Appends continue at the cut's LSN.
        #expect(try again.appendAndCommit(Array("after recovery".utf8)) == damaged.cutLSN)
        try again.close()
        // Every mode and every reader opens the directory with its side files.
        for other in RecoveryMode.allCases {
            let reopened = try Log.open(work.path, options: options(recovery: other))
            #expect(reopened.recoveryReport.outcome == .clean, "\(other)")
            #expect(reopened.writtenLSN == damaged.cutLSN, "\(other)")
            try reopened.close()
        }
        let reader = try Log.openReadOnly(work.path)
        #expect(reader.recoveryReport.outcome == .clean)
        #expect(reader.recoveryReport.salvageableLSNs.isEmpty && reader.recoveryReport.gaps.isEmpty)
        #expect((try reader.records().collect()).map(\.payload) == damaged.kept.map(\.payload) + [Array("after recovery".utf8)])
        try reader.close()
        #expect(try Log.sideFiles(in: work.path) == sideFiles)
        try Self.checkSideFiles(work.path, damaged, mode: mode)
    }

    /// A crash at any step of recovery (modelled as a process crash: the files as they are at
    /// that step), then recovery again, keeps the same records and leaves exactly one side file
    /// per dropped region and one export.
    @Test(arguments: [(RecoveryMode.salvage, Damage.durableRecordBeforeTwoSegments),
                      (.pointInTime, .durableRecordBeforeTwoSegments), (.tornTail, .orphanAfterTornRoll),
                      (.salvage, .tornTail)])
    func recoveryInterruptedAtEveryStepIsIdempotent(mode: RecoveryMode, damage: Damage) throws {
        let damaged = try Self.make(damage)
        let work = TemporaryDirectory("interrupted")
        try restore(damaged.files, into: work.path)
        let states = Mutex<[(String, [String: Data])]>([])
        let path = work.path
        FaultInjection.observe(under: path) { event in
            guard case .crashPoint(let name, _) = event, name.hasPrefix("recovery:") else { return }
            if let files = try? snapshot(path) { states.withLock { $0.append((name, files)) } }
        }
        let log: Log
        do {
            defer { FaultInjection.stopObserving(under: path) }
            log = try Log.open(work.path, options: options(recovery: mode))
        }
        let expected = (try log.records().collect())
        #expect(expected == damaged.kept)
        try log.close()
        let captured = states.withLock { $0 }
        #expect(captured.count >= 4 + damaged.orphans.count, "\(captured.map(\.0))")
        for (step, files) in captured {
            let again = TemporaryDirectory("again")
            try restore(files, into: again.path)
            let rerun = try Log.open(again.path, options: options(recovery: mode))
            #expect((try rerun.records().collect()) == expected, "crash at \(step)")
            for path in rerun.recoveryReport.sideFiles {
                #expect(FileManager.default.fileExists(atPath: path), "crash at \(step): \(path)")
            }
            try rerun.close()
            try Self.checkSideFiles(again.path, damaged, mode: mode)
        }
    }

    /// The order of the syncs, as the power-loss simulator sees them: every side file is
    /// fsync'd, and the directory after it, before the first byte is zeroed; each orphan is
    /// fsync'd before it is renamed, and the directory after the renames, before recovery ends.
    @Test func sideFilesAreDurableBeforeAnythingIsDropped() throws {
        let damaged = try Self.make(.durableRecordBeforeTwoSegments)
        let work = TemporaryDirectory("order")
        // Sync events carry canonical paths (from /proc/self/fd), so the log is opened by one.
        let path = URL(fileURLWithPath: work.path).resolvingSymlinksInPath().path
        try restore(damaged.files, into: path)
        enum Step: Equatable {
            case fileSynced(String)
            case directorySynced
            case crashPoint(String)
        }
        let steps = Mutex<[Step]>([])
        FaultInjection.observe(under: path) { event in
            let step: Step?
            switch event {
            case .fileSynced(let file): step = .fileSynced(String(file.dropFirst(path.count + 1)))
            case .directorySynced(let directory): step = directory == path ? .directorySynced : nil
            case .crashPoint(let name, _): step = .crashPoint(name)
            case .pagesSynced, .syncFailed, .written: step = nil
            }
            if let step { steps.withLock { $0.append(step) } }
        }
        let log: Log
        do {
            defer { FaultInjection.stopObserving(under: path) }
            log = try Log.open(path, options: options(recovery: .salvage))
        }
        let report = log.recoveryReport
        try log.close()
        let seen = steps.withLock { $0 }
        func index(_ step: Step) -> Int {
            guard let index = seen.firstIndex(of: step) else {
                Issue.record("\(step) never happened: \(seen)")
                return -1
            }
            return index
        }
        let export = String(try #require(report.salvageFile).dropFirst(path.count + 1))
        let copy = String(try #require(report.droppedRegions[0].preservedAt).dropFirst(path.count + 1))
        let zeroed = index(.crashPoint("recovery: torn tail zeroed, not synced"))
        let exportSynced = index(.fileSynced(export + ".partial"))
        let copySynced = index(.fileSynced(copy + ".partial"))
        let directorySynced = try #require(seen[copySynced...].firstIndex(of: .directorySynced))
        #expect(exportSynced < copySynced && copySynced < directorySynced && directorySynced < zeroed, "\(seen)")
        var lastMove = zeroed
        for orphan in damaged.orphans {
            let synced = index(.fileSynced(orphan))
            let moved = index(.crashPoint("recovery: moved \(orphan) to a side file"))
            #expect(lastMove < synced && synced < moved, "\(seen)")
            lastMove = moved
        }
        #expect(seen[lastMove...].contains(.directorySynced), "the renames are made durable")
    }

    @Test(.enabled(if: canMountTmpfs, "needs root and mount(8) to make a real full filesystem"))
    func noRoomForTheSideFileRefusesToDropAnything() throws {
        let directory = TemporaryDirectory()
        #expect(run("/bin/mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", directory.path]) == 0)
        defer { run("/bin/umount", [directory.path]) }
        let logPath = directory.child("log")
        // Records that were never committed fill most of the segment: a torn tail of ~900 KiB.
        do {
            let log = try Log.open(logPath, options: options())
            try log.appendAndCommit(Array("kept".utf8))
            while log.segments[0].bytesUsed < 900 << 10 { try log.append([UInt8](repeating: 7, count: 4000)) }
            _ = consume log
        }
        let segment = segmentPath(logPath)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: segment))
        let second = try readAll(logPath)[1]
        bytes[second.offset + 17] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: segment))
        // Fill the filesystem.
        let filler = directory.child("filler")
        #expect(FileManager.default.createFile(atPath: filler, contents: nil))
        let handle = try #require(FileHandle(forWritingAtPath: filler))
        while (try? handle.write(contentsOf: Data(count: 64 << 10))) != nil {}
        try handle.close()
        let before = try snapshot(logPath)
        let error = expectLogError(.noSpace) { _ = try Log.open(logPath, options: options()) }
        #expect(error?.message.contains("side file") == true)
        var after = try snapshot(logPath)
        after["LOCK"] = before["LOCK"]
        #expect(after == before, "nothing dropped, no partial side file left")
        try FileManager.default.removeItem(atPath: filler)
        let log = try Log.open(logPath, options: options())
        #expect(log.writtenLSN == 1)
        #expect(log.recoveryReport.droppedRegions.first?.preservedAt != nil)
        try log.close()
    }
}
