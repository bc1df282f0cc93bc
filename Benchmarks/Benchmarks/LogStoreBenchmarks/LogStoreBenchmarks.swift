// ordo-one/benchmark suite for LogStore. Run from the Benchmarks directory:
//
//   swift package --disable-sandbox benchmark
//   swift package --disable-sandbox benchmark --filter "Append.*"
//
// Every log and file lives in a fresh directory under $LOGSTORE_BENCH_DIR (default /tmp), which
// is removed in the benchmark's teardown. `--disable-sandbox` is needed because the benchmark
// process writes and fsyncs files outside the package directory.
//
// Allocation check of the append hot path (exit status != 0 if append allocates per record):
//
//   swift package --disable-sandbox benchmark thresholds check --filter "Append hot path.*"
//
// For the headline numbers (medians over repetitions, ratios to the raw baseline) see the
// LogStoreMeasure executable and ../BENCHMARKS.md.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Benchmark
import BenchSupport
import LogStore

/// Mutable per-benchmark state shared by a benchmark's setup, body and teardown, which the
/// benchmark runner calls one after another on its own thread.
final class Fixture: @unchecked Sendable {
    var directory: String?
    var log: Log?
    var raw: RawSyncFile?
    var payload = Bench.payload(128)

    func makeLog(_ name: String, sync: Log.SyncMode, segmentSize: Int = 64 << 20,
                 preallocation: Preallocation = .fallocate) throws {
        let dir = Bench.makeTemporaryDirectory("logstore-bench-\(name)")
        directory = dir
        log = try Log.open(
            dir, options: Log.Options(segmentSize: segmentSize, createIfMissing: true, sync: sync,
                                      preallocation: preallocation))
    }

    func tearDown() {
        try? log?.close()
        log = nil
        raw?.close()
        raw = nil
        if let directory { Bench.removeDirectory(directory) }
        directory = nil
    }
}

// `syscalls` is measured where the backend supports it (macOS); on Linux that column is left
// out. (`writeSyscalls` from /proc/self/io would work on Linux, but reading it around every
// iteration costs 16 mallocs that land in the measured window and hide the library's own.)
let ioMetrics: [BenchmarkMetric] = [.syscalls]
let baseMetrics: [BenchmarkMetric] = [.throughput, .wallClock, .mallocCountTotal] + ioMetrics

