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
        let records = Array(reopened.records())
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
}
