import Foundation
import LogStore
import Testing

/// The real thing: `logctl append` as a child process, fed records and SIGKILLed at random
/// moments, in every durable sync mode, with 1 MiB segments so that the log rolls.
///
/// Environment: LOGSTORE_KILL9_SEED=S replays seed S (it is printed with every failure and in
/// the summary lines); LOGSTORE_CRASH_SCALE=K runs K times as many cycles (default 1).
@Suite struct KillNineTests {
    static let modes = ["msync", "uring", "fdatasync"]
    /// Per mode and per unit of LOGSTORE_CRASH_SCALE; 3 modes x 70 = 210 kills per run.
    static let cyclesPerMode = 70

    static var scale: Int {
        guard let text = ProcessInfo.processInfo.environment["LOGSTORE_CRASH_SCALE"] else { return 1 }
        guard let value = Int(text), value >= 1 else {
            Issue.record("LOGSTORE_CRASH_SCALE='\(text)' is not a positive integer; using 1")
            return 1
        }
        return value
    }

    static var seed: UInt64 {
        if let text = ProcessInfo.processInfo.environment["LOGSTORE_KILL9_SEED"] {
            guard let value = UInt64(text) else {
                Issue.record("LOGSTORE_KILL9_SEED='\(text)' is not an unsigned integer; using a random seed")
                return UInt64.random(in: 1...UInt64(UInt32.max))
            }
            return value
        }
        return UInt64.random(in: 1...UInt64(UInt32.max))
    }

    /// The modes run at once, each on a thread of its own (the cycles mostly wait for the
    /// disk and the children), so that the cooperative pool is not blocked meanwhile.
    @Test func everyAcknowledgedRecordSurvivesKillNineInEveryMode() async throws {
        signal(SIGPIPE, SIG_IGN)  // a child that died on its own must not take the test with it
        let seed = Self.seed
        let cycles = Self.cyclesPerMode * Self.scale
        let scratch = Scratch()
        let started = Date()
        let results = await withTaskGroup(of: KillNineRun.Result.self) { group in
            for mode in Self.modes {
                group.addTask {
                    await withCheckedContinuation { continuation in
                        Thread {
                            var run = KillNineRun(
                                mode: mode, seed: seed, directory: scratch.child(mode), cycles: cycles)
                            continuation.resume(returning: run.run())
                        }.start()
                    }
                }
            }
            var results: [KillNineRun.Result] = []
            for await result in group { results.append(result) }
            return results.sorted { Self.modes.firstIndex(of: $0.mode)! < Self.modes.firstIndex(of: $1.mode)! }
        }
        for result in results {
            print(result.summary)
            fflush(nil)
            for problem in result.problems.prefix(20) { Issue.record(Comment(rawValue: problem)) }
            if result.problems.count > 20 {
                Issue.record("seed \(seed), mode \(result.mode): \(result.problems.count - 20) more problems")
            }
            #expect(result.lost == 0, "seed \(seed), mode \(result.mode): \(result.lost) acknowledged records lost")
            guard result.problems.isEmpty else { continue }
            #expect(result.cycles == cycles, "seed \(seed), mode \(result.mode): stopped after \(result.cycles) cycles")
            #expect(result.acknowledged > 0, "seed \(seed), mode \(result.mode): nothing acknowledged")
            #expect(result.verified == result.acknowledged, "seed \(seed), mode \(result.mode)")
            #expect(result.segments >= 2, "seed \(seed), mode \(result.mode): the run rolls segments")
        }
        let total = results.reduce(0) { $0 + $1.cycles }
        let lost = results.reduce(0) { $0 + $1.lost }
        print(String(
            format: "kill-9 total: %d cycles across %d sync modes, acknowledged %d, lost %d, seed %llu, %.1f s",
            total, results.count, results.reduce(0) { $0 + $1.acknowledged }, lost, seed,
            Date().timeIntervalSince(started)))
        fflush(nil)
        #expect(total >= 200, "seed \(seed): at least 200 kill -9 cycles per run")
    }
}

/// One mode's run: cycles of spawn, feed, kill, verify against one growing log.
struct KillNineRun {
    struct Result {
        var mode: String
        var seed: UInt64
        var cycles = 0
        var acknowledged = 0
        var verified = 0
        var lost = 0
        var segments = 0
        var problems: [String] = []

