// LogStoreMeasure: every comparison in BENCHMARKS.md, in one process, on one disk.
//
//   swift run -c release LogStoreMeasure [--reps 5] [--records 5000] [--bulk 1000000]
//       [--crc-bytes 4294967296] [--dir /tmp] [--only serial,bulk,crc,prealloc,folio,recovery]
//       [--read-records 1000000] [--scan-bytes 268435456] [--open-gib 10] [--open-dir PATH] [--keep-open-log]
//
// Sections `read`, `scan` and `open` (ReadMeasure.swift) run only when named in --only.
//
// Each repetition runs every variant of a section back to back, in an order that rotates from
// one repetition to the next, so that slow phases of a shared, noisy machine hit all variants
// alike. The summary reports, per variant, the median over the repetitions of each figure.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import BenchSupport
import Dispatch
import Foundation
import LogStore
import Synchronization

/// print, flushed at once (progress stays visible through a pipe to tee).
func say(_ line: String) {
    Swift.print(line)
    fflush(nil)
}

// MARK: - Arguments

struct Settings {
    var reps = 5
    var records = 5_000
    var bulk = 1_000_000
    var crcBytes = 4 << 30
    var dir = "/tmp"
    var sections: Set<String> = ["serial", "bulk", "crc", "prealloc", "folio", "recovery", "concurrent", "tail"]
    var writers = [1, 4, 16, 64]
    var writerKinds = ["threads"]
    var convertAhead = [1 << 20]
    var modes: [Log.SyncMode] = [.msync, .uring, .fdatasync]
    var seconds = 2.0
    var tailRecords = 2_000
    var tailGapMicroseconds: UInt32 = 1_000
    var readRecords = 1_000_000
    var scanBytes = 256 << 20
    var openGiB = 10
    var openDir: String?
    var keepOpenLog = false
    /// Bulk rows whose label contains one of these (all when empty).
    var bulkVariants: [String] = []
}

nonisolated(unsafe) var settings = Settings()  // written once, before anything runs
do {
    var args = CommandLine.arguments.dropFirst()
    func value(_ flag: String) -> String {
        guard let v = args.popFirst() else { fatalError("\(flag) needs a value") }
        return v
    }
    while let arg = args.popFirst() {
        switch arg {
        case "--reps": settings.reps = Int(value(arg))!
        case "--records": settings.records = Int(value(arg))!
        case "--bulk": settings.bulk = Int(value(arg))!
        case "--crc-bytes": settings.crcBytes = Int(value(arg))!
        case "--dir": settings.dir = value(arg)
        case "--writers": settings.writers = value(arg).split(separator: ",").map { Int($0)! }
        case "--writer-kinds": settings.writerKinds = value(arg).split(separator: ",").map(String.init)
        case "--convert-ahead": settings.convertAhead = value(arg).split(separator: ",").map { Int($0)! }
        case "--modes": settings.modes = value(arg).split(separator: ",").map { Log.SyncMode(rawValue: String($0))! }
        case "--seconds": settings.seconds = Double(value(arg))!
        case "--tail-reader":
            let directory = value(arg)
            do { try runTailReader(directory: directory, count: Int(value(arg))!) } catch { fatalError("\(error)") }
        case "--tail-records": settings.tailRecords = Int(value(arg))!
        case "--tail-gap-us": settings.tailGapMicroseconds = UInt32(value(arg))!
        case "--read-records": settings.readRecords = Int(value(arg))!
        case "--scan-bytes": settings.scanBytes = Int(value(arg))!
        case "--open-gib": settings.openGiB = Int(value(arg))!
        case "--open-dir": settings.openDir = value(arg)
        case "--keep-open-log": settings.keepOpenLog = true
        case "--bulk-variants": settings.bulkVariants = value(arg).split(separator: "|").map(String.init)
        case "--only": settings.sections = Set(value(arg).split(separator: ",").map(String.init))
        case "-h", "--help":
            say("usage: LogStoreMeasure [--reps N] [--records N] [--bulk N] [--crc-bytes N] [--dir PATH] "
                + "[--only serial,bulk,crc,prealloc,folio,recovery,concurrent,tail,read,scan,open] [--writers 1,4,16,64] [--writer-kinds threads,tasks] [--convert-ahead 0,1048576] "
                + "[--modes msync,uring,fdatasync] [--seconds S] [--tail-records N] [--tail-gap-us N] "
                + "[--read-records N] [--scan-bytes N] [--open-gib N] [--open-dir PATH] [--keep-open-log] "
                + "[--bulk-variants 'label part|label part']")
            exit(0)
        default: fatalError("unknown argument \(arg)")
        }
    }
}

let payload = Bench.payload(128)
let device = DeviceWriteCounter(path: settings.dir)

// MARK: - Formatting

func fmt(_ value: Double, _ decimals: Int = 1) -> String {
    guard value.isFinite else { return "n/a" }
    var s = String(Int((abs(value) * pow(10, Double(decimals))).rounded()))
    if decimals > 0 {
        while s.count <= decimals { s = "0" + s }
        s.insert(".", at: s.index(s.endIndex, offsetBy: -decimals))
    }
    return value < 0 ? "-" + s : s
}

