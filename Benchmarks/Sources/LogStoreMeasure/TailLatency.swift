// Tail latency across processes: this process writes (append + commit, one record at a time,
// paced), a child process running `LogStoreMeasure --tail-reader DIR COUNT` follows the log
// with `LogFollower` and notes when each record arrives (CLOCK_MONOTONIC, one clock for both
// processes). A record is durable somewhere between the start of its commit and the return of
// `commit()`; the reader is woken at the same time as the committing thread. So two figures:
// arrival minus the return of `commit()` (durable -> reader, slightly understated: it excludes
// the committer's own wake-up), and arrival minus the append (includes the sync).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BenchSupport
import Foundation
import LogStore

/// The child: follows `directory` from LSN 1 until `count` records arrived, then prints
/// "lsn arrival appendTime" per record. Prints "ready" once it is following.
func runTailReader(directory: String, count: Int) throws -> Never {
    let follower = try LogFollower(directory)
    say("ready \(follower.isFollowingWatermark ? "watermark" : "polling")")
    var arrivals: [(LSN, UInt64, UInt64)] = []
    arrivals.reserveCapacity(count)
    while arrivals.count < count, let record = try follower.next() {
        let now = Bench.now()
        let appended = record.payload.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        arrivals.append((record.lsn, now, appended))
    }
    var out = ""
    for (lsn, arrival, appended) in arrivals { out += "\(lsn) \(arrival) \(appended)\n" }
    FileHandle.standardOutput.write(Data(out.utf8))
    exit(0)
}

struct TailResult {
    var p50: Double, p99: Double, max: Double  // µs, arrival - commit return
    var appendP50: Double, appendP99: Double  // µs, arrival - append
    var commitP50: Double, commitP99: Double  // µs, append + commit (the writer's own stalls)
}

/// One run: `count` records of 128 B, one append + commit each, `gapMicroseconds` apart.
func runTailLatency(count: Int, gapMicroseconds: UInt32, mode: Log.SyncMode) throws -> TailResult {
    let dir = Bench.makeTemporaryDirectory("logstore-measure-tail", base: settings.dir)
    defer { Bench.removeDirectory(dir) }
    let log = try Log.open(dir, options: Log.Options(createIfMissing: true, sync: mode))
    let reader = Process()
    reader.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
    reader.arguments = ["--tail-reader", dir, String(count)]
    let output = Pipe()
    reader.standardOutput = output
    try reader.run()
    // Wait for "ready": the follower is mapped and waiting.
    var ready = Data()
    while !ready.contains(UInt8(ascii: "\n")) { ready.append(output.fileHandleForReading.availableData) }
    var committed = [UInt64](repeating: 0, count: count + 1)
    var appended = [UInt64](repeating: 0, count: count + 1)
    var record = Bench.payload(128)
    for _ in 0..<count {
        let start = Bench.now()
        withUnsafeBytes(of: start) { record.replaceSubrange(0..<8, with: $0) }
        let lsn = try record.withUnsafeBytes { try log.append($0) }
        try log.commit()
        committed[Int(lsn)] = Bench.now()
        appended[Int(lsn)] = start
        usleep(gapMicroseconds)
    }
    let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    reader.waitUntilExit()
    try log.close()
    var afterCommit: [Int64] = []
    var afterAppend: [UInt64] = []
    for line in text.split(separator: "\n") {
        let fields = line.split(separator: " ").map { UInt64($0)! }
        let lsn = Int(fields[0])
        precondition(fields[2] == appended[lsn], "record \(lsn) arrived with another payload")
        afterCommit.append(Int64(bitPattern: fields[1] &- committed[lsn]))
        afterAppend.append(fields[1] - appended[lsn])
    }
    precondition(afterCommit.count == count, "the reader saw \(afterCommit.count) of \(count) records")
    let sortedCommit = afterCommit.sorted()
    func percentile(_ q: Double) -> Double {
        Double(sortedCommit[min(sortedCommit.count - 1, Int(Double(sortedCommit.count) * q))]) / 1_000
    }
    let sortedAppend = afterAppend.sorted()
    let commitLatencies = (1...count).map { committed[$0] - appended[$0] }.sorted()
    return TailResult(
        p50: percentile(0.5), p99: percentile(0.99), max: Double(sortedCommit.last!) / 1_000,
        appendP50: us(Bench.percentile(sortedAppend, 0.5)), appendP99: us(Bench.percentile(sortedAppend, 0.99)),
        commitP50: us(Bench.percentile(commitLatencies, 0.5)), commitP99: us(Bench.percentile(commitLatencies, 0.99)))
}