let benchmarks: @Sendable () -> Void = {
    /// No allocation per appended record: mallocCountTotal (per record, after .kilo scaling) must
    /// stay 0. Checked against Thresholds/LogStoreBenchmarks.Append hot path 128B.p90.json by
    ///   swift package --disable-sandbox benchmark thresholds check --filter "Append hot path.*"
    /// (exit status 0 when equal; a per-record allocation makes it fail).
    let noAllocations: [BenchmarkMetric: BenchmarkThresholds] = [
        .mallocCountTotal: .init(absolute: [.p50: 0, .p90: 0])
    ]

    Benchmark.defaultConfiguration = .init(
        metrics: baseMetrics,
        warmupIterations: 10,
        maxDuration: .seconds(5),
        maxIterations: 5_000
    )

    // MARK: Durable serial appends: one record, one commit, per iteration.

    // The default preallocation (fallocate), both sync modes; and msync with zero-fill, which
    // BENCHMARKS.md ("Preallocation") compares.
    let serialVariants: [(String, Log.SyncMode, Preallocation)] = [
        ("msync", .msync, .fallocate), ("fdatasync", .fdatasync, .fallocate), ("msync, zero-fill", .msync, .zeroFill),
    ]
    for (label, mode, preallocation) in serialVariants {
        let fixture = Fixture()
        Benchmark(
            "Append durable serial 128B (\(label))",
            configuration: .init(metrics: baseMetrics, timeUnits: .microseconds),
            closure: { benchmark in
                let log = fixture.log!
                do {
                    try fixture.payload.withUnsafeBytes { bytes in
                        for _ in benchmark.scaledIterations {
                            try log.append(bytes)
                            try log.commit()
                        }
                    }
                } catch { benchmark.error("\(error)") }
            },
            setup: { try fixture.makeLog("serial-\(mode.rawValue)", sync: mode, preallocation: preallocation) },
            teardown: { fixture.tearDown() }
        )
    }

    // MARK: The baseline: pwrite 128 B + fdatasync on a preallocated, zero-filled file.

    do {
        let fixture = Fixture()
        Benchmark(
            "Raw pwrite+fdatasync 128B",
            configuration: .init(metrics: baseMetrics, timeUnits: .microseconds),
            closure: { benchmark in
                let raw = fixture.raw!
                fixture.payload.withUnsafeBytes { bytes in
                    for _ in benchmark.scaledIterations { raw.writeAndSync(bytes) }
                }
            },
            setup: {
                let dir = Bench.makeTemporaryDirectory("logstore-bench-raw")
                fixture.directory = dir
                fixture.raw = RawSyncFile(directory: dir)
            },
            teardown: { fixture.tearDown() }
        )
    }

    // MARK: The append hot path alone (no sync): must not allocate per record.

    do {
        let fixture = Fixture()
        Benchmark(
            "Append hot path 128B",
            configuration: .init(
                metrics: baseMetrics, timeUnits: .nanoseconds, warmupIterations: 2, scalingFactor: .kilo,
                maxDuration: .seconds(3), maxIterations: 1_000, thresholds: noAllocations),
            closure: { benchmark in
                let log = fixture.log!
                do {
                    try fixture.payload.withUnsafeBytes { bytes in
                        for _ in benchmark.scaledIterations { blackHole(try log.append(bytes)) }
                    }
                } catch { benchmark.error("\(error)") }
            },
            // 256 MiB holds ~1.6M records of 128 B: no segment roll within 1,002 x 1,000 appends.
            setup: { try fixture.makeLog("hotpath", sync: .none, segmentSize: 256 << 20) },
            teardown: { fixture.tearDown() }
        )
    }

    // MARK: Bulk: 1M appends then one commit per iteration, on a fresh log each time.

    for (label, preallocation) in [("fallocate", Preallocation.fallocate), ("zero-fill", .zeroFill)] {
        let fixture = Fixture()
        Benchmark(
            "Bulk append 1M x 128B then one commit (\(label))",
            configuration: .init(
                metrics: baseMetrics, timeUnits: .nanoseconds, warmupIterations: 0, scalingFactor: .mega,
                maxDuration: .seconds(20), maxIterations: 5),
            closure: { benchmark in
                do {
                    // Creating the log (its first segment) is not measured. 64 MiB segments: the
                    // run rolls into two more (prepared in the background) inside the measurement.
                    try fixture.makeLog("bulk", sync: .msync, preallocation: preallocation)
                    let log = fixture.log!
                    benchmark.startMeasurement()
                    try fixture.payload.withUnsafeBytes { bytes in
                        for _ in benchmark.scaledIterations { try log.append(bytes) }
                    }
                    try log.commit()
                    benchmark.stopMeasurement()
                } catch { benchmark.error("\(error)") }
                fixture.tearDown()
            },
            teardown: { fixture.tearDown() }
        )
    }

    // MARK: CRC32C of 64 KiB.

    do {
        let buffer = Bench.randomBytes(64 << 10)
        let bytesPerSecond = BenchmarkMetric.custom("MB/s", polarity: .prefersLarger, useScalingFactor: false)
        Benchmark(
            "CRC32C 64 KiB",
            configuration: .init(
                metrics: [.throughput, .wallClock, .mallocCountTotal, bytesPerSecond], timeUnits: .nanoseconds,
                warmupIterations: 100, maxDuration: .seconds(2), maxIterations: 100_000),
            closure: { benchmark in
                buffer.withUnsafeBytes { bytes in
                    let start = Bench.now()
                    for _ in benchmark.scaledIterations { blackHole(CRC32C.checksum(bytes)) }
                    let elapsed = max(Bench.now() - start, 1)
                    // bytes/ns * 1000 = MB/s (10^6 bytes per second).
                    benchmark.measurement(
                        bytesPerSecond, Int(Double(bytes.count * benchmark.scaledIterations.count) * 1_000 / Double(elapsed)))
                }
            }
        )
    }

    // MARK: Recovery scan: open (writer) of a closed log of 100k records.

    do {
        let fixture = Fixture()
        Benchmark(
            "Recovery scan: open a 100k-record log",
            configuration: .init(
                metrics: baseMetrics, timeUnits: .milliseconds, warmupIterations: 2, maxDuration: .seconds(10),
                maxIterations: 50),
            closure: { benchmark in
                do {
                    benchmark.startMeasurement()
                    let log = try Log.open(fixture.directory!)
                    benchmark.stopMeasurement()
                    blackHole(log.writtenLSN)
                    try log.close()
                } catch { benchmark.error("\(error)") }
            },
            setup: {
                try fixture.makeLog("recovery", sync: .msync)
                let log = fixture.log!
                try fixture.payload.withUnsafeBytes { bytes in
                    for _ in 0..<100_000 { try log.append(bytes) }
                }
                try log.close()
                fixture.log = nil
            },
            teardown: { fixture.tearDown() }
        )
    }
}
