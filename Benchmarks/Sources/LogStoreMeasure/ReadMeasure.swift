// The read side (issue 6): random `read(lsn)`, sequential scans with CRC checks, and opening a
// large log after a clean close. Sections `read`, `scan` and `open` of LogStoreMeasure.
import BenchSupport
import LogStore

/// Nanoseconds of each call of `body`, sorted.
func timeEach(_ lsns: [LSN], _ body: (LSN) throws -> Void) rethrows -> [UInt64] {
    var times = [UInt64](repeating: 0, count: lsns.count)
    for (index, lsn) in lsns.enumerated() {
        let t0 = Bench.now()
        try body(lsn)
        times[index] = Bench.now() - t0
    }
    return times.sorted()
}

/// Random reads of a closed log of `records` x 128 B, reopened: the first read in each sealed
/// segment (which indexes it), then `reads` warm reads, copying and in place.
func measureRandomReads(dir: String, reps: Int, records: Int, reads: Int) throws -> [String] {
    say("\n== read: random read(lsn) in a closed log of \(records) x 128 B, reopened ==")
    let directory = Bench.makeTemporaryDirectory("logstore-measure-read", base: dir)
    defer { Bench.removeDirectory(directory) }
    try ReadFixtures.writeClosedLog(directory, records: records, payload: Bench.payload(128))
    var firstRead: [Double] = []
    var copying: [(p50: Double, p99: Double, mean: Double)] = []
    var inPlace: [(p50: Double, p99: Double, mean: Double)] = []
    var sink = 0
    for rep in 0..<reps {
        let log = try Log.open(directory)
        let sealed = log.recoveryReport.deferredSegments
        // One read in each sealed segment: what the first access after a clean close costs.
        var t0 = Bench.now()
        for info in log.segments.prefix(sealed) { sink &+= try log.read(info.baseLSN).count }
        firstRead.append(ms(Bench.now() - t0) / Double(max(sealed, 1)))
        let lsns = ReadFixtures.randomLSNs(reads, last: log.writtenLSN)
        for lsn in lsns.prefix(100_000) { sink &+= try log.read(lsn).count }  // warm up
        t0 = Bench.now()
        let copied = try timeEach(lsns) { sink &+= try log.read($0).count }
        copying.append((Double(Bench.percentile(copied, 0.5)), Double(Bench.percentile(copied, 0.99)),
                        Double(copied.reduce(0, +)) / Double(reads)))
        let borrowed = try timeEach(lsns) { lsn in
            sink &+= try log.withPayload(of: lsn) { Int($0.unsafeLoad(fromByteOffset: 0, as: UInt8.self)) }
        }
        inPlace.append((Double(Bench.percentile(borrowed, 0.5)), Double(Bench.percentile(borrowed, 0.99)),
                        Double(borrowed.reduce(0, +)) / Double(reads)))
        try log.close()
        say("rep \(rep + 1): first read per sealed segment \(fmt(firstRead.last!, 2)) ms (\(sealed) segments); "
            + "read p50 \(fmt(copying.last!.p50, 0)) ns p99 \(fmt(copying.last!.p99, 0)) ns; "
            + "withPayload p50 \(fmt(inPlace.last!.p50, 0)) ns p99 \(fmt(inPlace.last!.p99, 0)) ns")
    }
    say("(sink \(sink))")
    return [
        "Random reads, \(records) records of 128 B (64 MiB segments), \(reads) random LSNs per repetition, each "
            + "call timed (clock_gettime included, ~20 ns):",
        "",
        "| Read | p50 ns | p99 ns | mean ns |",
        "|---|---:|---:|---:|",
        "| read(lsn) (copies the payload into an Array) | \(fmt(Bench.median(copying.map(\.p50)), 0)) | "
            + "\(fmt(Bench.median(copying.map(\.p99)), 0)) | \(fmt(Bench.median(copying.map(\.mean)), 0)) |",
        "| withPayload(of:) (RawSpan into the mapping) | \(fmt(Bench.median(inPlace.map(\.p50)), 0)) | "
            + "\(fmt(Bench.median(inPlace.map(\.p99)), 0)) | \(fmt(Bench.median(inPlace.map(\.mean)), 0)) |",
        "| first read in a sealed segment after reopen (indexes the 64 MiB segment), ms | "
            + "\(fmt(Bench.median(firstRead), 2)) | | |",
        "",
    ]
}

