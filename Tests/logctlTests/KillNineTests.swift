import Foundation
import LogStore
import Testing

/// The real thing: `logctl append` as a child process, SIGKILLed at random moments.
@Suite struct KillNineTests {
    /// Line `index` of cycle `cycle`: unique, of varying length (up to 8 KB, so 1 MiB
    /// segments roll), printable (the CLI reads lines).
    static func line(cycle: Int, index: Int, random: inout SplitMix64) -> [UInt8] {
        let length = Int(random.next() % 8000)
        return Array("c\(cycle)-i\(index)-".utf8) + (0..<length).map { _ in UInt8(ascii: "A") + UInt8(random.next() % 26) }
    }

    @Test(arguments: ["msync", "fdatasync"])
    func everyPrintedLSNSurvivesKillNine(sync: String) throws {
        let seed = UInt64.random(in: 1...1_000_000)
        var random = SplitMix64(seed: seed)
        let scratch = Scratch()
        let directory = scratch.child("log")
        // What each LSN must hold: set for every line the harness can place with certainty.
        var expected: [LSN: [UInt8]] = [:]
        var acknowledgedTotal = 0
        let cycles = 20
        for cycle in 0..<cycles {
            let batch = [1, 1, 3, 8][Int(random.next() % 4)]
            let child = try Child(arguments: [
                "append", directory, "--create", "--segment-size", "1MiB", "--sync", sync, "--batch", "\(batch)",
            ])
            var sent: [[UInt8]] = []
            let deadline = Date().addingTimeInterval(Double(random.next() % 300) / 1000 + 0.05)
            while Date() < deadline || child.acknowledged.count < 5 {
                let line = Self.line(cycle: cycle, index: sent.count, random: &random)
                guard child.send(line) else { break }
                sent.append(line)
                if sent.count > 20_000 { break }
            }
            child.kill()
            let acknowledged = child.acknowledged
            acknowledgedTotal += acknowledged.count
            // The k-th printed LSN belongs to the k-th line sent in this cycle.
            let first = try #require(acknowledged.first, "seed \(seed): cycle \(cycle) acknowledged nothing")
            for (k, lsn) in acknowledged.enumerated() {
                #expect(lsn == first + LSN(k), "seed \(seed): printed LSNs are consecutive")
                expected[lsn] = sent[k]
            }
            // Verify with a read-only open (the next writer will recover).
            let log = try Log.openReadOnly(directory)
            #expect(log.firstLSN == 1)
            #expect(log.recoveryReport.outcome != .corruption, "seed \(seed): \(log.recoveryReport)")
            for (lsn, bytes) in expected where lsn <= acknowledged.last! {
                #expect(try log.read(lsn) == bytes, "seed \(seed): LSN \(lsn) lost or changed")
            }
            // Records past the last acknowledged one are this cycle's next lines, in order.
            if log.writtenLSN > acknowledged.last! {
                for lsn in (acknowledged.last! + 1)...log.writtenLSN {
                    let k = Int(lsn - first)
                    let stored = try log.read(lsn)
                    #expect(k < sent.count && stored == sent[k], "seed \(seed): LSN \(lsn) was never sent")
                }
            }
            // Whatever survives beyond the acknowledged prefix now belongs to the log for good.
            for lsn in first...max(first, log.writtenLSN) where lsn <= log.writtenLSN { expected[lsn] = try log.read(lsn) }
            try log.close()
        }
        // Appends continue after recovery, and the whole history is contiguous from 1.
        let final = try logctl(["append", directory, "--sync", sync], input: "the end\n")
        #expect(final.status == 0, "\(final.stderr)")
        let log = try Log.openReadOnly(directory)
        #expect(log.recoveryReport.outcome == .clean)
        let records = Array(log.records())
        #expect(records.map(\.lsn) == Array(1...LSN(records.count)))
        #expect(records.last?.payload == Array("the end".utf8))
        #expect(final.stdout == "\(records.count)\n")
        for (lsn, bytes) in expected { #expect(records[Int(lsn) - 1].payload == bytes, "seed \(seed)") }
        #expect(log.segments.count >= 2, "the run rolls segments")
        print("kill -9 (\(sync)): \(cycles) cycles, \(acknowledgedTotal) acknowledged records, 0 lost (seed \(seed))")
    }
}

/// A `logctl append` child with a pipe for lines and a thread collecting printed LSNs.
final class Child: @unchecked Sendable {
    let process = Process()
    let input: FileHandle
    private let printed = Printed()
    private let reader: Thread

    init(arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: logctlPath)
        process.arguments = arguments
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
        input = stdin.fileHandleForWriting
        let output = stdout.fileHandleForReading
        let printed = self.printed
        reader = Thread {
            var pending = Data()
            while true {
                let chunk = output.availableData
                if chunk.isEmpty { break }
                pending.append(chunk)
                while let newline = pending.firstIndex(of: 10) {
                    let text = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                    pending.removeSubrange(pending.startIndex...newline)
                    if let lsn = LSN(text) { printed.lock.withLock { printed.lsns.append(lsn) } }
                }
            }
        }
        reader.start()
    }

    var acknowledged: [LSN] { printed.lock.withLock { printed.lsns } }

    func send(_ line: [UInt8]) -> Bool {
        (try? input.write(contentsOf: Data(line + [10]))) != nil
    }

    func kill() {
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        while !reader.isFinished { usleep(1000) }
    }
}

private final class Printed: @unchecked Sendable {
    let lock = NSLock()
    var lsns: [LSN] = []
}
