import Foundation
@testable import LogStore
import Testing

/// Recovery: what survives a cut, a torn tail, or damage to durable data.
@Suite struct LogScannerTests {
    /// A log whose records are each committed separately (so every record but the last is
    /// covered by a later record's durable-LSN claim), abandoned without a close marker.
    static func committedLog(_ directory: String, count: Int, maxLength: Int = 300, close: Bool = false) throws
        -> [Log.Record]
    {
        let log = try Log.open(directory, options: options())
        for index in 0..<count { try log.appendAndCommit(payload(index, maxLength: maxLength)) }
        if close { try log.close() }
        return try readAll(directory)
    }

    /// A segment file is created at full size and never shrinks, so a short one was damaged from
    /// outside and whatever it lost may have been durable: every reader sees exactly the complete
    /// records before the cut, the default writer refuses with the offset, and point-in-time
    /// recovery keeps exactly those records, regrows the file and carries on.
    @Test func truncationAtEveryByteKeepsExactlyTheCompleteRecordsBeforeTheCut() throws {
        let source = TemporaryDirectory()
        let records = try Self.committedLog(source.path, count: 40)
        let original = try snapshot(source.path)
        let segmentName = Format.segmentFileName(id: 1)
        let segmentBytes = original[segmentName]!
        let firstCut = records[36].offset
        let lastEnd = records[39].offset + 32 + records[39].payload.count + 8
        for cut in firstCut...lastEnd {
            let work = TemporaryDirectory("cut")
            var files = original
            files[segmentName] = segmentBytes.prefix(cut)
            try restore(files, into: work.path)
            let complete = records.filter { $0.offset + 32 + $0.payload.count <= cut }
            // Read-only: shows exactly the complete records, reports the truncation, changes nothing.
            let reader = try Log.openReadOnly(work.path)
            #expect(reader.writtenLSN == LSN(complete.count), "cut at \(cut)")
            #expect((try reader.records().collect()) == complete, "cut at \(cut)")
            #expect(reader.recoveryReport.outcome == .corruption, "cut at \(cut)")
            #expect(reader.recoveryReport.damage?.reason.contains("truncated") == true)
            try reader.close()
            #expect(try snapshot(work.path) == files)
            // Writers (on a sample of cuts: they fsync).
            guard cut % 5 == 0 || cut == lastEnd else { continue }
            let refused = expectLogError(.corruption) { _ = try Log.open(work.path, options: options()) }
            #expect(refused?.offset == UInt64(complete.last.map { $0.offset + Format.recordFootprint(payloadLength: $0.payload.count) } ?? 4096))
            let writer = try Log.open(work.path, options: options(recovery: .pointInTime))
            #expect((try writer.records().collect()) == complete, "cut at \(cut)")
            let next = try writer.appendAndCommit(Array("after cut".utf8))
            #expect(next == LSN(complete.count + 1))
            try writer.close()
            let attributes = try FileManager.default.attributesOfItem(atPath: segmentPath(work.path))
            #expect(attributes[.size] as? Int == 1 << 20, "a truncated segment is regrown")
            #expect(try readAll(work.path).map(\.payload) == complete.map(\.payload) + [Array("after cut".utf8)])
            #expect(try Log.openReadOnly(work.path).recoveryReport.outcome == .clean)
        }
    }

    @Test func strayBytesAfterTheEndOfASealedSegmentLoseNothing() throws {
        let source = TemporaryDirectory()
        let log = try Log.open(source.path, options: options())
        var index = 0
        while log.segments.count < 2 { try log.appendAndCommit(payload(index, maxLength: 3000)); index += 1 }
        let first = log.segments[0]
        try log.close()
        var files = try snapshot(source.path)
        files[first.name]![first.bytesUsed + 3] = 0x77
        let work = TemporaryDirectory("stray")
        try restore(files, into: work.path)
        let reopened = try Log.open(work.path, options: options())
        #expect(reopened.recoveryReport.outcome == .clean)
        #expect(reopened.writtenLSN == LSN(index))
        try reopened.close()
    }

