import Foundation
@testable import LogStore
import Testing

@Suite struct ZeroCopyReadTests {
    /// Records over several segments, with padding records between commits (sector alignment).
    static func writeLog(_ directory: String, count: Int = 1500) throws -> Log {
        var padded = options()
        padded.commitAlignment = .sector
        let log = try Log.open(directory, options: padded)
        for index in 0..<count {
            try log.append(payload(index, maxLength: 2000))
            if index % 7 == 0 { try log.commit() }
        }
        #expect(count < 1500 || log.segments.count >= 2)
        return log
    }

    @Test func payloadsInPlaceEqualTheCopiedOnes() throws {
        let directory = TemporaryDirectory()
        let log = try Self.writeLog(directory.path)
        for lsn in log.firstLSN...log.writtenLSN {
            let copied = try log.read(lsn)
            #expect(try log.withPayload(of: lsn) { span in
                span.withUnsafeBytes { Array($0) }
            } == copied)
            #expect(try log.withUnsafePayload(of: lsn) { Array($0) } == copied)
        }
        expectLogError(.lsnOutOfRange) { try log.withPayload(of: log.writtenLSN + 1) { _ in } }
        expectLogError(.lsnOutOfRange) { try log.withUnsafePayload(of: 0) { _ in } }
        try log.close()
        expectLogError(.closed) { try log.withPayload(of: 1) { _ in } }
    }

    @Test func forEachRecordVisitsEveryLSNOfTheRangeInOrderAcrossSegmentsAndPadding() throws {
        let directory = TemporaryDirectory()
        let written = try Self.writeLog(directory.path)
        let expected = (try written.records().collect())
        try written.close()
        // Reopened after a clean close: the sealed segments are indexed on first use.
        let log = try Log.open(directory.path, options: options())
        #expect(log.recoveryReport.deferredSegments > 0)
        let second = log.segments[1].baseLSN
        for range in [1...log.writtenLSN, second - 3...second + 3, second...second, 5...9, log.writtenLSN...log.writtenLSN] {
            var visited: [(LSN, [UInt8])] = []
            try log.forEachRecord(in: range, verifyingChecksums: true) { lsn, span in
                visited.append((lsn, span.withUnsafeBytes { Array($0) }))
            }
            #expect(visited.map(\.0) == Array(range))
            #expect(visited.map(\.1) == expected[Int(range.lowerBound - 1)..<Int(range.upperBound)].map(\.payload))
        }
        var lengths: [Int] = []
        try log.forEachUnsafeRecord(in: 1...log.writtenLSN) { _, payload in lengths.append(payload.count) }
        #expect(lengths == expected.map(\.payload.count))
        expectLogError(.lsnOutOfRange) { try log.forEachRecord(in: 1...log.writtenLSN + 1) { _, _ in } }
        expectLogError(.lsnOutOfRange) { try log.forEachRecord(in: 0...3) { _, _ in } }
        try log.close()
    }

    @Test func payloadStaysReadableInsideTheClosureWhileTheLogCloses() throws {
        let directory = TemporaryDirectory()
        let log = try Self.writeLog(directory.path, count: 100)
        let expected = try log.read(50)
        let seen = try log.withUnsafePayload(of: 50) { (payload) throws(LogError) -> [UInt8] in
            // Closing drops the log's segments (and, without the closure's hold, the mapping).
            try log.close()
            return Array(payload)
        }
        #expect(seen == expected)
    }

    @Test func checksumVerificationFindsDamageSinceOpenAndChangedLengthsNeverFault() throws {
        let directory = TemporaryDirectory()
        let log = try Self.writeLog(directory.path, count: 300)
        try log.commit()
        let victim = try log.record(200)
        let path = directory.child(victim.segment)
        // Written through the file: the shared mapping sees it at once.
        try DeferredSegmentIndexTests.flipByte(path, at: victim.offset + Format.recordHeaderSize)
        try log.forEachRecord(in: 1...log.writtenLSN) { _, _ in }  // not verifying: no error
        let error = expectLogError(.corruption) {
            try log.forEachRecord(in: 1...log.writtenLSN, verifyingChecksums: true) { _, _ in }
        }
        #expect(error?.lsn == 200 && error?.offset == UInt64(victim.offset))
        // A length far past the end of the file: an error, not a read past the mapping.
        let handle = try #require(FileHandle(forUpdatingAtPath: path))
        try handle.seek(toOffset: UInt64(victim.offset + 4))
        try handle.write(contentsOf: [0xFF, 0xFF, 0xFF, 0x7F])
        try handle.close()
        expectLogError(.corruption) { _ = try log.read(200) }
        expectLogError(.corruption) { try log.withPayload(of: 200) { _ in } }
        expectLogError(.corruption) { try log.forEachRecord(in: 199...201) { _, _ in } }
        try log.close()
    }
}
