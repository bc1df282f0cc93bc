// ordo-one/benchmark suite for LogStore. Run from the Benchmarks directory:
//
//   swift package --disable-sandbox benchmark
//   swift package --disable-sandbox benchmark --filter "Append.*"
//   swift package --disable-sandbox benchmark --filter "Append durable concurrent.*"
//   swift package --disable-sandbox benchmark --filter "Append durable concurrent async.*"
//
// The durable benchmarks (serial, concurrent, bulk) run once per sync mode: msync, uring and
// fdatasync. `.uring` is registered only where a probe log opens with it (io_uring can be
// disabled, and opening then fails with `syncModeUnavailable`); otherwise a note goes to stderr.
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
import Synchronization

/// Mutable per-benchmark state shared by a benchmark's setup, body and teardown, which the
/// benchmark runner calls one after another on its own thread.
final class Fixture: @unchecked Sendable {
    var directory: String?
    var log: Log?
    var raw: RawSyncFile?
    var payload = Bench.payload(128)
    /// The concurrent benchmarks' writer threads.
    var gang: WorkerGang?

    func makeLog(_ name: String, sync: Log.SyncMode, segmentSize: Int = 64 << 20,
                 preallocation: Preallocation = .fallocate) throws {
        let dir = Bench.makeTemporaryDirectory("logstore-bench-\(name)")
        directory = dir
        log = try Log.open(
            dir, options: Log.Options(segmentSize: segmentSize, createIfMissing: true, sync: sync,
                                      preallocation: preallocation))
    }

    func tearDown() {
        gang?.stop()
        gang = nil
        try? log?.close()
        log = nil
        raw?.close()
        raw = nil
        if let directory { Bench.removeDirectory(directory) }
        directory = nil
    }
}

/// The record counter the async writers of one iteration claim records from.
final class RecordClaims: Sendable {
    let next = Atomic<Int>(0)
}

/// What each writer thread of a concurrent benchmark calls per record: the log and one 128-byte
/// record, kept in memory allocated once so that the loop allocates nothing.
final class ConcurrentWriter: Sendable {
    let log: Log
    // Unchecked: written once here, only read afterwards (by every writer), freed in deinit.
    nonisolated(unsafe) let record: UnsafeMutableRawBufferPointer

    init(log: Log, payload: [UInt8]) {
        self.log = log
        record = .allocate(byteCount: payload.count, alignment: 16)
        record.copyBytes(from: payload)
    }

    deinit { record.deallocate() }

    @inline(__always)
    func appendAndCommit() throws {
        _ = try log.appendAndCommit(UnsafeRawBufferPointer(record))
    }
}

// `syscalls` is measured where the backend supports it (macOS). ordo-one/benchmark 1.38.1 does
// not produce it on Linux (its Linux stats producer reports `metricSupported(.syscalls) == false`
// and drops the metric), so there that column is left out. (`writeSyscalls` from /proc/self/io
// would work on Linux, but it counts neither msync nor fdatasync nor io_uring submissions, and
// reading it around every iteration costs 16 mallocs that land in the measured window and hide
// the library's own.) The concurrent benchmarks add `voluntaryCtxSwitches` instead, from
// getrusage (no allocation): how often threads blocked, per record.
let ioMetrics: [BenchmarkMetric] = [.syscalls]
let baseMetrics: [BenchmarkMetric] = [.throughput, .wallClock, .mallocCountTotal] + ioMetrics
let voluntaryCtxSwitches = BenchmarkMetric.custom("Voluntary ctx switches", polarity: .prefersSmaller)

/// Whether a log opens with `mode` here, tried in a temporary directory with a 1 MiB segment.
/// `.uring` fails with `syncModeUnavailable` where io_uring is disabled (the library never falls
/// back to another mode); its benchmarks are then not registered, with a note on stderr.
func syncModeWorks(_ mode: Log.SyncMode) -> Bool {
    let directory = Bench.makeTemporaryDirectory("logstore-bench-probe-\(mode.rawValue)")
    defer { Bench.removeDirectory(directory) }
    do {
        let log = try Log.open(directory, options: Log.Options(segmentSize: 1 << 20, createIfMissing: true, sync: mode))
        try log.close()
        return true
    } catch {
        let reason = error.code == .syncModeUnavailable ? "is not available" : "failed to open a log"
        var note = "LogStoreBenchmarks: sync mode \(mode.rawValue) \(reason); its benchmarks are skipped (\(error))\n"
        note.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
        return false
    }
}