    @Test func recoveryRewritesAndSyncsOnlyRecordsNothingProvesDurable() throws {
        let source = TemporaryDirectory()
        let log = try Log.open(source.path, options: options())
        for index in 0..<20 { try log.append(payload(index)) }
        try log.commit()
        for index in 20..<30 { try log.appendAndCommit(payload(index)) }
        for index in 30..<40 { try log.append(payload(index)) }
        let records = (try log.records().collect())
        let end = log.segments[0].bytesUsed
        _ = consume log
        // The uncommitted records 31...40 claim 30 durable; nothing vouches for them.
        FaultInjection.observeSyncs(directory: source.path)
        defer { FaultInjection.disarm(directory: source.path) }
        let reopened = try Log.open(source.path, options: options())
        let rewrites = FaultInjection.recordedSyncs(directory: source.path)
        #expect(rewrites.map(\.bytes) == [records[30].offset..<end])
        #expect(reopened.durableLSN == 40)
        try reopened.close()
        // After a clean close the close marker proves everything: nothing is rewritten.
        FaultInjection.observeSyncs(directory: source.path)
        try Log.open(source.path, options: options()).close()
        #expect(FaultInjection.recordedSyncs(directory: source.path).filter { $0.bytes.lowerBound < end }.isEmpty)
    }

    /// Builds a log with `committed` durable records and `uncommitted` more after them that
    /// were only written to the mapping, and returns its files and the records.
    static func logWithUncommittedTail(committed: Int, uncommitted: Int) throws
        -> (files: [String: Data], records: [Log.Record], committedEnd: Int, writtenEnd: Int)
    {
        let source = TemporaryDirectory()
        let log = try Log.open(source.path, options: options())
        for index in 0..<committed { try log.append(payload(index)) }
        try log.commit()
        for index in committed..<(committed + uncommitted) { try log.append(payload(index)) }
        let records = (try log.records().collect())
        let segment = log.segments[0]
        let committedEnd = records[committed].offset
        return (try snapshot(source.path), records, committedEnd, segment.bytesUsed)
    }

    /// The uncommitted tail's sectors may each reach disk or not, or be garbage: every case
    /// keeps every committed record and at most a contiguous, byte-identical prefix of the rest.
    @Test(arguments: ["zero", "garbage"])
    func damagedSectorInUncommittedTailIsDroppedQuietly(kind: String) throws {
        let (files, records, committedEnd, writtenEnd) = try Self.logWithUncommittedTail(committed: 30, uncommitted: 60)
        let segmentName = Format.segmentFileName(id: 1)
        var generator = SplitMix64(seed: 2024)
        var sector = alignDown(committedEnd, to: 512)
        var sawDrop = false
        while sector < writtenEnd {
            let work = TemporaryDirectory("sector")
            var segment = files[segmentName]!
            // Bytes of the sector before committedEnd are acknowledged: a sector is old or new,
            // and both versions hold the same acknowledged bytes.
            for offset in max(sector, committedEnd)..<(sector + 512) {
                segment[offset] = kind == "zero" ? 0 : UInt8.random(in: 0...255, using: &generator)
            }
            var damaged = files
            damaged[segmentName] = segment
            try restore(damaged, into: work.path)
            let log = try Log.open(work.path, options: options())
            let report = log.recoveryReport
            let kept = (try log.records().collect())
            #expect(kept.count >= 30, "sector \(sector): committed records lost")
            #expect(kept == Array(records.prefix(kept.count)), "sector \(sector): kept records differ")
            if kept.count < records.count {
                sawDrop = true
                #expect(report.outcome == .tornTail, "sector \(sector)")
                #expect(report.damage != nil)
            }
            // Appends continue, and stale records past the cut never come back.
            let marker = Array("new \(sector)".utf8)
            let lsn = try log.appendAndCommit(marker)
            #expect(lsn == LSN(kept.count + 1))
            log.close(ignoringErrors: ())
            let reopened = try Log.open(work.path, options: options())
            #expect(reopened.recoveryReport.outcome == .clean, "sector \(sector)")
            #expect((try reopened.records().collect()).map(\.payload) == kept.map(\.payload) + [marker])
            try reopened.close()
            sector += 512
        }
        #expect(sawDrop)
    }