        var summary: String {
            "kill-9 cycles: \(cycles) (mode \(mode)), acknowledged \(acknowledged), verified \(verified), "
                + "lost \(lost), segments \(segments), seed \(seed)"
        }
    }

    /// Where the kill lands within a cycle.
    enum Moment: String {
        /// At a random time soon after the child starts: often during open and recovery.
        case early
        /// While records stream in, a random time after the first acknowledgement.
        case streaming
        /// At once after the child acknowledged every batch sent (it is idle, waiting for input).
        case afterAck
        /// Just after the acknowledgement of the full batches, with a partial batch (or, for
        /// --batch 1, one more record) appended and not yet committed.
        case midBatch
    }

    /// What the harness remembers of each LSN in the log: enough to check it byte for byte
    /// (length and CRC-32C; the current cycle's records are compared in full).
    struct Entry {
        var count: Int
        var crc: UInt32
        var acknowledged: Bool
    }

    let mode: String
    let seed: UInt64
    let directory: String
    let cycles: Int
    var random: SplitMix64
    var history: [Entry] = []
    /// The acknowledged records of the cycle being checked, by LSN, until they join `history`.
    var unverified: [(lsn: LSN, entry: Entry)] = []
    var result: Result
    /// Random letters that records are cut from (fast in a debug build, unlike a byte-wise loop).
    let letters: [UInt8]

    init(mode: String, seed: UInt64, directory: String, cycles: Int) {
        self.mode = mode
        self.seed = seed
        self.directory = directory
        self.cycles = cycles
        // Each mode draws from its own stream, so that a mode replays the same way alone or not.
        random = SplitMix64(seed: seed ^ UInt64(CRC32C.checksum(Array(mode.utf8))) << 17)
        result = Result(mode: mode, seed: seed)
        var letters: [UInt8] = []
        letters.reserveCapacity(1 << 16)
        while letters.count < 1 << 16 {
            var word = random.next()
            for _ in 0..<8 {
                letters.append(UInt8(ascii: "A") + UInt8(word % 26))
                word >>= 8
            }
        }
        self.letters = letters
    }

    /// Line `index` of cycle `cycle`: unique, up to 8 KB (so 1 MiB segments roll), printable.
    mutating func line(cycle: Int, index: Int) -> [UInt8] {
        let length = Int(random.next() % 8000)
        let start = Int(random.next() % UInt64(letters.count - length))
        return Array("c\(cycle)-i\(index)-".utf8) + letters[start..<(start + length)]
    }

    mutating func fail(_ cycle: Int, _ message: String) {
        result.problems.append(
            "seed \(seed), mode \(mode), cycle \(cycle): \(message) (replay: LOGSTORE_KILL9_SEED=\(seed))")
    }

    mutating func run() -> Result {
        for cycle in 0..<cycles {
            guard runCycle(cycle) else { break }
            result.cycles += 1
        }
        finish()
        return result
    }