/// Sequential scans of closed logs of about `bytes` bytes of records of each size: the first
/// pass after reopening (which indexes the sealed segments), then warm passes with and without
/// CRC checks. GB/s of record bytes (headers, payloads, padding).
func measureScans(dir: String, reps: Int, bytes: Int) throws -> [String] {
    var lines = [
        "Sequential scan, `forEachRecord(in: firstLSN...writtenLSN)`, warm page cache, GB/s (10^9 B/s) of record "
            + "bytes (headers + payloads + padding):",
        "",
        "| Records | first pass after reopen (indexing, CRC) | warm, verifyingChecksums: true | warm, no CRC |",
        "|---|---:|---:|---:|",
    ]
    for size in [128, 1024, 4096] {
        let records = bytes / (size + 32)
        say("\n== scan: \(records) x \(size) B ==")
        let directory = Bench.makeTemporaryDirectory("logstore-measure-scan", base: dir)
        defer { Bench.removeDirectory(directory) }
        try ReadFixtures.writeClosedLog(directory, records: records, payload: Bench.payload(size))
        var first: [Double] = []
        var checked: [Double] = []
        var unchecked: [Double] = []
        var sink = 0
        for rep in 0..<reps {
            let log = try Log.open(directory)
            let all = log.firstLSN...log.writtenLSN
            func pass(verifying: Bool) throws -> Double {
                let t0 = Bench.now()
                try log.forEachRecord(in: all, verifyingChecksums: verifying) { _, payload in sink &+= payload.byteCount }
                return Double(Bench.now() - t0)
            }
            let firstTime = try pass(verifying: false)
            let total = Double(ReadFixtures.recordBytes(log))
            first.append(total / firstTime)
            checked.append(total / (try pass(verifying: true)))
            unchecked.append(total / (try pass(verifying: false)))
            try log.close()
            say("rep \(rep + 1): first pass \(fmt(first.last!, 2)) GB/s; with CRC \(fmt(checked.last!, 2)) GB/s; "
                + "without \(fmt(unchecked.last!, 2)) GB/s")
        }
        say("(sink \(sink))")
        lines.append("| \(records) x \(size) B | \(fmt(Bench.median(first), 2)) | \(fmt(Bench.median(checked), 2)) | "
            + "\(fmt(Bench.median(unchecked), 2)) |")
    }
    lines.append("")
    return lines
}

/// Opening a log of `bytes` bytes (64 MiB segments, the last full of 128-byte records) after a
/// clean close, kept in `directory` between runs (created if missing).
func measureOpen(directory: String, reps: Int, bytes: Int, keep: Bool) throws -> [String] {
    say("\n== open: a log of \(bytes >> 30) GiB after a clean close (\(directory)) ==")
    var t0 = Bench.now()
    let segments = try ReadFixtures.makeLargeClosedLog(directory, bytes: bytes)
    say("log ready: \(segments) segments (\(fmt(ms(Bench.now() - t0) / 1000, 1)) s)")
    defer { if !keep { Bench.removeDirectory(directory) } }
    var readOnly: [Double] = []
    var writer: [Double] = []
    var cold: [Double] = []
    var full: [Double] = []
    for rep in 0..<reps {
        for _ in 0..<3 {
            t0 = Bench.now()
            let reader = try Log.openReadOnly(directory)
            readOnly.append(ms(Bench.now() - t0))
            precondition(reader.recoveryReport.deferredSegments == segments - 1)
            try reader.close()
            t0 = Bench.now()
            let log = try Log.open(directory)
            writer.append(ms(Bench.now() - t0))
            try log.close()
        }
        ReadFixtures.dropPageCache(directory)
        t0 = Bench.now()
        let coldReader = try Log.openReadOnly(directory)
        cold.append(ms(Bench.now() - t0))
        try coldReader.close()
        t0 = Bench.now()
        let checking = try Log.openReadOnly(directory, checkSealedSegments: true)
        full.append(ms(Bench.now() - t0))
        precondition(checking.recoveryReport.outcome == .clean)
        try checking.close()
        say("rep \(rep + 1): openReadOnly \(readOnly.suffix(3).map { fmt($0, 2) }.joined(separator: ", ")) ms; "
            + "open (writer) \(writer.suffix(3).map { fmt($0, 2) }.joined(separator: ", ")) ms; "
            + "cold openReadOnly \(fmt(cold.last!, 1)) ms; full check \(fmt(full.last!, 0)) ms")
    }
    return [
        "Open after a clean close, \(segments) segments of 64 MiB (\(bytes >> 30) GiB; the last segment full of "
            + "128-byte records, the others 64 KiB records):",
        "",
        "| Open | ms (median) |",
        "|---|---:|",
        "| Log.openReadOnly, warm (\(readOnly.count) opens) | \(fmt(Bench.median(readOnly), 2)) |",
        "| Log.open (writer: lock, last segment's recovery, directory fsyncs), warm (\(writer.count) opens) | "
            + "\(fmt(Bench.median(writer), 2)) |",
        "| Log.openReadOnly, cold (after POSIX_FADV_DONTNEED of every segment; \(cold.count) opens) | "
            + "\(fmt(Bench.median(cold), 1)) |",
        "| Log.openReadOnly(checkSealedSegments: true): every record checked, as after a crash (\(full.count) opens) | "
            + "\(fmt(Bench.median(full), 0)) |",
        "",
    ]
}