    @Test func staleRecordsPastTheCutNeverValidateAgain() throws {
        // A dropped page in the middle of an unacknowledged tail leaves valid-looking records
        // after it. After recovery appends the same number of same-sized records, a crash must
        // not resurrect the old ones.
        let (files, records, committedEnd, _) = try Self.logWithUncommittedTail(committed: 5, uncommitted: 100)
        let work = TemporaryDirectory("stale")
        var damaged = files
        let segmentName = Format.segmentFileName(id: 1)
        let hole = alignUp(committedEnd, to: 4096)
        damaged[segmentName]!.replaceSubrange(hole..<(hole + 4096), with: [UInt8](repeating: 0, count: 4096))
        try restore(damaged, into: work.path)
        let log = try Log.open(work.path, options: options())
        let kept = (try log.records().collect())
        #expect(log.recoveryReport.outcome == .tornTail)
        #expect(kept.count < records.count)
        // Re-append the very same payloads the lost records had, so the new records land at the
        // old offsets with the old LSNs, through the first record past the hole; commit all but
        // that last one. Right after it sits the old, still-valid record with the next LSN.
        let firstPastHole = try #require(records.firstIndex { $0.offset >= hole + 4096 })
        for record in records[kept.count..<firstPastHole] { try log.append(record.payload) }
        try log.commit()
        try log.append(records[firstPastHole].payload)
        let written = log.writtenLSN
        #expect(written == LSN(firstPastHole + 1))
        _ = consume log  // a crash: no close marker
        let reopened = try Log.open(work.path, options: options())
        #expect(reopened.writtenLSN == written, "nothing beyond what was appended since recovery")
        try reopened.close()
    }

    @Test func flippedByteInCommittedRecordFollowedByLaterCommitsIsCorruption() throws {
        let source = TemporaryDirectory()
        let records = try Self.committedLog(source.path, count: 25)
        let original = try snapshot(source.path)
        let segmentName = Format.segmentFileName(id: 1)
        var generator = SplitMix64(seed: 99)
        // Every record but the last is followed by a record claiming it durable.
        for record in records.dropLast() {
            let covered = 32 + record.payload.count
            for position in Set([0, 4, 8, 16, 24, 31, covered - 1, Int.random(in: 0..<covered, using: &generator)]) {
                let work = TemporaryDirectory("flip")
                var damaged = original
                damaged[segmentName]![record.offset + position] ^= 1 << UInt8.random(in: 0..<8, using: &generator)
                try restore(damaged, into: work.path)
                let before = try snapshot(work.path)
                let error = expectLogError(.corruption) { _ = try Log.open(work.path, options: options()) }
                #expect(error?.offset == UInt64(record.offset), "LSN \(record.lsn) byte \(position)")
                #expect(error?.lsn == record.lsn)
                #expect(error?.path == segmentPath(work.path))
                var after = try snapshot(work.path)
                after["LOCK"] = before["LOCK"]
                #expect(after == before, "a refused open changes no log file")
                // Read-only shows the prefix and the same verdict.
                let reader = try Log.openReadOnly(work.path)
                #expect(reader.recoveryReport.outcome == .corruption)
                #expect(reader.recoveryReport.damage?.offset == UInt64(record.offset))
                #expect(reader.writtenLSN == record.lsn - 1)
            }
        }
    }

    @Test func closeMarkerMakesEvenTheLastRecordProvablyDurable() throws {
        let source = TemporaryDirectory()
        let records = try Self.committedLog(source.path, count: 5, close: true)
        let last = records[4]
        var files = try snapshot(source.path)
        files[Format.segmentFileName(id: 1)]![last.offset + 40] ^= 0x10
        let work = TemporaryDirectory("marker")
        try restore(files, into: work.path)
        let error = expectLogError(.corruption) { _ = try Log.open(work.path, options: options()) }
        #expect(error?.lsn == 5)
    }