    /// One kill: false after a problem (the run stops there; later cycles would only repeat it).
    mutating func runCycle(_ cycle: Int) -> Bool {
        let batch = [1, 1, 2, 3, 8, 16][Int(random.next() % 6)]
        let moments: [Moment] = [.early, .streaming, .streaming, .streaming, .afterAck, .afterAck, .midBatch, .midBatch]
        let moment = moments[Int(random.next() % UInt64(moments.count))]
        let base = LSN(history.count + 1)
        let child: Child
        do {
            child = try Child(arguments: [
                "append", directory, "--create", "--segment-size", "1MiB", "--sync", mode, "--batch", "\(batch)",
            ])
        } catch {
            fail(cycle, "cannot start logctl append: \(error)")
            return false
        }
        var sent: [[UInt8]] = []
        func send(_ count: Int) {
            for _ in 0..<count {
                let line = line(cycle: cycle, index: sent.count)
                guard child.send(line) else { return }
                sent.append(line)
            }
        }
        var waitProblem: String?
        switch moment {
        case .early:
            let deadline = Date().addingTimeInterval(Double(random.next() % 40) / 1000)
            while Date() < deadline && sent.count < 2000 && child.isRunning { send(1) }
        case .streaming:
            let window = Double(random.next() % 60) / 1000
            var deadline: Date?
            let giveUp = Date().addingTimeInterval(30)
            while child.isRunning && sent.count < 20_000 && Date() < giveUp {
                send(1)
                if deadline == nil && child.acknowledgedCount > 0 { deadline = Date().addingTimeInterval(window) }
                if let deadline, Date() >= deadline { break }
            }
            if deadline == nil { waitProblem = "no acknowledgement within 30 s" }
        case .afterAck, .midBatch:
            let full = batch * Int(1 + random.next() % 3)
            send(full)
            if moment == .midBatch { send(batch == 1 ? 1 : Int(1 + random.next() % UInt64(batch - 1))) }
            let pause = moment == .midBatch ? useconds_t(random.next() % 2000) : 0
            if !child.waitForAcknowledgements(full, timeout: 30) {
                waitProblem = "\(child.acknowledgedCount) of \(full) records acknowledged after 30 s"
            }
            if pause > 0 { usleep(pause) }
        }
        child.kill()
        let acknowledged = child.acknowledged
        unverified = acknowledged.enumerated().map { k, lsn in
            let bytes = k < sent.count ? sent[k] : []
            return (lsn, Entry(count: bytes.count, crc: CRC32C.checksum(bytes), acknowledged: true))
        }
        if !child.wasKilled || waitProblem != nil {
            let reason = child.wasKilled ? waitProblem! : "the writer exited by itself (status \(child.status))"
            fail(cycle, "\(moment.rawValue), --batch \(batch): \(reason): \(child.errorOutput)")
            return false
        }
        let context = "\(moment.rawValue), --batch \(batch)"
        return verify(cycle: cycle, base: base, sent: sent, acknowledged: acknowledged, context: context)
    }

    /// After a kill: every acknowledged LSN holds exactly what was sent for it, LSNs run from 1
    /// without gaps, nothing unsent exists, and recovery does not report corruption.
    mutating func verify(cycle: Int, base: LSN, sent: [[UInt8]], acknowledged: [LSN], context: String) -> Bool {
        let problemsBefore = result.problems.count
        // The k-th printed LSN belongs to the k-th line sent in this cycle.
        if acknowledged != Array(base..<(base + LSN(acknowledged.count))) {
            fail(cycle, "\(context): printed LSNs \(acknowledged.prefix(5))... are not \(base), \(base + 1), ...")
            return false
        }
        if acknowledged.count > sent.count {
            fail(cycle, "\(context): \(acknowledged.count) LSNs printed for \(sent.count) records sent")
            return false
        }
        let log: Log
        do {
            log = try Log.openReadOnly(directory)
        } catch let error where history.isEmpty && acknowledged.isEmpty
            && [.notALog, .notFound].contains(error.code)
        {
            return true  // killed before the first segment existed
        } catch {
            fail(cycle, "\(context): cannot open the log read-only: \(error)")
            return false
        }
        defer { try? log.close() }
        if log.recoveryReport.outcome == .corruption {
            let damage = log.recoveryReport.damage.map { "\($0)" } ?? "?"
            fail(cycle, "\(context): recovery reports corruption at \(damage)")
        }
        if log.firstLSN != 1 { fail(cycle, "\(context): the log starts at LSN \(log.firstLSN)") }
        let written = log.writtenLSN
        if let last = acknowledged.last, written < last {
            fail(cycle, "\(context): acknowledged LSNs \(written + 1)...\(last) lost (log ends at \(written))")
        }
        if written < base - 1 {
            fail(cycle, "\(context): LSNs \(written + 1)...\(base - 1) of earlier cycles lost")
        }
        var expectedLSN: LSN = 1
        var survivors: [Entry] = []
        for record in log.records() {
            defer { expectedLSN += 1 }
            guard record.lsn == expectedLSN else {
                fail(cycle, "\(context): LSN \(record.lsn) follows LSN \(expectedLSN - 1)")
                break
            }
            let crc = record.payload.withUnsafeBytes { CRC32C.checksum($0) }
            if record.lsn < base {
                let entry = history[Int(record.lsn) - 1]
                if entry.count != record.payload.count || entry.crc != crc {
                    let what = entry.acknowledged ? "acknowledged" : "survivor"
                    fail(cycle, "\(context): LSN \(record.lsn) (\(what)) changed")
                }
                continue
            }
            let k = Int(record.lsn - base)
            guard k < sent.count else {
                fail(cycle, "\(context): LSN \(record.lsn) exists but only \(sent.count) records were sent")
                break
            }
            if !same(record.payload, sent[k]) {
                fail(cycle, "\(context): LSN \(record.lsn) differs from record \(k) sent "
                        + "(\(k < acknowledged.count ? "acknowledged" : "not acknowledged"))")
            }
            // Whatever survives beyond the acknowledged prefix now belongs to the log for good.
            survivors.append(Entry(count: record.payload.count, crc: crc, acknowledged: k < acknowledged.count))
        }
        if expectedLSN - 1 != written {
            fail(cycle, "\(context): reading stopped at LSN \(expectedLSN - 1) of \(written)")
        }
        if result.problems.count > problemsBefore { return false }
        history += survivors
        unverified = []
        return true
    }

