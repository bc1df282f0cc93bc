import Foundation
import LogStore
import Synchronization

/// One sync mode of `logctl crashtest`: cycles of spawning a `logctl append` child on one log,
/// feeding it records, SIGKILLing it at a moment drawn from the seed, and checking the log
/// read-only; the next cycle's child recovers the log and appends on.
struct CrashTestRun {
    struct Result {
        var mode: Log.SyncMode
        var seed: UInt64
        var cycles = 0
        var acknowledged = 0
        var verified = 0
        var lost = 0
        var seconds = 0.0
        var problem: Problem?
    }

    enum Problem: Error {
        /// An acknowledged record lost or changed, a gap, a record never sent, corruption.
        case violation(cycle: Int, lsn: LSN?, message: String)
        /// The mode cannot run here (io_uring disabled).
        case unavailable(String)
        /// Anything else that stopped the mode (a full disk, a writer that never acknowledged).
        case failure(String)
        /// The log cannot be created with these options (a --segment-size the format rejects).
        case invalidArgument(String)
    }

    /// Where the kill lands within a cycle.
    enum Moment: String, CaseIterable {
        /// A random time soon after the child starts: often while it opens and recovers the log.
        case early
        /// While records stream in, a random time after the first acknowledgement.
        case streaming
        /// As soon as every batch sent is acknowledged (the child is idle, waiting for input).
        case afterAck = "after-ack"
        /// Just after the full batches are acknowledged, with a partial batch (for --batch 1: one
        /// more record) appended and its commit not yet done.
        case midBatch = "mid-batch"
    }

    /// What the run remembers of each LSN in the log: its length and CRC-32C (the current cycle's
    /// records are compared byte for byte against what was sent).
    struct Entry {
        var count: Int
        var crc: UInt32
        var acknowledged: Bool
    }

    let mode: Log.SyncMode
    let directory: String
    let cycles: Int
    let segmentSize: Int
    /// Seconds to wait for an acknowledgement before calling the writer stuck.
    let patience = 60.0
    var random: SplitMix64
    var result: Result
    var history: [Entry] = []
    /// The acknowledged records of the cycle being checked, by LSN, until they join `history`.
    var unverified: [(lsn: LSN, entry: Entry)] = []
    /// Random letters that records are cut from.
    let letters: [UInt8]

    init(mode: Log.SyncMode, directory: String, cycles: Int, seed: UInt64, segmentSize: Int) {
        self.mode = mode
        self.directory = directory
        self.cycles = cycles
        self.segmentSize = segmentSize
        // A stream per mode: `--mode uring --seed S` replays uring's cycles of a run of all modes.
        random = SplitMix64(seed: seed ^ UInt64(CRC32C.checksum(Array(mode.rawValue.utf8))) << 17)
        result = Result(mode: mode, seed: seed)
        var letters: [UInt8] = []
        letters.reserveCapacity(1 << 16)
        while letters.count < 1 << 16 {
            var word = random.next()
            for _ in 0..<8 {
                letters.append(UInt8(ascii: "a") + UInt8(word % 26))
                word >>= 8
            }
        }
        self.letters = letters
    }

    /// Runs every cycle (`progress` is told each cycle's number first), then appends once more
    /// and checks the whole log.
    mutating func run(resources: CrashTestResources, progress: (Int) -> Void) -> Result {
        let started = Date()
        do {
            try create()
            for cycle in 1...cycles {
                progress(cycle)
                try runCycle(cycle, resources: resources)
                result.cycles = cycle
            }
            try appendAfterRecovery()
        } catch {
            result.problem = error
        }
        countVerified()
        result.seconds = Date().timeIntervalSince(started)
        return result
    }

    /// Creates the log in the parent, so that a mode that cannot run here fails before any child.
    func create() throws(Problem) {
        do {
            let log = try Log.open(
                directory, options: Log.Options(segmentSize: segmentSize, createIfMissing: true, sync: mode))
            try log.close()
        } catch let error where error.code == .syncModeUnavailable {
            throw .unavailable(error.description)
        } catch let error where error.code == .invalidArgument {
            throw .invalidArgument(error.message)
        } catch {
            throw .failure("cannot create the log: \(error)")
        }
    }

    /// A record: unique, 0 to 8,000 random letters after its name (so that small segments roll).
    mutating func line(cycle: Int, index: Int) -> [UInt8] {
        let length = Int(random.next() % 8000)
        let start = Int(random.next() % UInt64(letters.count - length))
        let name = "crashtest \(mode.rawValue) cycle \(cycle) record \(index) "
        return Array(name.utf8) + letters[start..<(start + length)]
    }