    /// A close marker has no payload (FORMAT.md §3.4): one with a length, even with a
    /// matching checksum, is invalid, and recovery and `verify` both say so at its offset.
    @Test func closeMarkerWithALengthIsInvalidToRecoveryAndVerify() throws {
        let source = TemporaryDirectory()
        let records = try Self.committedLog(source.path, count: 5, close: true)
        let marker = records[4].offset + Format.recordFootprint(payloadLength: records[4].payload.count)
        var files = try snapshot(source.path)
        let name = Format.segmentFileName(id: 1)
        files[name]!.withUnsafeMutableBytes { raw in
            #expect(RecordHeader.load(from: raw.baseAddress! + marker).type == Format.recordTypeCloseMarker)
            raw.storeBytes(of: UInt32(8).littleEndian, toByteOffset: marker + 4, as: UInt32.self)
            let salt = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 56, as: UInt64.self))
            let crc = RecordHeader.checksum(
                recordAt: raw.baseAddress! + marker, payloadLength: 8, saltCRC: RecordHeader.saltCRC(salt))
            raw.storeBytes(of: crc.littleEndian, toByteOffset: marker, as: UInt32.self)
        }
        let work = TemporaryDirectory("marker-length")
        try restore(files, into: work.path)
        let reader = try Log.openReadOnly(work.path)
        #expect(reader.writtenLSN == 5)
        #expect(reader.recoveryReport.outcome != .clean)
        #expect(reader.recoveryReport.damage?.offset == UInt64(marker))
        #expect(reader.recoveryReport.damage?.reason.contains("close marker with length 8") == true)
        try reader.close()
        let problems = try Log.verify(work.path).problems
        #expect(problems.map(\.offset) == [UInt64(marker)])
        #expect(problems.first?.reason.contains("close marker with length 8") == true)
    }

    @Test func pointInTimeRecoveryKeepsThePrefixAndReportsLostLSNs() throws {
        let source = TemporaryDirectory()
        let records = try Self.committedLog(source.path, count: 20, close: true)
        var files = try snapshot(source.path)
        files[Format.segmentFileName(id: 1)]![records[9].offset + 33] ^= 0xFF
        let work = TemporaryDirectory("pit")
        try restore(files, into: work.path)
        let log = try Log.open(work.path, options: options(recovery: .pointInTime))
        let report = log.recoveryReport
        #expect(report.outcome == .corruption)
        #expect(report.lostLSNs == 10...20)
        #expect(report.lastLSN == 9)
        #expect((try log.records().collect()) == Array(records.prefix(9)))
        #expect(try log.appendAndCommit([1]) == 10)
        try log.close()
        #expect(try Log.openReadOnly(work.path).recoveryReport.outcome == .clean)
    }

    @Test func strictRecoveryRefusesEvenATornTail() throws {
        let (files, _, _, writtenEnd) = try Self.logWithUncommittedTail(committed: 3, uncommitted: 20)
        let work = TemporaryDirectory("strict")
        var damaged = files
        damaged[Format.segmentFileName(id: 1)]![writtenEnd - 10] ^= 0xFF
        try restore(damaged, into: work.path)
        let before = try snapshot(work.path)
        expectLogError(.corruption) { _ = try Log.open(work.path, options: options(recovery: .strict)) }
        var after = try snapshot(work.path)
        after["LOCK"] = before["LOCK"]
        #expect(after == before)
        #expect(try Log.open(work.path, options: options()).recoveryReport.outcome == .tornTail)
    }

    @Test func unacknowledgedSegmentAfterATornRollIsRemoved() throws {
        // Records fill segment 1 without a commit, roll into segment 2, then the crash tears a
        // page of segment 1's unacknowledged tail: segment 2 holds nothing acknowledged.
        // The crash state in which segment 2 exists while segment 1's tail may not have
        // reached disk.
        let source = TemporaryDirectory()
        let records = try logWithAnUnacknowledgedRoll(source.path)
        var index = records.count
        let files = try snapshot(source.path)
        #expect(files[Format.segmentFileName(id: 2)] != nil)
        let work = TemporaryDirectory("roll")
        var damaged = files
        let tornOffset = records[500].offset
        damaged[Format.segmentFileName(id: 1)]![tornOffset + 2] ^= 0xFF
        try restore(damaged, into: work.path)
        let reader = try Log.openReadOnly(work.path)
        #expect(reader.recoveryReport.removedSegments == [Format.segmentFileName(id: 2)])
        #expect(FileManager.default.fileExists(atPath: segmentPath(work.path, id: 2)), "read-only removes nothing")
        let writer = try Log.open(work.path, options: options())
        #expect(writer.recoveryReport.outcome == .tornTail)
        #expect(writer.writtenLSN == 500)
        #expect(!FileManager.default.fileExists(atPath: segmentPath(work.path, id: 2)))
        // The next roll creates segment 2 afresh (a new salt: nothing of the old one validates).
        while writer.segments.count < 2 { try writer.append(payload(index, maxLength: 1000)); index += 1 }
        try writer.close()
        #expect(try Log.openReadOnly(work.path).recoveryReport.outcome == .clean)
    }

    @Test func lostRecordInSealedSegmentWithLaterCommitsIsCorruption() throws {
        let source = TemporaryDirectory()
        let log = try Log.open(source.path, options: options())
        var index = 0
        while log.segments.count < 3 {
            try log.appendAndCommit(payload(index, maxLength: 2000))
            index += 1
        }
        let records = (try log.records().collect())
        // Dropped without close (a crash): after a clean close the open would not read the
        // sealed segment, and the damage is reported by the first read of it instead
        // (DeferredSegmentIndexTests).
        _ = consume log
        let victim = records[records.count / 4]
        var files = try snapshot(source.path)
        files[victim.segment]!.replaceSubrange(victim.offset..<(victim.offset + 32), with: [UInt8](repeating: 0, count: 32))
        let work = TemporaryDirectory("sealed")
        try restore(files, into: work.path)
        let error = expectLogError(.corruption) { _ = try Log.open(work.path, options: options()) }
        #expect(error?.offset == UInt64(victim.offset))
        #expect(error?.lsn == victim.lsn)
        #expect(error?.path == work.path + "/" + victim.segment)
    }

    @Test func recoveryIsIdempotentWhenInterruptedMidway() throws {
        // Simulates a crash in the middle of applying recovery: orphan segments are gone but
        // the torn bytes were not yet zeroed. Recovering again gives the same result.
        let source = TemporaryDirectory()
        let log = try Log.open(source.path, options: options())
        for index in 0..<10 { try log.appendAndCommit(payload(index, maxLength: 1000)) }
        var index = 10
        while log.segments.count < 2 { try log.append(payload(index, maxLength: 1000)); index += 1 }
        let records = (try log.records().collect())
        let files = try snapshot(source.path)
        _ = consume log
        var damaged = files
        damaged[Format.segmentFileName(id: 1)]![records[20].offset + 1] ^= 0xFF
        let full = TemporaryDirectory("full")
        try restore(damaged, into: full.path)
        let expected = (try Log.open(full.path, options: options()).records().collect())
        damaged[Format.segmentFileName(id: 2)] = nil
        let partial = TemporaryDirectory("partial")
        try restore(damaged, into: partial.path)
        let again = try Log.open(partial.path, options: options())
        #expect((try again.records().collect()) == expected)
        #expect(expected.count == 20)

        // And a crash halfway through zeroing the torn bytes: the first half is zero, the rest
        // (stale records that validate but claim nothing durable) is still there.
        let cut = records[20].offset
        let segmentOne = Format.segmentFileName(id: 1)
        let tailEnd = records.filter { $0.segment == segmentOne }.last!.offset + 1032
        let middle = alignDown((cut + tailEnd) / 2, to: 8)
        damaged[segmentOne]!.replaceSubrange(cut..<middle, with: [UInt8](repeating: 0, count: middle - cut))
        let halfZeroed = TemporaryDirectory("half")
        try restore(damaged, into: halfZeroed.path)
        let third = try Log.open(halfZeroed.path, options: options())
        #expect(third.recoveryReport.outcome == .tornTail)
        #expect((try third.records().collect()) == expected)
    }
}

extension Log {
    /// Closes, for tests that only care that the file ends up closed.
    func close(ignoringErrors: Void) { try? close() }
}

@Suite struct SkipZerosTests {
    @Test func findsTheFirstNonzeroWordFromAnyStart() {
        let size = 4096
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 4096)
        defer { buffer.deallocate() }
        var generator = SplitMix64(seed: 3)
        for _ in 0..<500 {
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            let nonzero = Int.random(in: 0..<size, using: &generator)
            buffer[nonzero] = 1
            let start = Int.random(in: 0...(nonzero / 8), using: &generator) * 8
            let end = Int.random(in: (nonzero + 1)...size, using: &generator)
            let found = skipZeros(UnsafeRawPointer(buffer.baseAddress!), from: start, to: end)
            if alignDown(nonzero, to: 8) + 8 <= end {
                #expect(found == alignDown(nonzero, to: 8), "nonzero at \(nonzero), from \(start) to \(end)")
            } else {
                #expect(found + 8 > end, "a partial last word is left to the caller")
            }
        }
    }
}