let benchmarks: @Sendable () -> Void = {
    /// No allocation on the append path: the p90 of mallocCountTotal per iteration (the raw count,
    /// before any scaling: per 1,000 appends for the hot path and the concurrent benchmarks, per
    /// append + commit for the serial ones) must stay 0. Checked against the files in Thresholds/
    /// (`LogStoreBenchmarks.<benchmark name>.p90.json`, `{"mallocCountTotal": 0}`) by
    ///   swift package --disable-sandbox benchmark thresholds check --filter "Append.*"
    /// (exit status 0 when equal; an allocation per record makes it fail). Only benchmarks with a
    /// file are checked. The uring benchmarks have none: an io_uring sync allocates once (its
    /// result array), so `appendAndCommit` with one writer allocates once per record there.
    let noAllocations: [BenchmarkMetric: BenchmarkThresholds] = [
        .mallocCountTotal: .init(absolute: [.p50: 0, .p90: 0])
    ]

    Benchmark.defaultConfiguration = .init(
        metrics: baseMetrics,
        warmupIterations: 10,
        maxDuration: .seconds(5),
        maxIterations: 5_000
    )

    /// msync, uring (where it opens) and fdatasync, in that order.
    let syncModes: [Log.SyncMode] = [.msync, .uring, .fdatasync].filter { $0 != .uring || syncModeWorks($0) }

    // MARK: Durable serial appends: one record, one commit, per iteration.

    // Every sync mode with the default preallocation (fallocate); and msync with zero-fill, which
    // BENCHMARKS.md ("Preallocation") compares.
    let serialVariants: [(String, Log.SyncMode, Preallocation)] =
        syncModes.map { ($0.rawValue, $0, .fallocate) } + [("msync, zero-fill", .msync, .zeroFill)]
    for (label, mode, preallocation) in serialVariants {
        let fixture = Fixture()
        Benchmark(
            "Append durable serial 128B (\(label))",
            configuration: .init(
                metrics: baseMetrics, timeUnits: .microseconds, maxDuration: .seconds(4), thresholds: noAllocations),
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

    // MARK: Durable concurrent appends: W writer threads, `appendAndCommit` per record.

    // One iteration appends 1,000 records in all, hence `.kilo`: the printed wall clock and
    // throughput are per record (`--scale` prints them per iteration), while the thresholds check
    // compares per-iteration values, so mallocs per 1,000 records. The writers claim records one
    // at a time from a shared counter until the 1,000 are taken, so the work is balanced whatever
    // W is, and each record is one blocking `appendAndCommit` (returns once durable); the library
    // groups concurrent callers into one sync. The W threads are started once, in setup, and woken
    // for every iteration (a condition-variable broadcast, then one wait for the last writer: at
    // most a few hundred µs with 64 threads on 2 cores, against 10-100 ms per iteration), so
    // thread creation and its allocations stay outside the measurement. The last syncs of an
    // iteration cover fewer than W records (the tail), which weighs most at 64 writers (about 16
    // syncs per iteration if every sync took all 64).
    //
    // The wall clock per record is iteration time / 1,000 (inverse throughput), not the latency
    // one writer sees: with W writers that is about W times longer. One writer needs ~80 ms per
    // iteration here (a sync per record); 64 writers ~10 ms.
    let recordsPerIteration = BenchmarkScalingFactor.kilo
    for mode in syncModes {
        for writers in [1, 4, 16, 64] {
            let fixture = Fixture()
            Benchmark(
                "Append durable concurrent 128B (\(mode.rawValue), \(writers) writer\(writers == 1 ? "" : "s"))",
                configuration: .init(
                    metrics: baseMetrics + [voluntaryCtxSwitches], timeUnits: .microseconds, warmupIterations: 2,
                    scalingFactor: recordsPerIteration, maxDuration: .seconds(3), maxIterations: 200,
                    thresholds: noAllocations),
                closure: { benchmark in
                    let gang = fixture.gang!
                    let switches = voluntaryContextSwitches()
                    let failure = gang.run(units: benchmark.scaledIterations.count)
                    let switched = voluntaryContextSwitches() - switches
                    benchmark.stopMeasurement()
                    benchmark.measurement(voluntaryCtxSwitches, switched)
                    if let failure { benchmark.error(failure) }
                },
                setup: {
                    try fixture.makeLog("concurrent-\(mode.rawValue)-\(writers)", sync: mode)
                    // 100k records first: the segment's record-offset index (an array that doubles)
                    // then grows at most twice during the run (at 131,072 and 262,144 records),
                    // instead of in one iteration of every few, which would make mallocs p90 1.
                    // At most 100k + 202 x 1,000 records: no roll in a 64 MiB segment (~419k).
                    try fixture.payload.withUnsafeBytes { bytes in
                        for _ in 0..<100_000 { try fixture.log!.append(bytes) }
                    }
                    try fixture.log!.commit()
                    let writer = ConcurrentWriter(log: fixture.log!, payload: fixture.payload)
                    fixture.gang = WorkerGang(threads: writers) { try writer.appendAndCommit() }
                },
                teardown: { fixture.tearDown() }
            )
        }
    }

    // MARK: Durable concurrent appends through the async API: W tasks, `await append` per record.

    // The same 1,000 records per iteration as above, claimed one at a time by W Swift tasks on
    // the cooperative pool, each awaiting `log.append(_:)` (which returns once its record is
    // durable without holding a thread). No allocation threshold: every suspension allocates a
    // continuation.
    for mode in syncModes {
        for writers in [16, 64] {
            let fixture = Fixture()
            Benchmark(
                "Append durable concurrent async 128B (\(mode.rawValue), \(writers) tasks)",
                configuration: .init(
                    metrics: baseMetrics, timeUnits: .microseconds, warmupIterations: 2,
                    scalingFactor: recordsPerIteration, maxDuration: .seconds(3), maxIterations: 200),
                closure: { benchmark async in
                    let log = fixture.log!
                    let payload = fixture.payload
                    let claims = RecordClaims()
                    let total = benchmark.scaledIterations.count
                    do {
                        try await withThrowingTaskGroup(of: Void.self) { group in
                            for _ in 0..<writers {
                                group.addTask {
                                    while claims.next.add(1, ordering: .relaxed).oldValue < total {
                                        _ = try await log.append(payload)
                                    }
                                }
                            }
                            try await group.waitForAll()
                        }
                    } catch {
                        benchmark.error("\(error)")
                    }
                },
                setup: {
                    try fixture.makeLog("concurrent-async-\(mode.rawValue)-\(writers)", sync: mode)
                },
                teardown: { fixture.tearDown() }
            )
        }
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

    // Every sync mode with the default preallocation (fallocate), and msync with zero-fill.
    let bulkVariants: [(String, Log.SyncMode, Preallocation)] =
        syncModes.map { ($0.rawValue, $0, .fallocate) } + [("msync, zero-fill", .msync, .zeroFill)]
    for (label, mode, preallocation) in bulkVariants {
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
                    try fixture.makeLog("bulk-\(mode.rawValue)", sync: mode, preallocation: preallocation)
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

    // MARK: CRC32C of one 128-byte record: 156 bytes, 4 bytes past an 8-byte boundary, as
    // the append path checksums it.

    do {
        let record = Bench.randomBytes(8 + 156)
        Benchmark(
            "CRC32C 128-byte record",
            configuration: .init(
                // 1,000 records per iteration, so that the harness's own cost per iteration
                // (about 50 ns) does not hide the 12 ns being measured.
                metrics: [.throughput, .wallClock, .mallocCountTotal], timeUnits: .nanoseconds,
                warmupIterations: 10, scalingFactor: .kilo, maxDuration: .seconds(2), maxIterations: 100_000),
            closure: { benchmark in
                record.withUnsafeBytes { bytes in
                    let slice = UnsafeRawBufferPointer(rebasing: bytes[4..<(4 + 156)])
                    var crc: UInt32 = 0
                    for _ in benchmark.scaledIterations { crc = CRC32C.checksum(slice, continuing: crc) }
                    blackHole(crc)
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

    registerReadBenchmarks()
}
