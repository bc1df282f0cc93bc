import Foundation
import LogStore
import Testing

/// `tail -f` and `dump --follow` follow a log another process writes: every record once it is
/// durable, exactly once, in order, across segment rolls and a writer restart, until SIGINT.
@Suite struct FollowTests {
    /// A running `logctl` whose stdout is collected as it arrives, by a thread that reads the
    /// pipe to its end, so nothing the process printed before it exited can be missed.
    final class Follower: @unchecked Sendable {
        let process = Process()
        private let output = Pipe()
        private let lock = NSLock()
        private var collected = Data()
        private let drained = DispatchSemaphore(value: 0)

        init(_ arguments: [String]) throws {
            process.executableURL = URL(fileURLWithPath: logctlPath)
            process.arguments = arguments
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            // Our copy of the write end must go, or the reader never sees end-of-file.
            try? output.fileHandleForWriting.close()
            let reader = output.fileHandleForReading
            Thread.detachNewThread { [self] in
                while true {
                    let chunk = reader.availableData
                    if chunk.isEmpty { break }
                    lock.lock()
                    collected.append(chunk)
                    lock.unlock()
                }
                drained.signal()
            }
        }

        /// Complete lines only: a line still being written is not counted until its newline.
        var lines: [Substring] {
            lock.lock()
            defer { lock.unlock() }
            let text = String(decoding: collected, as: UTF8.self)
            guard let lastNewline = text.lastIndex(of: "\n") else { return [] }
            return text[..<lastNewline].split(separator: "\n")
        }

        /// Waits (up to a minute, for a loaded machine) until `count` lines arrived.
        func waitFor(lines count: Int) -> Bool {
            let deadline = Date().addingTimeInterval(60)
            while lines.count < count, Date() < deadline { usleep(10_000) }
            return lines.count >= count
        }

        /// Waits for the process to exit and for everything it printed to be collected.
        func waitUntilExit() -> Int32 {
            process.waitUntilExit()
            drained.wait()
            return process.terminationStatus
        }

        func interrupt() -> Int32 {
            process.interrupt()
            return waitUntilExit()
        }
    }

    /// Payloads of ~20 KiB: 150 of them fill three 1 MiB segments.
    static func payload(_ n: Int) -> String { "record \(n) " + String(repeating: "x", count: 20_000) }

    @Test func tailFollowPrintsEveryDurableRecordOnceAcrossSegmentRollsAndWriterRestarts() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, (1...5).map(Self.payload))
        let follower = try Follower(["tail", directory, "-n", "2", "-f"])
        #expect(follower.waitFor(lines: 2))

        var writer = try LiveWriter(directory)
        writer.write((6...80).map(Self.payload), through: 80)
        #expect(follower.waitFor(lines: 77))
        #expect(writer.finish() == 0)
        // A new writer (recovery, then appends) while the follower keeps going.
        writer = try LiveWriter(directory)
        writer.write((81...160).map(Self.payload), through: 160)
        #expect(follower.waitFor(lines: 157))
        #expect(writer.finish() == 0)
        #expect(try Log.openReadOnly(directory).segments.count >= 3, "the workload must roll segments")

        #expect(follower.interrupt() == 0)
        let lines = follower.lines
        #expect(lines.map { $0.split(separator: "\t")[0] } == (4...160).map { Substring("\($0)") })
        for line in lines {
            let fields = line.split(separator: "\t")
            #expect(fields.count == 5)
            #expect(fields[4] == Substring(Self.payload(Int(fields[0])!)))
        }
    }

    @Test func dumpFollowStopsAtToAndPrintsTheHeaderFieldsOfFollowedRecords() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, (1...3).map(Self.payload))
        let follower = try Follower(["dump", directory, "--from", "2", "--to", "60", "--follow", "--json"])
        let writer = try LiveWriter(directory)
        writer.write((4...70).map(Self.payload), through: 70)
        #expect(writer.finish() == 0)
        #expect(follower.waitFor(lines: 59))
        #expect(follower.waitUntilExit() == 0)
        let objects = try follower.lines.map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
        #expect(objects.map { $0["lsn"] as! Int } == Array(2...60))
        let log = try Log.openReadOnly(directory)
        for object in objects {
            let details = try log.recordDetails(LSN(object["lsn"] as! Int))
            #expect(object["crc"] as? Int == Int(details.crc))
            #expect(object["offset"] as? Int == details.offset)
            #expect(object["segment"] as? String == details.segment)
            #expect(object["durable_lsn"] as? Int == Int(details.durableLSN))
        }
    }
}