func grouped(_ value: Double) -> String {
    guard value.isFinite else { return "n/a" }
    let digits = String(Int(value.rounded()))
    var out = ""
    for (i, c) in digits.reversed().enumerated() {
        if i > 0 && i % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return String(out.reversed())
}

func us(_ ns: UInt64) -> Double { Double(ns) / 1_000 }
func ms(_ ns: UInt64) -> Double { Double(ns) / 1_000_000 }

func rotated<T>(_ items: [T], by n: Int) -> [T] {
    let k = n % items.count
    return Array(items[k...] + items[..<k])
}

// MARK: - Durable serial

/// One durable-serial run: records/s, per-record latency percentiles (µs), and the bytes the
/// disk wrote per record while it ran (device-wide).
struct SerialResult {
    var recordsPerSecond: Double
    var p50: Double
    var p99: Double
    var max: Double
    var kibPerRecord: Double
}

func summarize(latencies: [UInt64], total: UInt64, deviceBytes: UInt64?) -> SerialResult {
    let sorted = latencies.sorted()
    return SerialResult(
        recordsPerSecond: Double(latencies.count) / (Double(total) / 1e9),
        p50: us(Bench.percentile(sorted, 0.50)), p99: us(Bench.percentile(sorted, 0.99)), max: us(sorted.last!),
        kibPerRecord: deviceBytes.map { Double($0) / 1024 / Double(latencies.count) } ?? .nan)
}

/// append(128 B) + commit, `count` times, on a fresh log (creating it is not timed). The
/// latency of one record is append + commit, like the raw loop's pwrite + fdatasync.
func runDurableSerial(sync: Log.SyncMode, preallocation: Preallocation, convertAhead: Bool = true, count: Int) throws
    -> SerialResult
{
    let dir = Bench.makeTemporaryDirectory("logstore-measure-serial", base: settings.dir)
    defer { Bench.removeDirectory(dir) }
    var options = Log.Options(createIfMissing: true, sync: sync, preallocation: preallocation)
    if !convertAhead { options.convertAheadBytes = 0 }
    let log = try Log.open(dir, options: options)
    var latencies = [UInt64](repeating: 0, count: count)
    let written = device.bytesWritten()
    let start = Bench.now()
    try payload.withUnsafeBytes { bytes in
        for i in 0..<count {
            let t0 = Bench.now()
            try log.append(bytes)
            try log.commit()
            latencies[i] = Bench.now() - t0
        }
    }
    let total = Bench.now() - start
    let deviceBytes = device.bytesWritten().flatMap { end in written.map { end - $0 } }
    try log.close()
    return summarize(latencies: latencies, total: total, deviceBytes: deviceBytes)
}

/// pwrite(128 B) + fdatasync, `count` times, on a preallocated, zero-filled (in pwrites of
/// `fillChunk` bytes), fsync'd 64 MiB file.
func runRaw(count: Int, fillChunk: Int = 1 << 20) -> SerialResult {
    let dir = Bench.makeTemporaryDirectory("logstore-measure-raw", base: settings.dir)
    defer { Bench.removeDirectory(dir) }
    let raw = RawSyncFile(directory: dir, fillChunk: fillChunk)
    defer { raw.close() }
    var latencies = [UInt64](repeating: 0, count: count)
    let written = device.bytesWritten()
    let start = Bench.now()
    payload.withUnsafeBytes { bytes in
        for i in 0..<count {
            let t0 = Bench.now()
            raw.writeAndSync(bytes)
            latencies[i] = Bench.now() - t0
        }
    }
    let total = Bench.now() - start
    let deviceBytes = device.bytesWritten().flatMap { end in written.map { end - $0 } }
    return summarize(latencies: latencies, total: total, deviceBytes: deviceBytes)
}

// MARK: - Bulk

struct BulkResult {
    var append: Double
    var total: Double
    var commitMS: Double
}

/// `count` appends then one commit on a fresh log (creating it is not timed).
func runBulk(count: Int, segmentSize: Int, preallocation: Preallocation, writeBehindBytes: Int,
             prefaultAheadBytes: Int) throws -> BulkResult {
    let dir = Bench.makeTemporaryDirectory("logstore-measure-bulk", base: settings.dir)
    defer { Bench.removeDirectory(dir) }
    var options = Log.Options(segmentSize: segmentSize, createIfMissing: true, sync: .msync,
                              preallocation: preallocation, writeBehindBytes: writeBehindBytes)
    options.prefaultAheadBytes = prefaultAheadBytes
    let log = try Log.open(dir, options: options)
    let start = Bench.now()
    try payload.withUnsafeBytes { bytes in
        for _ in 0..<count { try log.append(bytes) }
    }
    let appended = Bench.now()
    try log.commit()
    let committed = Bench.now()
    try log.close()
    return BulkResult(
        append: Double(count) / (Double(appended - start) / 1e9),
        total: Double(count) / (Double(committed - start) / 1e9), commitMS: ms(committed - appended))
}

/// One row of the bulk section: LogStore with some options, or the same bytes without it.
enum BulkVariant {
    case logStore(segmentSize: Int, preallocation: Preallocation, writeBehindBytes: Int, prefaultAheadBytes: Int)
    case rawMapped
    case rawPwrite
}

/// sync_file_range(2) with SYNC_FILE_RANGE_WRITE (2): a GNU extension Glibc's module does not
/// export, and LogStore's shim target is not a product.
@_silgen_name("sync_file_range")
func logstore_bench_sync_file_range(_ fd: Int32, _ offset: Int64, _ length: Int64, _ flags: UInt32) -> Int32

func logstore_bench_start_writeback(_ fd: Int32, _ offset: Int64, _ length: Int64) -> Int32 {
    logstore_bench_sync_file_range(fd, offset, length, 2)
}

/// The disk's ceiling for a bulk load, without LogStore: the same bytes (`recordBytes` per
/// record, header included) into fresh 64 MiB files preallocated like segments (fallocate,
/// fsync'd, not timed). With `mapped`, each record is copied into a MAP_SHARED mapping, with
/// sync_file_range every 4 MiB and one msync at the end, as LogStore does but with no header,
/// CRC, lock or index; else pwrite of 1 MiB buffers, then fdatasync of each file.
func runRawBulk(count: Int, recordBytes: Int, mapped: Bool) -> BulkResult {
    let dir = Bench.makeTemporaryDirectory("logstore-measure-rawbulk", base: settings.dir)
    defer { Bench.removeDirectory(dir) }
    let fileSize = 64 << 20
    let total = count * recordBytes
    let fileCount = (total + fileSize - 1) / fileSize
    var fds: [Int32] = []
    for index in 0..<fileCount {
        let fd = open(dir + "/raw-\(index)", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        precondition(fd >= 0 && posix_fallocate(fd, 0, off_t(fileSize)) == 0 && fsync(fd) == 0)
        fds.append(fd)
    }
    defer { fds.forEach { _ = close($0) } }
    let record = Bench.payload(recordBytes)
    let start: UInt64
    let appended: UInt64
    if mapped {
        let bases = fds.map { fd -> UnsafeMutableRawPointer in
            let base = mmap(nil, fileSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
            precondition(base != MAP_FAILED)
            return base!
        }
        defer { bases.forEach { munmap($0, fileSize) } }
        start = Bench.now()
        record.withUnsafeBytes { source in
            var file = 0
            var offset = 0
            var started = 0
            for _ in 0..<count {
                if offset + recordBytes > fileSize { file += 1; offset = 0; started = 0 }
                (bases[file] + offset).copyMemory(from: source.baseAddress!, byteCount: recordBytes)
                offset += recordBytes
                let complete = offset / 4096 * 4096
                if complete - started >= 4 << 20 {
                    _ = logstore_bench_start_writeback(fds[file], Int64(started), Int64(complete - started))
                    started = complete
                }
            }
        }
        appended = Bench.now()
        var left = total
        for base in bases {
            let length = (min(left, fileSize) + 4095) / 4096 * 4096
            precondition(msync(base, length, MS_SYNC) == 0)
            left -= min(left, fileSize)
        }
    } else {
        let chunk = [UInt8](repeating: 0xA5, count: 1 << 20)
        start = Bench.now()
        chunk.withUnsafeBytes { buffer in
            var left = total
            for fd in fds {
                var offset = 0
                while left > 0, offset < fileSize {
                    let length = min(buffer.count, left, fileSize - offset)
                    precondition(pwrite(fd, buffer.baseAddress, length, off_t(offset)) == length)
                    offset += length
                    left -= length
                }
            }
        }
        appended = Bench.now()
        for fd in fds { precondition(fdatasync(fd) == 0) }
    }
    let committed = Bench.now()
    return BulkResult(
        append: Double(count) / (Double(appended - start) / 1e9),
        total: Double(count) / (Double(committed - start) / 1e9), commitMS: ms(committed - appended))
}

// MARK: - Durable concurrent

/// `writers` writers, each appending a 128-byte record and waiting until it is durable, for
/// `seconds`: durable records/s, and the p50/p99 of append+commit in microseconds. The writers
/// are threads calling `appendAndCommit`, or with `tasks` Swift tasks on the cooperative pool,
/// each `try await log.append(_:)` (returns once durable).
func runConcurrent(mode: Log.SyncMode, writers: Int, seconds: Double, convertAhead: Int, tasks: Bool) throws
    -> (Double, Double, Double)
{
    let dir = Bench.makeTemporaryDirectory("logstore-measure-concurrent", base: settings.dir)
    defer { Bench.removeDirectory(dir) }
    var options = Log.Options(createIfMissing: true, sync: mode)
    options.convertAheadBytes = convertAhead
    let log = try Log.open(dir, options: options)
    final class Shared: Sendable {
        let stop = Atomic<Bool>(false)
        let latencies = Mutex<[UInt64]>([])
    }
    let shared = Shared()
    let group = DispatchGroup()
    let start = Bench.now()
    let record = payload
    if tasks {
        group.enter()
        Task {
            await withTaskGroup(of: Void.self) { tasks in
                for _ in 0..<writers {
                    tasks.addTask {
                        var mine: [UInt64] = []
                        mine.reserveCapacity(200_000)
                        while !shared.stop.load(ordering: .relaxed) {
                            let t0 = Bench.now()
                            _ = try! await log.append(record)
                            mine.append(Bench.now() - t0)
                        }
                        shared.latencies.withLock { [mine] in $0.append(contentsOf: mine) }
                    }
                }
            }
            group.leave()
        }
    } else {
        for _ in 0..<writers {
            group.enter()
            Thread {
                var mine: [UInt64] = []
                mine.reserveCapacity(200_000)
                record.withUnsafeBytes { bytes in
                    while !shared.stop.load(ordering: .relaxed) {
                        let t0 = Bench.now()
                        try! log.appendAndCommit(bytes)
                        mine.append(Bench.now() - t0)
                    }
                }
                shared.latencies.withLock { $0.append(contentsOf: mine) }
                group.leave()
            }.start()
        }
    }
    Thread.sleep(forTimeInterval: seconds)
    shared.stop.store(true, ordering: .relaxed)
    group.wait()
    let total = Bench.now() - start
    try log.close()
    let sorted = shared.latencies.withLock { $0.sorted() }
    return (Double(sorted.count) / (Double(total) / 1e9), us(Bench.percentile(sorted, 0.5)),
            us(Bench.percentile(sorted, 0.99)))
}

/// Durable serial variants interleaved in blocks of `block` records, so that the machine's
/// drift hits all of them alike: per variant, records/s over its own blocks and p50/p99.
func runSerialInterleaved(count: Int, block: Int) throws {
    enum Target { case raw(RawSyncFile), log(Log) }
    var targets: [(String, Target, String)] = []
    func logTarget(_ label: String, _ configure: (inout Log.Options) -> Void) throws {
        let dir = Bench.makeTemporaryDirectory("logstore-measure-serial", base: settings.dir)
        var options = Log.Options(createIfMissing: true, sync: .msync)
        configure(&options)
        targets.append((label, .log(try Log.open(dir, options: options)), dir))
    }
    let rawDir = Bench.makeTemporaryDirectory("logstore-measure-raw", base: settings.dir)
    targets.append(("raw pwrite+fdatasync (4 KiB fill)", .raw(RawSyncFile(directory: rawDir, fillChunk: 4096)), rawDir))
    let rawDir2 = Bench.makeTemporaryDirectory("logstore-measure-raw", base: settings.dir)
    targets.append(("raw pwrite+fdatasync (1 MiB fill)", .raw(RawSyncFile(directory: rawDir2)), rawDir2))
    try logTarget("msync default", { _ in })
    try logTarget("msync, convertAheadBytes 0", { $0.convertAheadBytes = 0 })
    try logTarget("msync, zero-fill", { $0.preallocation = .zeroFill })
    var latencies = [[UInt64]](repeating: [], count: targets.count)
    var spent = [UInt64](repeating: 0, count: targets.count)
    try payload.withUnsafeBytes { bytes in
        for round in 0..<(count / block) {
            for k in 0..<targets.count {
                let i = (k + round) % targets.count
                let start = Bench.now()
                for _ in 0..<block {
                    let t0 = Bench.now()
                    switch targets[i].1 {
                    case .raw(let file): file.writeAndSync(bytes)
                    case .log(let log): try log.appendAndCommit(bytes)
                    }
                    latencies[i].append(Bench.now() - t0)
                }
                spent[i] += Bench.now() - start
            }
        }
    }
    let rawRate = Double(latencies[0].count) / (Double(spent[0]) / 1e9)
    for (i, (label, target, dir)) in targets.enumerated() {
        let sorted = latencies[i].sorted()
        let rate = Double(sorted.count) / (Double(spent[i]) / 1e9)
        say("\(label): \(grouped(rate)) records/s (\(fmt(rate / rawRate, 2))x raw 4K), p50 \(fmt(us(Bench.percentile(sorted, 0.5)))) us, "
            + "p99 \(fmt(us(Bench.percentile(sorted, 0.99)))) us")
        switch target {
        case .raw(let file): file.close()
        case .log(let log): try log.close()
        }
        Bench.removeDirectory(dir)
    }
}

// MARK: - Page-cache folio diagnostic

/// No LogStore here: a 64 MiB file prepared one way, then `count` x (memcpy 160 B into a shared
/// mapping + msync of the touched pages) — what a LogStore msync commit does. Shows how the
/// way a file was zero-filled decides how much every later msync writes.
func runMappedSync(zeroChunk: Int?, dropCache: Bool, count: Int) -> SerialResult {
    let dir = Bench.makeTemporaryDirectory("logstore-measure-folio", base: settings.dir)
    defer { Bench.removeDirectory(dir) }
    let size = 64 << 20
    let path = dir + "/file"
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    precondition(fd >= 0)
    defer { close(fd) }
    precondition(posix_fallocate(fd, 0, off_t(size)) == 0)
    if let zeroChunk {
        let zeros = [UInt8](repeating: 0, count: zeroChunk)
        zeros.withUnsafeBytes { z in
            var offset = 0
            while offset < size {
                precondition(pwrite(fd, z.baseAddress, zeroChunk, off_t(offset)) == zeroChunk)
                offset += zeroChunk
            }
        }
    }
    precondition(fsync(fd) == 0)
    if dropCache { _ = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) }
    let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)!
    precondition(base != MAP_FAILED)
    defer { munmap(base, size) }
    let record = Bench.payload(160)
    var latencies = [UInt64](repeating: 0, count: count)
    var offset = 4096
    let written = device.bytesWritten()
    let start = Bench.now()
    record.withUnsafeBytes { r in
        for i in 0..<count {
            let t0 = Bench.now()
            (base + offset).copyMemory(from: r.baseAddress!, byteCount: r.count)
            let first = offset & ~4095
            let end = (offset + r.count + 4095) & ~4095
            precondition(msync(base + first, end - first, MS_SYNC) == 0)
            latencies[i] = Bench.now() - t0
            offset += r.count
        }
    }
    let total = Bench.now() - start
    let deviceBytes = device.bytesWritten().flatMap { end in written.map { end - $0 } }
    return summarize(latencies: latencies, total: total, deviceBytes: deviceBytes)
}

// MARK: - Run

func machineLine() -> String {
    var u = utsname()
    uname(&u)
    let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
    return "cpus online: \(sysconf(Int32(_SC_NPROCESSORS_ONLN))), kernel \(release), dir \(settings.dir) "
        + "(device stats: \(device.statPath ?? "none")), CRC32C hardware: \(CRC32C.isHardwareAccelerated)"
}

say("LogStoreMeasure: \(settings.reps) repetitions; \(machineLine())")
var summary: [String] = []

func serialLine(_ label: String, _ r: SerialResult) -> String {
    "\(label): \(grouped(r.recordsPerSecond)) records/s, p50 \(fmt(r.p50)) µs, p99 \(fmt(r.p99)) µs, "
        + "max \(fmt(r.max)) µs, \(fmt(r.kibPerRecord)) KiB written/record"
}

// (a) + (b) + (e, latency part): durable serial vs raw.
if settings.sections.contains("serial") {
    say("\n== durable serial, \(settings.records) x 128 B, one append + commit per record ==")
    // The baseline (ratios) is the raw loop on a file zero-filled in 1 MiB pwrites, as in the
    // first version of this file; the second raw variant fills it in 4 KiB pwrites instead.
    let raw = "raw pwrite+fdatasync (zero-filled file)"
    let raw4K = "raw pwrite+fdatasync (file zero-filled in 4 KiB pwrites)"
    let noConvertAhead = "LogStore msync, fallocate, convertAheadBytes 0"
    let variants: [(String, Log.SyncMode?, Preallocation)] = [
        (raw, nil, .fallocate),
        (raw4K, nil, .zeroFill),
        ("LogStore msync, fallocate (default)", .msync, .fallocate),
        ("LogStore fdatasync, fallocate", .fdatasync, .fallocate),
        (noConvertAhead, .msync, .fallocate),
        ("LogStore msync, zero-fill", .msync, .zeroFill),
        ("LogStore fdatasync, zero-fill", .fdatasync, .zeroFill),
    ]
    var results: [String: [SerialResult]] = [:]
    for rep in 0..<settings.reps {
        for (label, sync, preallocation) in rotated(variants, by: rep) {
            let r = try sync.map {
                try runDurableSerial(sync: $0, preallocation: preallocation, convertAhead: label != noConvertAhead,
                                     count: settings.records)
            }
                ?? runRaw(count: settings.records, fillChunk: label == raw4K ? 4096 : 1 << 20)
            results[label, default: []].append(r)
            say(serialLine("rep \(rep + 1) \(label)", r))
        }
    }
    summary.append("Durable serial: \(settings.records) records of 128 B, one append + commit each (latency = append + commit).")
    summary.append("")
    summary.append("| Variant | records/s | p50 µs | p99 µs | KiB written per record | records/s ratio to raw |")
    summary.append("|---|---:|---:|---:|---:|---:|")
    let rawRates = results[raw]!.map(\.recordsPerSecond)
    for (label, _, _) in variants {
        let rs = results[label]!
        let ratios = zip(rs, rawRates).map { $0.recordsPerSecond / $1 }
        summary.append("| \(label) | \(grouped(Bench.median(rs.map(\.recordsPerSecond)))) | "
            + "\(fmt(Bench.median(rs.map(\.p50)))) | \(fmt(Bench.median(rs.map(\.p99)))) | "
            + "\(fmt(Bench.median(rs.map(\.kibPerRecord)))) | \(fmt(Bench.median(ratios), 2))x |")
    }
    summary.append("")
    for (label, _, _) in variants.dropFirst() {
        let ratios = zip(results[label]!, rawRates).map { $0.recordsPerSecond / $1 }
        summary.append("- \(label) / raw, per repetition: " + ratios.map { fmt($0, 2) }.joined(separator: ", "))
    }
    summary.append("")
}

// (c): bulk.
if settings.sections.contains("bulk") {
    say("\n== bulk: \(grouped(Double(settings.bulk))) x 128 B appends, then one commit (msync) ==")
    let writeBehind = Log.Options().writeBehindBytes
    let prefault = Log.Options().prefaultAheadBytes
    let variants: [(String, BulkVariant)] = [
        ("64 MiB segments, fallocate, write-behind 4 MiB, prefault 16 MiB (the default; 2 rolls)",
         .logStore(segmentSize: 64 << 20, preallocation: .fallocate, writeBehindBytes: writeBehind,
                   prefaultAheadBytes: prefault)),
        ("64 MiB segments, fallocate, write-behind 4 MiB, prefault off (2 rolls)",
         .logStore(segmentSize: 64 << 20, preallocation: .fallocate, writeBehindBytes: writeBehind,
                   prefaultAheadBytes: 0)),
        ("256 MiB segment, fallocate (no roll)",
         .logStore(segmentSize: 256 << 20, preallocation: .fallocate, writeBehindBytes: writeBehind,
                   prefaultAheadBytes: prefault)),
        ("64 MiB segments, fallocate, write-behind off (2 rolls)",
         .logStore(segmentSize: 64 << 20, preallocation: .fallocate, writeBehindBytes: 0,
                   prefaultAheadBytes: prefault)),
        ("64 MiB segments, zero-fill (2 rolls)",
         .logStore(segmentSize: 64 << 20, preallocation: .zeroFill, writeBehindBytes: writeBehind,
                   prefaultAheadBytes: prefault)),
        // The disk's ceiling for the same bytes (160 per record, header included), without LogStore.
        ("raw: same bytes, mmap copy + sync_file_range per 4 MiB + msync (no header, CRC, lock)", .rawMapped),
        ("raw: same bytes, pwrite of 1 MiB buffers + fdatasync", .rawPwrite),
    ]
    let footprint = 160
    var results: [String: [BulkResult]] = [:]
    for rep in 0..<settings.reps {
        for (label, variant) in rotated(variants, by: rep) {
            if !settings.bulkVariants.isEmpty, !settings.bulkVariants.contains(where: { label.contains($0) }) { continue }
            let r: BulkResult
            switch variant {
            case let .logStore(size, preallocation, writeBehindBytes, prefaultAheadBytes):
                r = try runBulk(count: settings.bulk, segmentSize: size, preallocation: preallocation,
                                writeBehindBytes: writeBehindBytes, prefaultAheadBytes: prefaultAheadBytes)
            case .rawMapped: r = runRawBulk(count: settings.bulk, recordBytes: footprint, mapped: true)
            case .rawPwrite: r = runRawBulk(count: settings.bulk, recordBytes: footprint, mapped: false)
            }
            results[label, default: []].append(r)
            say("rep \(rep + 1) \(label): appends \(grouped(r.append)) records/s, append+commit "
                + "\(grouped(r.total)) records/s, commit \(fmt(r.commitMS)) ms")
        }
    }
    summary.append("Bulk: \(grouped(Double(settings.bulk))) appends of 128 B, then one msync commit.")
    summary.append("")
    summary.append("| Variant | append only, records/s | append + commit, records/s | commit ms |")
    summary.append("|---|---:|---:|---:|")
    for (label, _) in variants {
        guard let rs = results[label] else { continue }
        summary.append("| \(label) | \(grouped(Bench.median(rs.map(\.append)))) | "
            + "\(grouped(Bench.median(rs.map(\.total)))) | \(fmt(Bench.median(rs.map(\.commitMS)))) |")
    }
    summary.append("")
}

// (d): CRC32C.
if settings.sections.contains("crc") {
    say("\n== CRC32C, 64 KiB buffers, \(settings.crcBytes >> 20) MiB per repetition ==")
    let buffer = Bench.randomBytes(64 << 10)
    var hardware: [Double] = []
    var portable: [Double] = []
    var sink: UInt32 = 0
    buffer.withUnsafeBytes { bytes in
        for _ in 0..<1_000 { sink &+= CRC32C.checksum(bytes) }
        let iterations = max(settings.crcBytes / bytes.count, 1)
        for rep in 0..<settings.reps {
            var t0 = Bench.now()
            for _ in 0..<iterations { sink &+= CRC32C.checksum(bytes) }
            var elapsed = Bench.now() - t0
            hardware.append(Double(iterations * bytes.count) / Double(elapsed))
            let portableIterations = max(iterations / 16, 1)
            t0 = Bench.now()
            for _ in 0..<portableIterations { sink &+= CRC32C.portableChecksum(bytes) }
            elapsed = Bench.now() - t0
            portable.append(Double(portableIterations * bytes.count) / Double(elapsed))
            say("rep \(rep + 1): CRC32C.checksum \(fmt(hardware.last!, 2)) GB/s, "
                + "portableChecksum \(fmt(portable.last!, 2)) GB/s")
        }
    }
    // A 128-byte record's CRC covers 156 bytes starting 4 bytes into its 8-aligned header:
    // the size the append path checksums, where latency rather than bandwidth counts.
    let record = Bench.randomBytes(8 + 156)
    var recordNanoseconds: [Double] = []
    record.withUnsafeBytes { bytes in
        let slice = UnsafeRawBufferPointer(rebasing: bytes[4..<(4 + 156)])
        let iterations = 10_000_000
        for rep in 0..<settings.reps {
            let t0 = Bench.now()
            // Each call continues from the last, so the calls cannot overlap: this times the
            // dependency chain, as in an append, not the instruction throughput.
            for _ in 0..<iterations { sink = CRC32C.checksum(slice, continuing: sink) }
            recordNanoseconds.append(Double(Bench.now() - t0) / Double(iterations))
            say("rep \(rep + 1): CRC32C.checksum of a record (156 bytes at +4) \(fmt(recordNanoseconds.last!, 1)) ns")
        }
    }
    say("(checksum sink \(sink))")
    summary.append("| CRC32C of a 128-byte record (156 bytes, 4 bytes past an 8-byte boundary) | ns per record |")
    summary.append("|---|---:|")
    summary.append("| CRC32C.checksum | \(fmt(Bench.median(recordNanoseconds), 1)) |")
    summary.append("")
    summary.append("| CRC32C over 64 KiB buffers | GB/s (10^9 B/s) |")
    summary.append("|---|---:|")
    summary.append("| CRC32C.checksum (SSE4.2: \(CRC32C.isHardwareAccelerated)) | \(fmt(Bench.median(hardware), 2)) |")
    summary.append("| CRC32C.portableChecksum (slicing-by-8 table) | \(fmt(Bench.median(portable), 2)) |")
    summary.append("")
}

// (e): preallocation: the cost of creating a 64 MiB segment each way.
if settings.sections.contains("prealloc") {
    say("\n== preallocation: creating a 64 MiB segment ==")
    let modes: [Preallocation] = [.zeroFill, .fallocate]
    var openNew: [Preallocation: [Double]] = [:]
    var rawCreate: [Preallocation: [Double]] = [:]
    for rep in 0..<settings.reps {
        for mode in rotated(modes, by: rep) {
            // Log.open of a new log: directory, lock, Segment.create, map, recovery scan, close.
            let dir = Bench.makeTemporaryDirectory("logstore-measure-create", base: settings.dir)
            let t0 = Bench.now()
            let log = try Log.open(dir, options: Log.Options(createIfMissing: true, preallocation: mode))
            let opened = Bench.now() - t0
            try log.close()
            Bench.removeDirectory(dir)
            openNew[mode, default: []].append(ms(opened))

            // The steps of Segment.create alone, with raw system calls.
            let dir2 = Bench.makeTemporaryDirectory("logstore-measure-create-raw", base: settings.dir)
            let created = Bench.createSegmentLikeFile(
                directory: dir2, name: "00000000000000000001.seg", size: 64 << 20, zeroFill: mode == .zeroFill)
            Bench.removeDirectory(dir2)
            rawCreate[mode, default: []].append(ms(created))
            say("rep \(rep + 1) \(mode.rawValue): Log.open of a new log \(fmt(ms(opened))) ms; "
                + "segment-create system calls \(fmt(ms(created))) ms")
        }
    }
    summary.append("| Preallocation | Log.open creating a new log, ms | Segment.create's system calls alone, ms |")
    summary.append("|---|---:|---:|")
    for mode in modes {
        summary.append("| \(mode.rawValue) | \(fmt(Bench.median(openNew[mode]!))) | \(fmt(Bench.median(rawCreate[mode]!))) |")
    }
    summary.append("")
}

// Diagnostic for (e): mmap + msync cost against how the file was filled.
if settings.sections.contains("folio") {
    let count = max(settings.records / 5, 200)
    say("\n== diagnostic: mmap write + msync on a 64 MiB file, by how it was filled (\(count) records of 160 B) ==")
    let variants: [(String, Int?, Bool)] = [
        ("fallocate only (unwritten extents)", nil, false),
        ("zero-filled in 4 KiB pwrites (what .zeroFill does now)", 4 << 10, false),
        ("zero-filled in 64 KiB pwrites", 64 << 10, false),
        ("zero-filled in 1 MiB pwrites (what .zeroFill did before)", 1 << 20, false),
        ("zero-filled in 1 MiB pwrites, then POSIX_FADV_DONTNEED", 1 << 20, true),
    ]
    var results: [String: [SerialResult]] = [:]
    for rep in 0..<settings.reps {
        for (label, chunk, drop) in rotated(variants, by: rep) {
            let r = runMappedSync(zeroChunk: chunk, dropCache: drop, count: count)
            results[label, default: []].append(r)
            say(serialLine("rep \(rep + 1) \(label)", r))
        }
    }
    summary.append("| File prepared by (then fsync) | memcpy + msync p50 µs | p99 µs | KiB written per msync |")
    summary.append("|---|---:|---:|---:|")
    for (label, _, _) in variants {
        let rs = results[label]!
        summary.append("| \(label) | \(fmt(Bench.median(rs.map(\.p50)))) | \(fmt(Bench.median(rs.map(\.p99)))) | "
            + "\(fmt(Bench.median(rs.map(\.kibPerRecord)))) |")
    }
    summary.append("")
}

// Recovery: reopening a cleanly closed log of 100,000 records of 128 B (one 64 MiB segment).
if settings.sections.contains("recovery") {
    say("\n== recovery: open a closed log of 100,000 x 128 B records ==")
    let dir = Bench.makeTemporaryDirectory("logstore-measure-recovery", base: settings.dir)
    defer { Bench.removeDirectory(dir) }
    do {
        let log = try Log.open(dir, options: Log.Options(createIfMissing: true))
        try payload.withUnsafeBytes { bytes in
            for _ in 0..<100_000 { try log.append(bytes) }
        }
        try log.close()
    }
    var writer: [Double] = []
    var reader: [Double] = []
    for rep in 0..<settings.reps {
        for _ in 0..<3 {
            var t0 = Bench.now()
            let log = try Log.open(dir)
            writer.append(ms(Bench.now() - t0))
            precondition(log.writtenLSN == 100_000)
            try log.close()
            t0 = Bench.now()
            let readOnly = try Log.openReadOnly(dir)
            reader.append(ms(Bench.now() - t0))
            try readOnly.close()
        }
        say("rep \(rep + 1): Log.open \(writer.suffix(3).map { fmt($0, 2) }.joined(separator: ", ")) ms; "
            + "Log.openReadOnly \(reader.suffix(3).map { fmt($0, 2) }.joined(separator: ", ")) ms")
    }
    summary.append("| Open a closed log of 100,000 records (one 64 MiB segment) | ms (median of \(writer.count)) |")
    summary.append("|---|---:|")
    summary.append("| Log.open (writer: scan, recovery, lock) | \(fmt(Bench.median(writer), 2)) |")
    summary.append("| Log.openReadOnly | \(fmt(Bench.median(reader), 2)) |")
    summary.append("")
}

// (f): group commit: W threads, each appending one record and waiting until it is durable.
if settings.sections.contains("interleaved") {
    for rep in 0..<settings.reps {
        say("\n== durable serial, interleaved in blocks of 100, \(settings.records) x 128 B each, rep \(rep + 1) ==")
        try runSerialInterleaved(count: settings.records, block: 100)
    }
}

if settings.sections.contains("concurrent") {
    say("\n== durable-concurrent: W writers x (append 128 B + commit) for \(settings.seconds) s ==")
    var results: [String: [(Double, Double, Double)]] = [:]
    for rep in 0..<settings.reps {
        for mode in settings.modes {
            for kind in settings.writerKinds {
                for convertAhead in settings.convertAhead {
                    for writers in settings.writers {
                        let r = try runConcurrent(mode: mode, writers: writers, seconds: settings.seconds,
                                                  convertAhead: convertAhead, tasks: kind == "tasks")
                        let key = "| \(mode.rawValue) | \(kind) | \(convertAhead) | \(writers) |"
                        results[key, default: []].append(r)
                        say("rep \(rep + 1) \(key) \(grouped(r.0)) records/s, p50 \(fmt(r.1)) us, p99 \(fmt(r.2)) us")
                    }
                }
            }
        }
    }
    summary.append("| Mode | writers are | convertAheadBytes | writers | durable records/s | p50 us | p99 us |")
    summary.append("|---|---|---:|---:|---:|---:|---:|")
    for mode in settings.modes {
        for kind in settings.writerKinds {
            for convertAhead in settings.convertAhead {
                for writers in settings.writers {
                    let key = "| \(mode.rawValue) | \(kind) | \(convertAhead) | \(writers) |"
                    let rs = results[key]!
                    summary.append("\(key) \(grouped(Bench.median(rs.map(\.0)))) | "
                        + "\(fmt(Bench.median(rs.map(\.1)))) | \(fmt(Bench.median(rs.map(\.2)))) |")
                }
            }
        }
    }
    summary.append("")
}

// Tail latency to a follower in another process (LogFollower, woken through DURABLE).
if settings.sections.contains("tail") {
    say("\n== tail: \(settings.tailRecords) x (append 128 B + commit), \(settings.tailGapMicroseconds) us apart, "
        + "followed by another process ==")
    var results: [String: [TailResult]] = [:]
    for rep in 0..<settings.reps {
        for mode in rotated(settings.modes, by: rep) {
            let r = try runTailLatency(count: settings.tailRecords, gapMicroseconds: settings.tailGapMicroseconds, mode: mode)
            results[mode.rawValue, default: []].append(r)
            say("rep \(rep + 1) \(mode.rawValue): durable->reader p50 \(fmt(r.p50)) us, p99 \(fmt(r.p99)) us, "
                + "max \(fmt(r.max)) us; append->reader p50 \(fmt(r.appendP50)) us, p99 \(fmt(r.appendP99)) us; "
                + "append+commit p50 \(fmt(r.commitP50)) us, p99 \(fmt(r.commitP99)) us")
        }
    }
    summary.append("Tail latency to a LogFollower in another process (arrival minus the return of commit(); "
        + "negative: it arrived first):")
    summary.append("")
    summary.append("| Mode | durable->reader p50 us | p99 us | max us | append->reader p50 us | p99 us | append+commit p50 us | p99 us |")
    summary.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for mode in settings.modes {
        let rs = results[mode.rawValue]!
        summary.append("| \(mode.rawValue) | \(fmt(Bench.median(rs.map(\.p50)))) | \(fmt(Bench.median(rs.map(\.p99)))) | "
            + "\(fmt(Bench.median(rs.map(\.max)))) | \(fmt(Bench.median(rs.map(\.appendP50)))) | "
            + "\(fmt(Bench.median(rs.map(\.appendP99)))) | \(fmt(Bench.median(rs.map(\.commitP50)))) | "
            + "\(fmt(Bench.median(rs.map(\.commitP99)))) |")
    }
    summary.append("")
}
if settings.sections.contains("read") {
    summary += try measureRandomReads(dir: settings.dir, reps: settings.reps, records: settings.readRecords, reads: 1_000_000)
}
if settings.sections.contains("scan") {
    summary += try measureScans(dir: settings.dir, reps: settings.reps, bytes: settings.scanBytes)
}
if settings.sections.contains("open") {
    summary += try measureOpen(
        directory: settings.openDir ?? settings.dir + "/logstore-measure-open-\(settings.openGiB)g", reps: settings.reps,
        bytes: settings.openGiB << 30, keep: settings.keepOpenLog)
}

say("\n== medians over \(settings.reps) repetitions ==\n")
for line in summary { say(line) }