    mutating func runCycle(_ cycle: Int, resources: CrashTestResources) throws(Problem) {
        let batch = [1, 1, 2, 3, 8, 16][Int(random.next() % 6)]
        let moments: [Moment] = [.early, .streaming, .streaming, .streaming, .afterAck, .afterAck, .midBatch, .midBatch]
        let moment = moments[Int(random.next() % UInt64(moments.count))]
        let base = LSN(history.count + 1)
        let child: ChildWriter
        do {
            child = try ChildWriter(
                arguments: [
                    directory, "--segment-size", "\(segmentSize)", "--sync", mode.rawValue, "--batch", "\(batch)",
                ], captureErrors: true)
        } catch {
            throw .failure("cycle \(cycle): cannot start logctl append: \(error)")
        }
        resources.running(child.pid)
        var sent: [[UInt8]] = []
        func send(_ count: Int) {
            for _ in 0..<count {
                let line = line(cycle: cycle, index: sent.count)
                guard child.send(line) else { return }
                sent.append(line)
            }
        }
        var stuck: String?
        switch moment {
        case .early:
            let deadline = Date().addingTimeInterval(Double(random.next() % 40) / 1000)
            while Date() < deadline && sent.count < 2000 && child.isRunning { send(1) }
        case .streaming:
            let window = Double(random.next() % 60) / 1000
            let giveUp = Date().addingTimeInterval(patience)
            var deadline: Date?
            while child.isRunning && sent.count < 20_000 && Date() < giveUp {
                send(1)
                if deadline == nil && child.acknowledgedCount > 0 { deadline = Date().addingTimeInterval(window) }
                if let deadline, Date() >= deadline { break }
            }
            if deadline == nil { stuck = "nothing acknowledged in \(Int(patience)) s" }
        case .afterAck, .midBatch:
            let full = batch * Int(1 + random.next() % 3)
            send(full)
            if moment == .midBatch { send(batch == 1 ? 1 : Int(1 + random.next() % UInt64(batch - 1))) }
            let pause = moment == .midBatch ? useconds_t(random.next() % 2000) : 0
            if !child.waitForAcknowledgements(full, timeout: patience) {
                stuck = "\(child.acknowledgedCount) of \(full) records acknowledged in \(Int(patience)) s"
            }
            if pause > 0 { usleep(pause) }
        }
        child.kill()
        resources.running(nil)
        let acknowledged = child.acknowledgedLSNs
        unverified = acknowledged.enumerated().map { k, lsn in
            let bytes = k < sent.count ? sent[k] : []
            return (lsn, Entry(count: bytes.count, crc: CRC32C.checksum(bytes), acknowledged: true))
        }
        let context = "cycle \(cycle) (kill \(moment.rawValue), --batch \(batch))"
        if !child.wasKilled {
            // The writer stopped by itself: it refused the log, or the disk failed it.
            let message = child.errorOutput
            if message.contains(LogError.Code.syncModeUnavailable.rawValue + ":") { throw .unavailable(message) }
            if child.status == 2 {
                let damage = (try? Log.openReadOnly(directory))?.recoveryReport.damage
                throw .violation(
                    cycle: cycle, lsn: damage?.lsn, message: "\(context): the writer refused to open the log: \(message)")
            }
            throw .failure("\(context): the writer exited with status \(child.status): \(message)")
        }
        if let stuck { throw .failure("\(context): \(stuck)") }
        try verify(cycle: cycle, context: context, base: base, sent: sent, acknowledged: acknowledged)
    }

