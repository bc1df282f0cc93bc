// The read side (issue 6): random reads, sequential scans with CRC checks, and opening a large
// log after a clean close. Registered by `benchmarks` in LogStoreBenchmarks.swift:
//
//   swift package --disable-sandbox benchmark --filter "Read.*|Scan.*|Open.*"
//
// The open benchmark works on a log of $LOGSTORE_BENCH_OPEN_GIB GiB (default 10) made once in
// $LOGSTORE_BENCH_OPEN_DIR (kept there and reused when set; otherwise a temporary directory
// removed in teardown).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Benchmark
import BenchSupport
import LogStore

/// The log the read and scan benchmarks share: 1,000,000 records of 128 B, closed and reopened.
final class ReadFixture: @unchecked Sendable {
    var directory: String?
    var log: Log?
    var lsns: [LSN] = []

    func open(records: Int) throws {
        let dir = Bench.makeTemporaryDirectory("logstore-bench-read")
        directory = dir
        try ReadFixtures.writeClosedLog(dir, records: records, payload: Bench.payload(128))
        let log = try Log.open(dir)
        self.log = log
        // Index every sealed segment (the first read in each), so that iterations are warm.
        try log.forEachRecord(in: log.firstLSN...log.writtenLSN) { _, _ in }
        lsns = ReadFixtures.randomLSNs(1_000_000, last: log.writtenLSN)
    }

    func tearDown() {
        try? log?.close()
        log = nil
        if let directory { Bench.removeDirectory(directory) }
        directory = nil
    }
}

func registerReadBenchmarks() {
    let environment = { (name: String) in getenv(name).map { String(cString: $0) } }
    // One iteration is 1,000 reads (hence `.kilo`: wall clock and throughput per read).
    let readVariants: [(String, @Sendable (Log, LSN) throws(LogError) -> Int)] = [
        ("read, copying", { log, lsn throws(LogError) in try log.read(lsn).count }),
        ("withPayload, in place", { log, lsn throws(LogError) in try log.withPayload(of: lsn) { $0.byteCount } }),
    ]
    for (label, readOne) in readVariants {
        let fixture = ReadFixture()
        Benchmark(
            "Read random 128B (\(label))",
            configuration: .init(
                metrics: [.throughput, .wallClock, .mallocCountTotal], timeUnits: .nanoseconds, warmupIterations: 1,
                scalingFactor: .kilo, maxDuration: .seconds(3), maxIterations: 1_000),
            closure: { benchmark in
                let log = fixture.log!
                let lsns = fixture.lsns
                var position = Int.random(in: 0..<(lsns.count - benchmark.scaledIterations.count))
                do {
                    for _ in benchmark.scaledIterations {
                        blackHole(try readOne(log, lsns[position]))
                        position += 1
                    }
                } catch { benchmark.error("\(error)") }
            },
            setup: { try fixture.open(records: 1_000_000) },
            teardown: { fixture.tearDown() }
        )
    }
    do {
        let fixture = ReadFixture()
        let bytesPerSecond = BenchmarkMetric.custom("MB/s", polarity: .prefersLarger, useScalingFactor: false)
        Benchmark(
            "Scan with CRC check 128B (1M records)",
            configuration: .init(
                metrics: [.wallClock, .mallocCountTotal, bytesPerSecond], timeUnits: .milliseconds,
                warmupIterations: 1, maxDuration: .seconds(5), maxIterations: 50),
            closure: { benchmark in
                let log = fixture.log!
                let bytes = ReadFixtures.recordBytes(log)
                do {
                    let start = Bench.now()
                    var sum = 0
                    try log.forEachRecord(in: log.firstLSN...log.writtenLSN, verifyingChecksums: true) { _, payload in
                        sum &+= payload.byteCount
                    }
                    let elapsed = max(Bench.now() - start, 1)
                    blackHole(sum)
                    benchmark.measurement(bytesPerSecond, Int(Double(bytes) * 1_000 / Double(elapsed)))
                } catch { benchmark.error("\(error)") }
            },
            setup: { try fixture.open(records: 1_000_000) },
            teardown: { fixture.tearDown() }
        )
    }
    do {
        let gib = environment("LOGSTORE_BENCH_OPEN_GIB").flatMap { Int($0) } ?? 10
        let kept = environment("LOGSTORE_BENCH_OPEN_DIR")
        var directory: String?
        Benchmark(
            "Open after clean close (\(gib) GiB, 64 MiB segments)",
            configuration: .init(
                metrics: [.wallClock, .mallocCountTotal], timeUnits: .milliseconds, warmupIterations: 2,
                maxDuration: .seconds(10), maxIterations: 100),
            closure: { benchmark in
                do {
                    benchmark.startMeasurement()
                    let log = try Log.openReadOnly(directory!)
                    benchmark.stopMeasurement()
                    blackHole(log.writtenLSN)
                    try log.close()
                } catch { benchmark.error("\(error)") }
            },
            setup: {
                directory = kept ?? Bench.makeTemporaryDirectory("logstore-bench-open")
                try ReadFixtures.makeLargeClosedLog(directory!, bytes: gib << 30)
            },
            teardown: {
                if kept == nil, let directory { Bench.removeDirectory(directory) }
            }
        )
    }
}