    /// Appends continue after recovery; then the whole log is checked once more: `verified`
    /// counts the acknowledged records that final check found intact.
    mutating func finish() {
        if result.problems.isEmpty {
            do {
                let final = try logctl(["append", directory, "--sync", mode], input: "the end\n")
                if final.status != 0 || final.stdout != "\(history.count + 1)\n" {
                    fail(cycles, "final append: status \(final.status), printed '\(final.stdout)': \(final.stderr)")
                } else {
                    history.append(Entry(count: 7, crc: CRC32C.checksum(Array("the end".utf8)), acknowledged: true))
                }
            } catch {
                fail(cycles, "final append: \(error)")
            }
        }
        var expected: [LSN: Entry] = [:]
        for (index, entry) in history.enumerated() where entry.acknowledged { expected[LSN(index + 1)] = entry }
        for (lsn, entry) in unverified { expected[lsn] = entry }
        result.acknowledged = expected.count
        result.lost = expected.count
        guard let log = try? Log.openReadOnly(directory) else {
            if !expected.isEmpty { fail(cycles, "final check: cannot open the log") }
            return
        }
        defer { try? log.close() }
        if result.problems.isEmpty {
            if log.recoveryReport.outcome != .clean { fail(cycles, "final check: \(log.recoveryReport)") }
            if log.writtenLSN != LSN(history.count) {
                fail(cycles, "final check: log ends at \(log.writtenLSN), expected \(history.count)")
            }
        }
        result.segments = log.segments.count
        var verified = 0
        for record in log.records() {
            guard let entry = expected[record.lsn] else { continue }
            let crc = record.payload.withUnsafeBytes { CRC32C.checksum($0) }
            if entry.count == record.payload.count && entry.crc == crc { verified += 1 }
        }
        result.verified = verified
        result.lost = expected.count - verified
    }

    func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        guard !a.isEmpty else { return true }
        return a.withUnsafeBytes { a in b.withUnsafeBytes { b in memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 } }
    }
}

/// A `logctl append` child with a pipe for lines and a thread collecting printed LSNs.
final class Child: @unchecked Sendable {
    let process = Process()
    let input: FileHandle
    private let printed = Printed()
    private let reader: Thread
    private let errors: Pipe

    init(arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: logctlPath)
        process.arguments = arguments
        let stdin = Pipe()
        let stdout = Pipe()
        errors = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = errors
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
    var acknowledgedCount: Int { printed.lock.withLock { printed.lsns.count } }
    var isRunning: Bool { process.isRunning }
    /// The exit status, once the child is gone.
    var status: Int32 { process.terminationStatus }
    /// Whether the child died of a signal (ours) rather than exiting by itself.
    var wasKilled: Bool { process.terminationReason == .uncaughtSignal }

    func send(_ line: [UInt8]) -> Bool {
        (try? input.write(contentsOf: Data(line + [10]))) != nil
    }

    /// Waits until `count` LSNs were printed; false on timeout or when the child is gone first.
    func waitForAcknowledgements(_ count: Int, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while acknowledgedCount < count {
            if !process.isRunning || Date() > deadline { return acknowledgedCount >= count }
            usleep(200)
        }
        return true
    }

    /// SIGKILL (unless the child already exited), then wait until it is gone and its printed
    /// LSNs are all read.
    func kill() {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        while !reader.isFinished { usleep(1000) }
        try? input.close()
    }

    /// What the child wrote on stderr (after `kill`).
    var errorOutput: String {
        String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

private final class Printed: @unchecked Sendable {
    let lock = NSLock()
    var lsns: [LSN] = []
}