    /// Every acknowledged LSN holds exactly what was sent for it, LSNs run from 1 without gaps,
    /// no record exists that was not sent, and recovery does not find corruption.
    mutating func verify(cycle: Int, context: String, base: LSN, sent: [[UInt8]], acknowledged: [LSN])
        throws(Problem)
    {
        func violation(_ lsn: LSN?, _ message: String) -> Problem {
            .violation(cycle: cycle, lsn: lsn, message: "\(context): \(message)")
        }
        // The k-th printed LSN belongs to the k-th record sent in this cycle.
        for (k, lsn) in acknowledged.enumerated() where lsn != base + LSN(k) {
            throw violation(
                lsn, "the writer printed LSN \(lsn) for record \(k) of the cycle, expected \(base + LSN(k))")
        }
        if acknowledged.count > sent.count {
            throw violation(acknowledged.last, "\(acknowledged.count) LSNs printed for \(sent.count) records sent")
        }
        let log: Log
        do { log = try Log.openReadOnly(directory) } catch {
            throw violation(error.lsn, "cannot open the log read-only: \(error)")
        }
        defer { try? log.close() }
        let report = log.recoveryReport
        if report.outcome == .corruption {
            throw violation(report.damage?.lsn, "recovery finds corruption: \(report.damage.map { "\($0)" } ?? "")")
        }
        if log.firstLSN != 1 { throw violation(1, "the log starts at LSN \(log.firstLSN)") }
        let written = log.writtenLSN
        if written < base - 1 {
            throw violation(written + 1, "LSNs \(written + 1)...\(base - 1) of earlier cycles are gone")
        }
        if let last = acknowledged.last, written < last {
            throw violation(written + 1, "acknowledged LSNs \(written + 1)...\(last) lost (the log ends at \(written))")
        }
        var next: LSN = 1
        var survivors: [Entry] = []
        var records = log.records()
        func nextRecord() throws(Problem) -> Log.Record? {
            do { return try records.next() } catch { throw violation(next, "LSN \(next) cannot be read: \(error)") }
        }
        while let record = try nextRecord() {
            guard record.lsn == next else { throw violation(next, "LSN \(record.lsn) follows LSN \(next - 1)") }
            next += 1
            let crc = record.payload.withUnsafeBytes { CRC32C.checksum($0) }
            if record.lsn < base {
                let entry = history[Int(record.lsn) - 1]
                if entry.count != record.payload.count || entry.crc != crc {
                    let what = entry.acknowledged ? "acknowledged record" : "record (kept by an earlier recovery)"
                    throw violation(record.lsn, "the \(what) changed")
                }
                continue
            }
            let k = Int(record.lsn - base)
            guard k < sent.count else {
                throw violation(record.lsn, "LSN \(record.lsn) exists, but only \(sent.count) records were sent")
            }
            if !Self.same(record.payload, sent[k]) {
                throw violation(record.lsn, "LSN \(record.lsn) differs from the record sent for it"
                                + (k < acknowledged.count ? " (acknowledged)" : ""))
            }
            // Whatever survives past the acknowledged prefix belongs to the log from now on.
            survivors.append(Entry(count: record.payload.count, crc: crc, acknowledged: k < acknowledged.count))
        }
        if next - 1 != written { throw violation(next, "reading stops at LSN \(next - 1) of \(written)") }
        history += survivors
        unverified = []
    }

    /// Appends continue after the last kill: one more writer recovers, appends a record, exits
    /// cleanly; the log must then be clean.
    mutating func appendAfterRecovery() throws(Problem) {
        let child: ChildWriter
        do {
            child = try ChildWriter(arguments: [directory, "--sync", mode.rawValue], captureErrors: true)
        } catch {
            throw .failure("cannot start the final logctl append: \(error)")
        }
        let line = Array("crashtest \(mode.rawValue) appended after recovery".utf8)
        _ = child.send(line)
        let status = child.finish()
        let expected = LSN(history.count + 1)
        guard status == 0, child.acknowledgedLSNs == [expected] else {
            throw .violation(
                cycle: cycles, lsn: expected,
                message: "the final append after recovery exited with \(status), printed \(child.acknowledgedLSNs): "
                    + child.errorOutput)
        }
        history.append(Entry(count: line.count, crc: CRC32C.checksum(line), acknowledged: true))
        guard let log = try? Log.openReadOnly(directory) else { return }
        defer { try? log.close() }
        if log.recoveryReport.outcome != .clean || log.writtenLSN != expected {
            throw .violation(
                cycle: cycles, lsn: expected,
                message: "after a clean exit the log is \(log.recoveryReport.outcome.rawValue), "
                    + "ends at \(log.writtenLSN)")
        }
    }

    /// Counts the records acknowledged over the run and those of them that are in the log, as
    /// they were sent, at the end.
    mutating func countVerified() {
        var expected: [LSN: Entry] = [:]
        for (index, entry) in history.enumerated() where entry.acknowledged { expected[LSN(index + 1)] = entry }
        for (lsn, entry) in unverified { expected[lsn] = entry }
        var verified = 0
        if !expected.isEmpty, let log = try? Log.openReadOnly(directory) {
            // A record that cannot be read counts as not verified, i.e. lost.
            var records = log.records()
            while let record = try? records.next() {
                guard let entry = expected[record.lsn] else { continue }
                if entry.count == record.payload.count
                    && entry.crc == record.payload.withUnsafeBytes({ CRC32C.checksum($0) })
                {
                    verified += 1
                }
            }
            try? log.close()
        }
        result.acknowledged = expected.count
        result.verified = verified
        result.lost = expected.count - verified
    }

    static func same(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        guard !a.isEmpty else { return true }
        return a.withUnsafeBytes { a in b.withUnsafeBytes { b in memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0 } }
    }
}
