import Foundation
@testable import LogStore
import Synchronization
import Testing

/// Damage from outside the crash model (bit flips, truncation), garbage inside it (torn
/// sectors of an unacknowledged tail), and a full disk at every segment creation.
///
/// Every test prints its seed; `LOGSTORE_CRASH_SEED=<seed>` (decimal or 0x-hex) replays it and
/// `LOGSTORE_CRASH_SCALE=<n>` multiplies the sampled parts. (Segment salts and log ids stay
/// random: they come from the library, so a replay has the same layout and payloads but other
/// checksums.) Logs live in /dev/shm when it exists: tmpfs keeps the never-written rest of a
/// segment a hole, so recovery's scan skips it (see `ScratchDirectory`).
@Suite(.serialized) struct CorruptionTests {
    // MARK: - 1. Bit flips

    /// The first 64 KiB of a segment, every bit flipped in turn: the header page, ~150 records of
    /// 0 to 1000 bytes (every padding length) appended and committed, one more committed record
    /// after them (the evidence that they were durable), the close marker of a clean close (the
    /// evidence for that last record), and 256 zero bytes after it.
    ///
    /// What FORMAT.md says each flip does, and this test asserts:
    /// * magic (bytes 0..<8): `notALog` at offset 0, in every mode (§2.2 row 1);
    /// * the rest of the header fields and the header CRC (8..<80): `corruption` at offset 0 in
    ///   every mode: the CRC is checked before the version, so a flipped version is not
    ///   `unsupportedVersion` (§2.2 rows 3-4);
    /// * header bytes 80..<4096 and record padding: covered by no checksum and never read
    ///   (§10): the log opens clean with every record;
    /// * a data record's header or payload: `corruption` at that record's offset and LSN (a later
    ///   record or the close marker claims it durable); point-in-time recovery keeps exactly the
    ///   records before it and reports the rest as lost;
    /// * the close marker or the zeros after it: a torn tail (the marker holds no record, and
    ///   nothing after it claims anything); every record is kept.
    ///
    /// Each flip goes through `LogScanner.scan` (what `Log.open` runs) on a read-only mapping,
    /// and every header flip through `SegmentHeader.decode`; a seeded sample of the flips, and all
    /// 640 in the header fields, go through `Log.open` itself, torn-tail (refused: exact error,
    /// no file changed) and a smaller sample also point-in-time.
    @Test func everyBitFlipInDurableDataIsReportedWithItsOffset() async throws {
        let seed = CrashKnobs.seed(#function)
        let scale = CrashKnobs.scale
        let clock = ContinuousClock.now
        let layout = try FlipLayout.build(seed: seed)
        let built = ContinuousClock.now - clock
        // A flip goes through Log.open with probability 1/openStride, through point-in-time with
        // 1/(openStride * pitStride), besides the fixed cases of `FlipLayout.mustOpen`.
        let openStride = max(1, 32 / scale)
        let pitStride = 16
        let workers = 2
        let tallies = try await onThreads(workers) { worker in
            try FlipWorker(layout: layout, worker: worker, workers: workers, seed: seed, openStride: openStride,
                           pitStride: pitStride).run()
        }
        var total = FlipTally()
        for tally in tallies { total.merge(tally) }
        total.log.report("bit flips")
        let flips = layout.window * 8
        #expect(total.checked == flips)
        #expect(total.count(.magic) == 64)
        #expect(total.count(.headerField) == 72 * 8)
        #expect(total.unsupportedVersion == 0, "a flipped version field fails the header CRC first")
        #expect(total.opens >= 640 + flips / openStride / 2, "the Log.open sample is too small")
        let corruption = total.count(.headerField) + total.count(.recordCovered)
        let unchecked = total.count(.headerUnchecked) + total.count(.padding)
        let torn = total.count(.marker) + total.count(.zeroTail)
        #expect(corruption + unchecked + torn + total.count(.magic) == flips)
        print("bit flips: \(flips) checked, \(corruption) reported as corruption, \(unchecked) in bytes no checksum covers")
        print("bit flips: also \(total.count(.magic)) in the magic (notALog), \(torn) in the close marker and the zeros "
              + "after it (torn tail, no record lost); \(total.opens) went through Log.open, \(total.pitOpens) also "
              + "point-in-time; \(layout.records.count) records, the last (LSN \(layout.lastLSN)) ends at "
              + "\(layout.markerOffset), the close marker at \(layout.markerOffset)..<\(layout.markerOffset + 32)")
        print("bit flips without the close marker: all \(total.limitationFlips) flips in the last record (LSN "
              + "\(layout.lastLSN)) drop it as a torn tail, as FORMAT.md §8.4 (Limitation) says: nothing later claims it")
        print("bit flips: built in \(built), workers took \(tallies.map { $0.elapsed }) (scan \(tallies.map { $0.scanTime }), "
              + "Log.open \(tallies.map { $0.openTime }))")
    }

    // MARK: - 2. Truncation

    /// A segment file cut short at every offset. Extends
    /// `LogScannerTests.truncationAtEveryByteKeepsExactlyTheCompleteRecordsBeforeTheCut` (one
    /// segment, committed records, no close marker, writers on every 5th cut) to: the active
    /// segment of a two-segment log with its last records never committed, and with a close
    /// marker; every cut inside the active segment's header page; the sealed segment before it;
    /// and every writer on every cut.
    ///
    /// FORMAT.md: a segment shorter than its 4096-byte header is `corruption` (§2.2 row 2; a
    /// cut at 0-7 bytes leaves no magic to check), with the file's length as the offset, in every
    /// mode and read-only too. A cut segment at or past 4096 bytes is `corruption` even when the
    /// bytes it lost were never durable (§8.3: files are created full-size and never shrink, so
    /// a short one was damaged from outside): the torn-tail writer refuses at the end of the last
    /// complete record, read-only shows exactly the complete records, point-in-time keeps them
    /// (reporting LSN E...E lost, or through the last LSN of an orphaned successor), regrows the
    /// file to full size and appends after them. The one exception (§8.1, §10): a sealed segment
    /// cut anywhere after its last record, whose successor chains at the right LSN, lost nothing
    /// and the log is clean.
    @Test func truncationAtEveryOffsetKeepsExactlyTheCompleteRecords() throws {
        let seed = CrashKnobs.seed(#function)
        let tail = 3 * CrashKnobs.scale
        let clock = ContinuousClock.now
        let (uncommitted, closed) = try TruncationState.build(seed: seed, tail: tail)
        var failures = FailureLog()
        var counts: [String: Int] = [:]
        counts["header", default: 0] += try uncommitted.cutHeaderEverywhere(&failures)
        for state in [uncommitted, closed] {
            let last = state.last
            let first = state.records[state.records.count - tail]
            counts["active", default: 0] += try state.cut(last, from: first.offset, to: state.end(of: last) + 8, &failures)
        }
        // The sealed segment: its last records, the zeros after them, and a few cuts further on.
        let sealed = closed.first
        let sealedRecords = closed.records.filter { $0.segment == sealed }
        let sealedEnd = closed.end(of: sealed)
        let nearEnd = min(sealedEnd + 64, (1 << 20) - 1)
        counts["sealed", default: 0] += try closed.cut(
            sealed, from: sealedRecords[sealedRecords.count - tail].offset, to: nearEnd, &failures)
        for far in Set([alignUp(sealedEnd, to: 4096), (1 << 20) - 4096, (1 << 20) - 1]).sorted()
        where far > nearEnd && far < 1 << 20 {
            counts["sealed", default: 0] += try closed.cut(sealed, from: far, to: far, &failures)
        }
        failures.report("truncation")
        let total = counts.values.reduce(0, +)
        print("truncation: \(total) cuts checked (\(counts["header"] ?? 0) in the active segment's header, "
              + "\(counts["active"] ?? 0) across its last \(tail) records with and without a close marker, "
              + "\(counts["sealed"] ?? 0) in the sealed segment), each read-only, torn-tail and point-in-time, "
              + "in \(ContinuousClock.now - clock)")
    }

    // MARK: - 3. Garbage in the uncommitted tail

    /// Inside the crash model a sector of a page that was being written holds its old or its new
    /// content; this test is harsher: every 512-byte sector of the never-committed tail (and the
    /// sector after it) filled with zeros, with seeded garbage, with a forged record header that
    /// claims durability but has no valid checksum, and with the same sector of another log whose
    /// records are all committed (valid records, but under another salt). In a one-segment log and
    /// in a log whose tail runs across a roll into segment 2. Bytes of a sector before the last
    /// commit's end are left alone (they are acknowledged, and under the sector assumption a
    /// rewrite of their sector keeps them).
    ///
    /// Recovery (torn-tail) must keep every committed record and, exactly, every later record the
    /// damage did not touch before the first one it did; drop the rest quietly (outcome `tornTail`,
    /// never `corruption`, nothing reported lost), or report `clean` when nothing it reads changed
    /// (zeros over zeros; garbage after a sealed segment's last record, which its chained
    /// successor makes irrelevant, §8.1); and let appends continue, with no stale record coming
    /// back after a reopen. Extends `LogScannerTests.damagedSectorInUncommittedTailIsDroppedQuietly`
    /// (one segment, zeros and one kind of garbage) with the roll, the sector after the tail, the
    /// adversarial fills and exact expectations.
    @Test func garbageInEverySectorOfTheUncommittedTailIsDroppedQuietly() throws {
        let seed = CrashKnobs.seed(#function)
        let variants = 6 * CrashKnobs.scale
        let clock = ContinuousClock.now
        var failures = FailureLog()
        var cases = 0
        var outcomes: [String: Int] = [:]
        for shape in [TailLog.Shape.oneSegment, .acrossARoll] {
            let log = try TailLog.build(shape, seed: seed)
            for sector in log.sectors() {
                for fill in TailLog.Fill.all(variants: variants) {
                    let outcome = try log.check(sector: sector, fill: fill, seed: seed, &failures)
                    outcomes[outcome, default: 0] += 1
                    cases += 1
                }
            }
        }
        failures.report("garbage")
        #expect(outcomes["corruption"] == nil)
        print("garbage: \(cases) damaged tails checked (\(outcomes["torn-tail"] ?? 0) torn tails dropped quietly, "
              + "\(outcomes["clean"] ?? 0) clean: nothing read changed), none corruption, in \(ContinuousClock.now - clock)")
    }

    // MARK: - 4. A full disk at every segment creation

    /// ENOSPC injected at the N-th preallocation of a segment file, for every N over a workload
    /// that creates a new log and rolls 8 times (K = 9 segment files: the first, created inside
    /// `Log.open`, and one per roll). Where the injection point is hit (Segment.swift,
    /// `Segment.preallocate`): N = 0 is the first segment's creation in `Log.open`; N >= 1 is the
    /// background `SegmentPreparer` preparing segment N + 1 once segment N is half full, whose
    /// failure is swallowed, after which the roll into segment N + 1 preallocates on its own
    /// (another hit). Two kinds of full disk for every N:
    /// * transient (one failure): `Log.open` fails with `noSpace` for N = 0; for N >= 1 nothing
    ///   surfaces: the roll's own preallocation succeeds;
    /// * persistent (every preallocation fails until space is freed): `noSpace` from `Log.open`
    ///   (N = 0) or from the `append` that rolls into segment N + 1, again on a retry, while
    ///   commits still work; nothing is left behind (no segment, no `*.seg.tmp`) and nothing is
    ///   appended; once space is back the same log goes on (even N) or is closed and reopened
    ///   (odd N) and goes on.
    /// Every run ends with all K segments, and a reopened log holds every record. N = K is the
    /// control: that preallocation never happens, so exactly K are made.
    @Test func enospcAtEverySegmentCreationIsATypedErrorAndTouchesNothing() throws {
        let seed = CrashKnobs.seed(#function)
        let segments = 8 * CrashKnobs.scale + 1
        let clock = ContinuousClock.now
        var workload = FullDiskWorkload(seed: seed, segments: segments)
        var failures = FailureLog()
        var surfaced = 0
        for fault in 0...segments {
            for persistent in [false, true] {
                surfaced += try workload.run(fault: fault, persistent: persistent, &failures)
            }
        }
        failures.report("ENOSPC")
        #expect(surfaced == 1 + segments, "noSpace surfaces once per creation with a persistent full disk, once transient")
        print("ENOSPC: every one of \(segments) segment creations checked")
        print("ENOSPC: \((segments + 1) * 2) runs (one-shot and lasting full disk at each creation, and after the "
              + "last), \(surfaced) noSpace errors surfaced, \(workload.payloads.count) records per run, "
              + "in \(ContinuousClock.now - clock)")
    }
}

// MARK: - Knobs and scratch space

/// `LOGSTORE_CRASH_SEED` replays a run; `LOGSTORE_CRASH_SCALE` (default 1) multiplies counts.
enum CrashKnobs {
    static func seed(_ test: String) -> UInt64 {
        var value: UInt64
        var generator = SystemRandomNumberGenerator()
        value = generator.next()
        if let text = ProcessInfo.processInfo.environment["LOGSTORE_CRASH_SEED"] {
            let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
            let parsed = trimmed.hasPrefix("0x") ? UInt64(trimmed.dropFirst(2), radix: 16) : UInt64(trimmed)
            if let parsed { value = parsed } else { Issue.record("LOGSTORE_CRASH_SEED=\(text) is not a number") }
        }
        let name = test.prefix { $0 != "(" }
        print("\(name): seed 0x\(String(value, radix: 16)) (replay with LOGSTORE_CRASH_SEED=0x\(String(value, radix: 16)))")
        return value
    }

    static var scale: Int {
        guard let text = ProcessInfo.processInfo.environment["LOGSTORE_CRASH_SCALE"] else { return 1 }
        guard let value = Int(text.trimmingCharacters(in: .whitespaces)), value >= 1 else {
            Issue.record("LOGSTORE_CRASH_SCALE=\(text) is not a positive integer")
            return 1
        }
        return value
    }
}

/// A fresh directory in /dev/shm (tmpfs) when there is one, else in the temp directory; removed
/// when the value goes away. On tmpfs a never-written range of a file is a hole that
/// `SEEK_DATA` skips, as an unwritten extent of a real disk filesystem is; files are written
/// with `writeSparse` to keep it so (recovery would otherwise scan 1 MiB of zeros per open,
/// which in a debug build takes milliseconds).
final class ScratchDirectory: @unchecked Sendable {
    let path: String

    init(_ label: String) {
        var isDirectory: ObjCBool = false
        let base = FileManager.default.fileExists(atPath: "/dev/shm", isDirectory: &isDirectory) && isDirectory.boolValue
            && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : NSTemporaryDirectory()
        var template = Array((base + "/logstore-\(label)-XXXXXX").utf8CString)
        let result = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(result != nil, "mkdtemp failed")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func child(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// A file's bytes with the offset past its last nonzero byte, for writing it back sparsely.
struct FileImage: Sendable, Equatable {
    var bytes: [UInt8]
    var nonzeroEnd: Int

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
        nonzeroEnd = bytes.withUnsafeBytes { lastNonzeroEnd($0) }
    }

    init(contentsOf path: String) throws { self.init([UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))) }
}

/// The offset just past the last nonzero byte (0 if all zero), 8 bytes at a time.
func lastNonzeroEnd(_ bytes: UnsafeRawBufferPointer) -> Int {
    var end = bytes.count
    while end % 8 != 0 {
        if bytes[end - 1] != 0 { return end }
        end -= 1
    }
    while end >= 8, bytes.loadUnaligned(fromByteOffset: end - 8, as: UInt64.self) == 0 { end -= 8 }
    while end > 0, bytes[end - 1] == 0 { end -= 1 }
    return end
}

/// Writes `image` to `path` (replacing it) as a file of `image.bytes.count` bytes in which only
/// the pages up to the last nonzero byte hold data; the rest is a hole.
func writeSparse(_ image: FileImage, to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    defer { close(fd) }
    let dataEnd = min(alignUp(image.nonzeroEnd, to: Format.pageSize), image.bytes.count)
    try image.bytes.withUnsafeBytes { raw in
        var done = 0
        while done < dataEnd {
            let n = pwrite(fd, raw.baseAddress! + done, dataEnd - done, off_t(done))
            guard n > 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            done += n
        }
    }
    guard ftruncate(fd, off_t(image.bytes.count)) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
}

/// Turns everything past `keeping` back into a hole (the file is all zero there): truncating
/// frees the pages, growing it again leaves a hole. The inode stays, and so do mappings of it.
func resparsify(_ fd: Int32, keeping: Int, size: Int) throws {
    guard ftruncate(fd, off_t(keeping)) == 0, ftruncate(fd, off_t(size)) == 0 else {
        throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
    }
}

/// Writes every file of `files` into `directory` (sparsely), replacing files of the same name.
func restoreSparse(_ files: [String: FileImage], into directory: String) throws {
    for (name, image) in files { try writeSparse(image, to: directory + "/" + name) }
}

/// `count` bytes from a seeded generator, 8 at a time.
func seededBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var generator = SplitMix64(seed: seed)
    var bytes = [UInt8](repeating: 0, count: count)
    bytes.withUnsafeMutableBytes { raw in
        var offset = 0
        while offset + 8 <= count {
            raw.storeBytes(of: generator.next(), toByteOffset: offset, as: UInt64.self)
            offset += 8
        }
        while offset < count {
            raw[offset] = UInt8(truncatingIfNeeded: generator.next())
            offset += 1
        }
    }
    return bytes
}

/// Collects failures from a hot loop without a `#expect` per check (slow in debug builds).
struct FailureLog: Sendable {
    var failures: [String] = []
    var failureCount = 0

    mutating func fail(_ message: @autoclosure () -> String) {
        failureCount += 1
        if failures.count < 40 { failures.append(message()) }
    }

    mutating func merge(_ other: FailureLog) {
        failureCount += other.failureCount
        failures += other.failures.prefix(max(0, 40 - failures.count))
    }

    func report(_ label: String) {
        for failure in failures { Issue.record(Comment(rawValue: "\(label): \(failure)")) }
        if failureCount > failures.count { Issue.record("\(label): \(failureCount - failures.count) more failures not shown") }
    }
}

// MARK: - Bit flip machinery

/// The log whose first 64 KiB test 1 flips, and what each byte of it is.
struct FlipLayout: Sendable {
    enum Kind: UInt8, CaseIterable, Sendable {
        case magic, headerField, headerUnchecked, recordCovered, padding, marker, zeroTail
    }

    struct RecordSpan: Sendable {
        var offset: Int
        var covered: Int
        var footprint: Int
        var lsn: LSN
    }

    static let window = 64 << 10
    static let zeroTail = 256
    var window: Int { Self.window }
    let segmentName = Format.segmentFileName(id: 1)
    /// The whole segment file (1 MiB; zero from `markerOffset + 32` on).
    var image: FileImage
    var header: SegmentHeader
    var records: [Log.Record]
    var spans: [RecordSpan]
    var markerOffset: Int
    var lastLSN: LSN { LSN(records.count) }
    /// Per byte of the window: its kind, and for record bytes the index of the record.
    var kinds: [Kind]
    var owners: [Int32]

    static func build(seed: UInt64) throws -> FlipLayout {
        let source = ScratchDirectory("flip-source")
        let log = try Log.open(source.path, options: options())
        var generator = SplitMix64(seed: seed)
        var end = Format.segmentHeaderSize
        var index = 0
        // The last record and the close marker end `zeroTail` bytes before the window's end.
        let lastLength = 160 + Int(generator.next() % 64)
        let target = window - zeroTail - Format.recordHeaderSize - Format.recordFootprint(payloadLength: lastLength)
        // Lengths 0 to 1000 (a flip's cost grows with the damaged record's size: recovery looks for
        // valid records at each of its 8-byte words), every padding length 0...7 among the
        // first records; the last one of them fills the space left exactly.
        while end < target {
            let remaining = target - end
            let length: Int
            if index < 8 {
                length = 8 * Int(generator.next() % 4) + 8 - index
            } else if remaining <= 1200 {
                length = remaining - Format.recordHeaderSize - Int(generator.next() % 8)
            } else {
                switch generator.next() % 8 {
                case 0: length = Int(generator.next() % 8)
                case 1: length = 8 + Int(generator.next() % 56)
                default: length = 64 + Int(generator.next() % 937)
                }
            }
            try log.append(seededBytes(length, seed: seed &+ UInt64(index)))
            end += Format.recordFootprint(payloadLength: length)
            index += 1
        }
        try log.commit()
        // The last record claims every earlier one durable; the close marker claims it.
        try log.appendAndCommit(seededBytes(lastLength, seed: seed &+ UInt64(index)))
        try log.close()
        let records = try readAll(source.path)
        let image = try FileImage(contentsOf: source.child(Format.segmentFileName(id: 1)))
        let header = try image.bytes.withUnsafeBytes { try SegmentHeader.decode($0, path: "") }
        var spans: [RecordSpan] = []
        var kinds = [Kind](repeating: .zeroTail, count: window)
        var owners = [Int32](repeating: -1, count: window)
        for offset in 0..<Format.segmentHeaderSize {
            kinds[offset] = offset < 8 ? .magic : offset < Format.segmentHeaderUsedBytes ? .headerField : .headerUnchecked
        }
        for (position, record) in records.enumerated() {
            let span = RecordSpan(
                offset: record.offset, covered: 32 + record.payload.count,
                footprint: Format.recordFootprint(payloadLength: record.payload.count), lsn: record.lsn)
            spans.append(span)
            for offset in span.offset..<(span.offset + span.footprint) {
                kinds[offset] = offset < span.offset + span.covered ? .recordCovered : .padding
                owners[offset] = Int32(position)
            }
        }
        let markerOffset = spans.last!.offset + spans.last!.footprint
        for offset in markerOffset..<(markerOffset + 32) { kinds[offset] = .marker }
        let layout = FlipLayout(image: image, header: header, records: records, spans: spans, markerOffset: markerOffset,
                                kinds: kinds, owners: owners)
        // The layout this test relies on.
        #expect(image.bytes.count == 1 << 20)
        #expect(markerOffset + 32 == window - zeroTail, "the close marker ends \(zeroTail) bytes before 64 KiB")
        #expect(image.nonzeroEnd <= window - zeroTail, "zeros after the close marker")
        #expect(image.bytes[markerOffset + 24] == 2, "a close marker follows the last record")
        #expect(records.count > 100)
        #expect(Set(records.map { Format.recordFootprint(payloadLength: $0.payload.count) - 32 - $0.payload.count })
                    == Set(0...7), "every padding length occurs")
        return layout
    }
}

struct FlipTally: Sendable {
    var counts = [Int](repeating: 0, count: FlipLayout.Kind.allCases.count)
    var checked = 0
    var unsupportedVersion = 0
    var opens = 0
    var pitOpens = 0
    var limitationFlips = 0
    var log = FailureLog()
    var elapsed: Duration = .zero
    var scanTime: Duration = .zero
    var openTime: Duration = .zero

    func count(_ kind: FlipLayout.Kind) -> Int { counts[Int(kind.rawValue)] }

    mutating func merge(_ other: FlipTally) {
        for index in counts.indices { counts[index] += other.counts[index] }
        checked += other.checked
        unsupportedVersion += other.unsupportedVersion
        opens += other.opens
        pitOpens += other.pitOpens
        limitationFlips += other.limitationFlips
        log.merge(other.log)
    }
}

/// Flips the bytes `worker, worker + workers, ...` of the window, in private copies of the
/// segment: one only ever scanned (read-only mapping, flipped through a second, writable one),
/// one opened with `Log.open`.
struct FlipWorker {
    let layout: FlipLayout
    let worker: Int
    let workers: Int
    let seed: UInt64
    let openStride: Int
    let pitStride: Int

    func run() throws -> FlipTally {
        let started = ContinuousClock.now
        var tally = FlipTally()
        let window = layout.window
        let scanDirectory = ScratchDirectory("flip-scan")
        let scanPath = scanDirectory.child(layout.segmentName)
        try writeSparse(layout.image, to: scanPath)
        let scanFD = open(scanPath, O_RDWR | O_CLOEXEC)
        precondition(scanFD >= 0)
        defer { close(scanFD) }
        let mapped = mmap(nil, window, PROT_READ | PROT_WRITE, MAP_SHARED, scanFD, 0)
        precondition(mapped != MAP_FAILED && mapped != nil)
        defer { munmap(mapped, window) }
        let flipper = mapped!.assumingMemoryBound(to: UInt8.self)
        let segment = try Segment.open(directory: scanDirectory.path, name: layout.segmentName, writable: false)
        let ranges = segment.descriptor.dataRanges(from: Format.segmentHeaderSize, to: segment.size)
        if ranges.last?.upperBound ?? 0 > window {
            tally.log.fail("the scan copy is not sparse (\(ranges)): every scan reads 1 MiB")
        }
        var opener = try FlipOpener(layout: layout)
        var header = Array(layout.image.bytes[0..<Format.segmentHeaderSize])
        let spans = layout.spans
        let last = layout.lastLSN
        var byte = worker
        while byte < window {
            let kind = layout.kinds[byte]
            let owner = Int(layout.owners[byte])
            for bit in 0..<8 {
                let mask = UInt8(1) << bit
                tally.checked += 1
                tally.counts[Int(kind.rawValue)] += 1
                if byte < Format.segmentHeaderSize {
                    header[byte] ^= mask
                    do {
                        let decoded = try header.withUnsafeBytes { try SegmentHeader.decode($0, path: "") }
                        if kind != .headerUnchecked || decoded != layout.header {
                            tally.log.fail("header byte \(byte) bit \(bit): decoded \(decoded)")
                        }
                    } catch let error as LogError {
                        if error.code == .unsupportedVersion { tally.unsupportedVersion += 1 }
                        let expected: LogError.Code? = kind == .magic ? .notALog : kind == .headerField ? .corruption : nil
                        if error.code != expected || error.offset != 0 {
                            tally.log.fail("header byte \(byte) bit \(bit): \(error), expected \(String(describing: expected)) at 0")
                        }
                    }
                    header[byte] ^= mask
                } else {
                    flipper[byte] ^= mask
                    let scanStart = ContinuousClock.now
                    let result = LogScanner.scan([segment])
                    tally.scanTime += ContinuousClock.now - scanStart
                    flipper[byte] ^= mask
                    if kind == .recordCovered, (4..<8).contains(byte - spans[owner].offset) {
                        // A flipped length makes the CRC read up to ~1 MiB through the mapping,
                        // which fills tmpfs holes with pages: punch them out again.
                        try resparsify(scanFD, keeping: window, size: layout.image.bytes.count)
                    }
                    let problem: String?
                    switch kind {
                    case .recordCovered:
                        let span = spans[owner]
                        problem = result.outcome == .corruption && result.damage?.offset == UInt64(span.offset)
                            && result.damage?.lsn == span.lsn && result.nextLSN == span.lsn && result.kept.count == 1
                            && result.kept[0].recordOffsets.count == owner
                            && (owner == 0 || result.kept[0].recordOffsets[owner - 1] == UInt32(spans[owner - 1].offset))
                            && max(result.evidence.highestLSN, result.evidence.durableLSN) == last
                            ? nil : "expected corruption at \(span.offset) (LSN \(span.lsn))"
                    case .padding, .headerUnchecked:
                        problem = result.outcome == .clean && result.nextLSN == last + 1
                            && result.kept[0].endsWithCloseMarker ? nil : "expected a clean log"
                    case .marker, .zeroTail:
                        // Dropped: from the cut through the last nonzero 8-byte word.
                        let at = kind == .marker ? layout.markerOffset : layout.markerOffset + 32
                        flipper[byte] ^= mask
                        let dropEnd = alignUp(lastNonzeroEnd(UnsafeRawBufferPointer(start: flipper, count: window)), to: 8)
                        flipper[byte] ^= mask
                        let torn = result.outcome == .tornTail && result.damage?.offset == UInt64(at)
                            && result.damage?.lsn == last + 1 && result.nextLSN == last + 1
                        problem = torn && result.tailNonzeroEnd == dropEnd
                            ? nil : "expected a torn tail at \(at) dropping up to \(dropEnd)"
                    case .magic, .headerField:
                        problem = "unreachable"
                    }
                    if let problem {
                        tally.log.fail("byte \(byte) bit \(bit) (\(kind)): \(problem); scan: \(result.outcome) "
                                       + "\(result.damage.map { "\($0)" } ?? "no damage") next LSN \(result.nextLSN)")
                    }
                }
                let draw = mix(seed, byte, bit)
                if byte < Format.segmentHeaderUsedBytes || draw % UInt64(openStride) == 0 || layout.mustOpen(byte, bit) {
                    let pit = byte < Format.segmentHeaderUsedBytes || draw % UInt64(openStride * pitStride) == 0
                        || layout.mustOpen(byte, bit)
                    let openStart = ContinuousClock.now
                    opener.check(byte: byte, bit: bit, kind: kind, owner: owner, pointInTime: pit, log: &tally.log)
                    tally.openTime += ContinuousClock.now - openStart
                    tally.opens += 1
                    if pit { tally.pitOpens += 1 }
                }
            }
            byte += workers
        }

        // Without the close marker (the state of a crash after the last commit) nothing claims
        // the last record durable: damage to it is a torn tail and drops it silently.
        let marker = layout.markerOffset
        for offset in marker..<(marker + 32) { flipper[offset] = 0 }
        let lastSpan = spans[spans.count - 1]
        byte = lastSpan.offset + worker
        while byte < lastSpan.offset + lastSpan.covered {
            for bit in 0..<8 {
                let mask = UInt8(1) << bit
                flipper[byte] ^= mask
                let result = LogScanner.scan([segment])
                flipper[byte] ^= mask
                if (4..<8).contains(byte - lastSpan.offset) {
                    try resparsify(scanFD, keeping: window, size: layout.image.bytes.count)
                }
                tally.limitationFlips += 1
                if !(result.outcome == .tornTail && result.nextLSN == last && result.damage?.offset == UInt64(lastSpan.offset)) {
                    tally.log.fail("no marker, byte \(byte) bit \(bit): \(result.outcome) \(String(describing: result.damage))")
                }
            }
            byte += workers
        }
        for offset in marker..<(marker + 32) { flipper[offset] = layout.image.bytes[offset] }
        tally.elapsed = ContinuousClock.now - started
        return tally
    }
}

extension FlipLayout {
    /// Flips that always go through `Log.open` (both modes): the first byte of every record and
    /// of its padding, the first and last byte of the marker, and the first zero after it.
    func mustOpen(_ byte: Int, _ bit: Int) -> Bool {
        guard bit == 0, byte >= Format.segmentHeaderSize else { return false }
        let owner = Int(owners[byte])
        if owner >= 0 {
            let span = spans[owner]
            return byte == span.offset || byte == span.offset + span.covered
        }
        return byte == markerOffset || byte == markerOffset + 31 || byte == markerOffset + 32
    }
}

/// A seeded pseudo-random number for (`seed`, `a`, `b`).
func mix(_ seed: UInt64, _ a: Int, _ b: Int) -> UInt64 {
    var generator = SplitMix64(seed: seed ^ ((UInt64(a) << 8 | UInt64(b & 0xFF)) &* 0xD6E8_FEB8_6659_FD93))
    return generator.next()
}

/// Runs `body(0..<count)` on `count` threads of its own, so that long blocking work does not
/// hold threads of the cooperative pool (which other tests run on) while it is awaited.
func onThreads<T: Sendable>(_ count: Int, _ body: @escaping @Sendable (Int) throws -> T) async throws -> [T] {
    let results = Mutex<[Int: Result<T, any Error>]>([:])
    return try await withCheckedThrowingContinuation { continuation in
        for index in 0..<count {
            Thread {
                let result = Result { try body(index) }
                let all = results.withLock { results -> [Int: Result<T, any Error>]? in
                    results[index] = result
                    return results.count == count ? results : nil
                }
                if let all { continuation.resume(with: Result { try (0..<count).map { try all[$0]!.get() } }) }
            }.start()
        }
    }
}

/// Runs `Log.open` on a private copy of the segment with one bit flipped.
struct FlipOpener {
    let layout: FlipLayout
    let directory = ScratchDirectory("flip-open")
    let path: String
    var expected: [UInt8]
    var actual: [UInt8]

    init(layout: FlipLayout) throws {
        self.layout = layout
        path = directory.child(layout.segmentName)
        expected = Array(layout.image.bytes[0..<layout.window])
        actual = expected
        try writeSparse(layout.image, to: path)
    }

    /// Writes the flip, opens (torn-tail; point-in-time too if `pointInTime`), checks, restores.
    mutating func check(byte: Int, bit: Int, kind: FlipLayout.Kind, owner: Int, pointInTime: Bool, log: inout FailureLog) {
        let label = "Log.open, byte \(byte) bit \(bit) (\(kind))"
        let mask = UInt8(1) << bit
        expected[byte] ^= mask
        defer { expected[byte] ^= mask }
        for mode in pointInTime ? [RecoveryMode.tornTail, .pointInTime] : [.tornTail] {
            do {
                try writeByte(expected[byte], at: byte)
                if try checkOpen(mode: mode, kind: kind, owner: owner, label: "\(label) \(mode)", log: &log) {
                    try writeSparse(layout.image, to: path)
                } else {
                    try writeByte(layout.image.bytes[byte], at: byte)
                    // A refused open may have read (and so, on tmpfs, filled) holes.
                    let fd = open(path, O_RDWR | O_CLOEXEC)
                    defer { close(fd) }
                    try resparsify(fd, keeping: layout.window, size: layout.image.bytes.count)
                }
            } catch {
                log.fail("\(label) \(mode): \(error)")
                try? writeSparse(layout.image, to: path)
            }
        }
    }

    /// Returns whether the open may have changed the file.
    private mutating func checkOpen(mode: RecoveryMode, kind: FlipLayout.Kind, owner: Int, label: String,
                                    log failures: inout FailureLog) throws -> Bool {
        let refusedCode: LogError.Code?
        let refusedOffset: Int
        switch kind {
        case .magic: (refusedCode, refusedOffset) = (.notALog, 0)
        case .headerField: (refusedCode, refusedOffset) = (.corruption, 0)
        case .recordCovered where mode == .tornTail: (refusedCode, refusedOffset) = (.corruption, layout.spans[owner].offset)
        default: (refusedCode, refusedOffset) = (nil, 0)
        }
        // An earlier flip's successful open may have preserved what it dropped in side files
        // (FORMAT.md §8.6) and left its watermark file (§11); each open starts from the bare log.
        for name in (try? Log.sideFiles(in: directory.path)) ?? [] { try? FileSystem.unlink(directory.path + "/" + name) }
        try? FileSystem.unlink(directory.path + "/" + Format.watermarkFileName)
        let opened: Log
        do {
            opened = try Log.open(directory.path, options: options(recovery: mode, sync: .none))
        } catch {
            guard let refusedCode else {
                failures.fail("\(label): refused with \(error)")
                return true
            }
            if error.code != refusedCode || error.offset != UInt64(refusedOffset) || error.path != path
                || (kind == .recordCovered && error.lsn != layout.spans[owner].lsn)
            {
                failures.fail("\(label): \(error), expected \(refusedCode) at \(refusedOffset)")
            }
            // A refused open changes no byte of the log, and creates only LOCK.
            if try !untouched() { failures.fail("\(label): the refused open changed the files") }
            return false
        }
        // Sync mode `none` (recovery is the same in every mode) starts no syncer or waker thread,
        // which sidesteps the two lifecycle bugs of `LifecycleBugTests`: LOCK released late by a
        // dropped log, and a hang in `close`.
        defer { try? opened.close() }
        if let refusedCode {
            failures.fail("\(label): opened, expected \(refusedCode)")
            return true
        }
        let report = opened.recoveryReport
        let last = layout.lastLSN
        switch kind {
        case .recordCovered:
            let span = layout.spans[owner]
            let kept = (try opened.records().collect())
            if report.outcome != .corruption || report.lostLSNs != span.lsn...last || report.damage?.offset != UInt64(span.offset)
                || kept != Array(layout.records.prefix(owner)) || opened.writtenLSN != span.lsn - 1
            {
                failures.fail("\(label): \(report.outcome) lost \(String(describing: report.lostLSNs)), kept \(kept.count) records")
            }
        case .padding, .headerUnchecked:
            if report.outcome != .clean || opened.writtenLSN != last || (try? opened.read(last)) != layout.records.last?.payload {
                failures.fail("\(label): \(report.outcome), written \(opened.writtenLSN)")
            }
        case .marker, .zeroTail:
            let at = kind == .marker ? layout.markerOffset : layout.markerOffset + 32
            if report.outcome != .tornTail || report.damage?.offset != UInt64(at) || opened.writtenLSN != last
                || report.lostLSNs != nil || (try? opened.read(last)) != layout.records.last?.payload
            {
                failures.fail("\(label): \(report.outcome) at \(String(describing: report.damage))")
            }
        case .magic, .headerField:
            break
        }
        return true
    }

    private func writeByte(_ value: UInt8, at offset: Int) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        defer { close(fd) }
        var byte = value
        guard pwrite(fd, &byte, 1, off_t(offset)) == 1 else { throw POSIXError(.EIO) }
    }

    /// The segment holds exactly the expected bytes and size, and the directory only it and LOCK.
    private mutating func untouched() throws -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, Int(info.st_size) == layout.image.bytes.count else { return false }
        let count = actual.count
        let read = actual.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, count, 0) }
        guard read == count else { return false }
        let same = actual.withUnsafeBytes { a in expected.withUnsafeBytes { e in memcmp(a.baseAddress!, e.baseAddress!, count) == 0 } }
        let names = (try? FileSystem.listDirectory(directory.path)) ?? []
        return same && Set(names) == [Format.lockFileName, layout.segmentName]
    }
}

// MARK: - Truncation machinery

/// A two-segment log (segment 1 sealed, segment 2 active) as files, with what it holds.
struct TruncationState {
    let label: String
    let files: [String: FileImage]
    let records: [Log.Record]
    /// The close marker's offset in the last segment, if the log was closed.
    let markerOffset: Int?
    let first = Format.segmentFileName(id: 1)
    let last = Format.segmentFileName(id: 2)
    let work = ScratchDirectory("cut")
    var lastLSN: LSN { LSN(records.count) }

    /// Segment 1 filled with records of 8000 bytes, then (its last ones) up to 300; segment 2 with
    /// 10 committed records, then `tail` more: never committed (`uncommitted`, a crash: files
    /// copied from the page cache) or committed by a clean close (`closed`, with its marker).
    static func build(seed: UInt64, tail: Int) throws -> (uncommitted: TruncationState, closed: TruncationState) {
        let source = ScratchDirectory("cut-source")
        let log = try Log.open(source.path, options: options())
        var index = 0
        while log.segments.count < 2 {
            // Few large records (every open parses segment 1 again), small ones at its end.
            let small = log.segments[0].bytesUsed > (1 << 20) - 16384
            try log.append(small ? payload(index, seed: seed, maxLength: 300) : seededBytes(8000, seed: seed &+ UInt64(index)))
            index += 1
            if index % 16 == 0 { try log.commit() }
        }
        for _ in 0..<10 {
            try log.append(payload(index, seed: seed, maxLength: 300))
            index += 1
        }
        try log.commit()
        for _ in 0..<tail {
            try log.append(payload(index, seed: seed, maxLength: 300))
            index += 1
        }
        let records = (try log.records().collect())
        let uncommitted = TruncationState(
            label: "uncommitted tail", files: try segmentImages(source.path), records: records, markerOffset: nil)
        try log.close()
        let lastRecord = records[records.count - 1]
        let closed = TruncationState(
            label: "closed", files: try segmentImages(source.path), records: records,
            markerOffset: lastRecord.offset + Format.recordFootprint(payloadLength: lastRecord.payload.count))
        #expect(Set(records.map(\.segment)) == [uncommitted.first, uncommitted.last])
        #expect(closed.files[closed.last]!.bytes[closed.markerOffset! + 24] == 2, "the close marker")
        return (uncommitted, closed)
    }

    /// The offset where the records and marker of `segment` end.
    func end(of segment: String) -> Int {
        if segment == last, let markerOffset { return markerOffset + Format.recordHeaderSize }
        let record = records.last { $0.segment == segment }!
        return record.offset + Format.recordFootprint(payloadLength: record.payload.count)
    }

    /// Cuts the active segment inside its header page at every length 0..<4096: `corruption`
    /// with the file's length as offset, from every kind of open, and nothing changed.
    func cutHeaderEverywhere(_ failures: inout FailureLog) throws -> Int {
        try restoreSparse(files, into: work.path)
        let path = work.child(last)
        let header = Array(files[last]!.bytes[0..<Format.segmentHeaderSize])
        for cut in 0..<Format.segmentHeaderSize {
            try Data(header[0..<cut]).write(to: URL(fileURLWithPath: path))
            for mode in [RecoveryMode.tornTail, .pointInTime, .strict] {
                do {
                    _ = try Log.open(work.path, options: options(recovery: mode, sync: .none))
                    failures.fail("header cut at \(cut), \(mode): opened")
                } catch {
                    if error.code != .corruption || error.offset != UInt64(cut) || error.path != path {
                        failures.fail("header cut at \(cut), \(mode): \(error)")
                    }
                }
            }
            do {
                _ = try Log.openReadOnly(work.path)
                failures.fail("header cut at \(cut), read-only: opened")
            } catch {
                if error.code != .corruption || error.offset != UInt64(cut) { failures.fail("header cut at \(cut), read-only: \(error)") }
            }
            if try Data(contentsOf: URL(fileURLWithPath: path)) != Data(header[0..<cut]) {
                failures.fail("header cut at \(cut): the segment changed")
            }
        }
        if try FileImage(contentsOf: work.child(first)) != files[first] { failures.fail("header cuts: segment 1 changed") }
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: work.path))
        if names != [first, last, Format.lockFileName] { failures.fail("header cuts left \(names)") }
        return Format.segmentHeaderSize
    }

    /// Cuts `segment` at every offset in `from...to` and checks every kind of open on it.
    func cut(_ segment: String, from: Int, to: Int, _ failures: inout FailureLog) throws -> Int {
        for cut in from...to {
            do {
                try check(segment, cut: cut, thorough: (cut - from) % 4 == 0 || cut == to, &failures)
            } catch {
                failures.fail("\(label), \(segment) cut at \(cut): \(error)")
            }
        }
        return to - from + 1
    }

    /// Every cut gets every kind of open; a `thorough` one also compares every byte of every
    /// file after the refused open (otherwise: the cut segment's bytes and the file names) and
    /// reopens the log after point-in-time recovery appended to it.
    private func check(_ segment: String, cut: Int, thorough: Bool, _ failures: inout FailureLog) throws {
        let where_ = "\(label), \(segment) cut at \(cut)"
        try restoreSparse(files, into: work.path)
        let path = work.child(segment)
        guard truncate(path, off_t(cut)) == 0 else { throw POSIXError(.EIO) }
        func state() throws -> [String: Data] {
            thorough
                ? try snapshot(work.path).filter { $0.key != Format.lockFileName }
                : try Set(FileManager.default.contentsOfDirectory(atPath: work.path)).reduce(into: [:]) { state, name in
                    state[name] = name == segment ? try Data(contentsOf: URL(fileURLWithPath: path)) : Data()
                }
        }
        let before = try state()

        // What survives: every record before the cut segment, and its records wholly before the cut.
        let inSegment = records.filter { $0.segment == segment }
        let complete = records.filter { $0.segment < segment || ($0.segment == segment && $0.offset + 32 + $0.payload.count <= cut) }
        let next = LSN(complete.count + 1)
        var end = complete.last.map { $0.segment == segment ? $0.offset + Format.recordFootprint(payloadLength: $0.payload.count) : 4096 } ?? 4096
        if segment == last, let markerOffset, markerOffset + 32 <= cut { end = markerOffset + 32 }
        let sealedAndWhole = segment == first && complete.count == inSegment.count
        let recent = next > 20 ? next - 20 : 1

        let reader = try Log.openReadOnly(work.path)
        let report = reader.recoveryReport
        let shown = (try reader.records(from: recent).collect())
        try reader.close()
        if sealedAndWhole {
            // Only zeros after the sealed segment's last record were lost; segment 2 chains on.
            if report.outcome != .clean || reader.writtenLSN != lastLSN || shown != Array(records[(Int(recent) - 1)...]) {
                failures.fail("\(where_): read-only \(report.outcome) \(String(describing: report.damage)), expected clean")
            }
            let writer = try Log.open(work.path, options: options(sync: .none))
            if writer.recoveryReport.outcome != .clean || writer.writtenLSN != lastLSN {
                failures.fail("\(where_): writer \(writer.recoveryReport.outcome)")
            }
            try writer.appendAndCommit(Array("after".utf8))
            try writer.close()
            let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1
            if size != cut { failures.fail("\(where_): the sealed segment is now \(size) bytes") }
            let again = try Log.openReadOnly(work.path)
            if again.recoveryReport.outcome != .clean || (try? again.read(lastLSN + 1)) != Array("after".utf8) {
                failures.fail("\(where_): after reopening \(again.recoveryReport.outcome)")
            }
            return
        }
        let expectedShown = Array(complete[(Int(recent) - 1)...])
        if report.outcome != .corruption || report.damage?.segment != segment || report.damage?.offset != UInt64(end)
            || report.damage?.lsn != next || report.damage?.reason.contains("truncated") != true
            || reader.writtenLSN != next - 1 || shown != expectedShown
        {
            failures.fail("\(where_): read-only \(report.outcome) \(String(describing: report.damage)) written "
                          + "\(reader.writtenLSN), expected corruption at \(end) (LSN \(next))")
        }
        // The default writer refuses, changing nothing.
        do {
            _ = try Log.open(work.path, options: options(sync: .none))
            failures.fail("\(where_): torn-tail writer opened")
        } catch {
            if error.code != .corruption || error.offset != UInt64(end) || error.lsn != next || error.path != path {
                failures.fail("\(where_): torn-tail writer \(error), expected corruption at \(end) (LSN \(next))")
            }
        }
        if try state().filter({ $0.key != Format.lockFileName }) != before.filter({ $0.key != Format.lockFileName }) {
            failures.fail("\(where_): the refused open changed the files")
        }
        // Point-in-time keeps exactly the complete records, regrows the file, appends after them.
        let writer = try Log.open(work.path, options: options(recovery: .pointInTime, sync: .none))
        let pit = writer.recoveryReport
        let lost = next...(segment == last ? next : lastLSN)
        if try pit.outcome != .corruption || pit.lostLSNs != lost || writer.writtenLSN != next - 1
            || (writer.records(from: recent).collect()) != expectedShown
            || pit.removedSegments != (segment == last ? [] : [last])
        {
            failures.fail("\(where_): point-in-time \(pit.outcome) lost \(String(describing: pit.lostLSNs)) written "
                          + "\(writer.writtenLSN) removed \(pit.removedSegments), expected lost \(lost)")
        }
        let lsn = try writer.appendAndCommit(Array("after cut".utf8))
        try writer.close()
        if lsn != next { failures.fail("\(where_): appended at LSN \(lsn), expected \(next)") }
        let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1
        if size != 1 << 20 { failures.fail("\(where_): the cut segment was not regrown (\(size) bytes)") }
        guard thorough else { return }
        // Regrowing wrote zeros to the end of the file, so on tmpfs it is all data now: turn the
        // zeros after the new record back into a hole (no byte changes) so the reopen below does
        // not scan 1 MiB of zeros.
        let fd = open(path, O_RDWR | O_CLOEXEC)
        try resparsify(fd, keeping: alignUp(end + Format.recordFootprint(payloadLength: 9), to: Format.pageSize), size: 1 << 20)
        close(fd)
        let again = try Log.openReadOnly(work.path)
        if try again.recoveryReport.outcome != .clean || again.writtenLSN != next
            || (try? again.read(next)) != Array("after cut".utf8) || Array((again.records(from: recent).collect()).dropLast()) != expectedShown
        {
            failures.fail("\(where_): after point-in-time, reopened \(again.recoveryReport.outcome) written \(again.writtenLSN)")
        }
    }
}

/// The segment files of a log directory as images (no LOCK, no temporary files).
func segmentImages(_ directory: String) throws -> [String: FileImage] {
    var files: [String: FileImage] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: directory) where Format.segmentID(fromFileName: name) != nil {
        files[name] = try FileImage(contentsOf: directory + "/" + name)
    }
    return files
}

// MARK: - Uncommitted tail machinery

/// A log abandoned with records appended after its last commit, as the files a crash leaves
/// when every page reached the disk, plus a twin log with the same records all committed.
struct TailLog {
    enum Shape: String { case oneSegment = "one segment", acrossARoll = "across a roll" }

    enum Fill: Hashable, CustomStringConvertible {
        case zeros, garbage(Int), forged, foreign

        static func all(variants: Int) -> [Fill] { [.zeros] + (0..<variants).map { .garbage($0) } + [.forged, .foreign] }

        /// A number for seeding (`hashValue` differs from process to process).
        var code: Int {
            switch self {
            case .zeros: 0
            case .forged: 1
            case .foreign: 2
            case .garbage(let variant): 3 + variant
            }
        }

        var description: String {
            switch self {
            case .zeros: "zeros"
            case .garbage(let variant): "garbage #\(variant)"
            case .forged: "forged headers"
            case .foreign: "the committed twin's bytes"
            }
        }
    }

    struct Sector {
        var segment: String
        var start: Int
        /// The first byte that may change (bytes before the last commit's end stay).
        var low: Int
    }

    let shape: Shape
    let files: [String: FileImage]
    /// The twin: same payloads, offsets and LSNs, every record committed (so each claims the one
    /// before it durable), another salt.
    let twin: [String: FileImage]
    let records: [Log.Record]
    let committed: Int
    let work = ScratchDirectory("tail")

    static func build(_ shape: Shape, seed: UInt64) throws -> TailLog {
        var built: [(files: [String: FileImage], records: [Log.Record], committed: Int)] = []
        for twin in [false, true] {
            let source = ScratchDirectory("tail-source")
            let log = try Log.open(source.path, options: options())
            var index = 0
            switch shape {
            case .oneSegment:
                for _ in 0..<30 {
                    try log.append(payload(index, seed: seed))
                    index += 1
                }
            case .acrossARoll:
                while log.segments[0].bytesUsed < (1 << 20) - (12 << 10) {
                    try log.append(payload(index, seed: seed, maxLength: 2000))
                    index += 1
                    if index % 16 == 0 { try log.commit() }
                }
            }
            try log.commit()
            let committed = index
            func appendTail() throws {
                // Across a roll: once less than 1500 bytes are left in segment 1, a record of 2000
                // bytes, which rolls and leaves more than a sector of segment 1 never written.
                let rollNow = shape == .acrossARoll && log.segments.count == 1
                    && log.segments[0].bytesUsed > (1 << 20) - 1500
                let bytes = rollNow ? seededBytes(2000, seed: seed &+ UInt64(index)) : payload(index, seed: seed)
                if twin { try log.appendAndCommit(bytes) } else { try log.append(bytes) }
                index += 1
            }
            switch shape {
            case .oneSegment:
                for _ in 0..<60 { try appendTail() }
            case .acrossARoll:
                while log.segments.count < 2 || log.segments[1].recordCount < 25 { try appendTail() }
                // Installing segment 2 (fsync, rename) runs in the background; a crash after it.
                log.installQueue.sync {}
            }
            built.append((try segmentImages(source.path), (try log.records().collect()), committed))
            try log.close()
        }
        let log = TailLog(shape: shape, files: built[0].files, twin: built[1].files, records: built[0].records,
                          committed: built[0].committed)
        #expect(built[1].records.map(\.offset) == log.records.map(\.offset), "the twin has the same layout")
        #expect(log.files.count == (shape == .oneSegment ? 1 : 2))
        if shape == .acrossARoll {
            #expect(log.end(of: Format.segmentFileName(id: 1)) < (1 << 20) - 1024, "sectors after segment 1's end")
        }
        return log
    }

    /// Offset past the last record of `segment`.
    func end(of segment: String) -> Int {
        let record = records.last { $0.segment == segment }!
        return record.offset + Format.recordFootprint(payloadLength: record.payload.count)
    }

    /// Every sector from the one holding the end of the last commit to the one after the last
    /// record, in each segment the tail touches (not segment 2's header page: it was made
    /// durable when the segment was installed).
    func sectors() -> [Sector] {
        let boundary = records[committed]  // the first record never committed
        var result: [Sector] = []
        for segment in files.keys.sorted() where segment >= boundary.segment {
            let first = segment == boundary.segment ? alignDown(boundary.offset, to: 512) : Format.segmentHeaderSize
            let after = alignDown(end(of: segment) - 1, to: 512) + 512
            for start in stride(from: first, through: after, by: 512) where start + 512 <= 1 << 20 {
                let low = segment == boundary.segment ? max(start, boundary.offset) : start
                result.append(Sector(segment: segment, start: start, low: low))
            }
        }
        return result
    }

    /// Damages `sector` with `fill`, recovers, checks; returns the outcome's name.
    func check(sector: Sector, fill: Fill, seed: UInt64, _ failures: inout FailureLog) throws -> String {
        let label = "\(shape.rawValue), \(sector.segment) sector \(sector.start) (from \(sector.low)), \(fill)"
        let range = sector.low..<(sector.start + 512)
        let original = files[sector.segment]!
        var damaged = original
        let segmentID = Format.segmentID(fromFileName: sector.segment)!
        let noise = seededBytes(512, seed: mix(seed &+ segmentID, sector.start, fill.code))
        for offset in range {
            switch fill {
            case .zeros: damaged.bytes[offset] = 0
            case .garbage, .forged: damaged.bytes[offset] = noise[offset - sector.start]
            case .foreign: damaged.bytes[offset] = twin[sector.segment]!.bytes[offset]
            }
        }
        if fill == .forged {
            // Structurally valid data-record headers claiming everything before them durable,
            // with LSNs far enough ahead to be evidence: only their checksums are wrong.
            for slot in stride(from: alignUp(sector.low, to: 64), to: sector.start + 512 - 32, by: 64) {
                let lsn = LSN(records.count + 100)
                RecordHeader(crc: UInt32(truncatingIfNeeded: mix(seed, slot, 7)), length: 16, lsn: lsn,
                             durableLSN: lsn - 1, type: Format.recordTypeData)
                    .store(into: &damaged.bytes, at: slot)
            }
        }
        let changed = range.filter { damaged.bytes[$0] != original.bytes[$0] }
        if let last = changed.last, damaged.bytes[last] != 0 { damaged.nonzeroEnd = max(damaged.nonzeroEnd, last + 1) }

        // Expected: records up to the first one whose checksummed bytes changed; anything else
        // changed is padding (never read), stray bytes after a sealed segment (never read), or
        // bytes after the last record of the last segment (a torn tail).
        let lastSegment = files.keys.max()!
        let hit = records.first { record in
            let covered = record.offset..<(record.offset + 32 + record.payload.count)
            return record.segment == sector.segment && covered.overlaps(range) && changed.contains { covered.contains($0) }
        }
        let kept = hit.map { Int($0.lsn) - 1 } ?? records.count
        let pastEnd = sector.segment == lastSegment && changed.contains { $0 >= end(of: lastSegment) }
        // Zeros over every byte from the hit record to the old end of the data leave a log that
        // simply ends before it: nothing is left to call torn.
        let tailErased = hit.map { hit in
            hit.segment == lastSegment && hit.offset < original.nonzeroEnd
                && damaged.bytes[hit.offset..<original.nonzeroEnd].allSatisfy { $0 == 0 }
        } ?? false
        let expected: RecoveryReport.Outcome = (hit != nil || pastEnd) && !tailErased ? .tornTail : .clean
        let removed = hit.map { $0.segment != lastSegment } == true ? [lastSegment] : []
        if kept < committed { failures.fail("\(label): the test damaged a committed record") }

        var images = files
        images[sector.segment] = damaged
        try restoreSparse(images, into: work.path)
        let log = try Log.open(work.path, options: options(sync: .none))
        let report = log.recoveryReport
        let recent = max(1, kept - 30)
        let shown = (try log.records(from: LSN(recent)).collect())
        if report.outcome != expected || log.writtenLSN != LSN(kept) || report.lostLSNs != nil
            || (expected == .tornTail) != (report.damage != nil) || (report.damage.map { $0.lsn != LSN(kept + 1) } ?? false)
            || report.removedSegments != removed || shown != Array(records[(recent - 1)..<kept])
        {
            failures.fail("\(label): \(report.outcome) \(String(describing: report.damage)) kept \(log.writtenLSN) removed "
                          + "\(report.removedSegments), expected \(expected) keeping \(kept) removing \(removed)")
        }
        // Appends continue where the kept records end; after a reopen nothing stale is back.
        let marker = Array("after \(label)".utf8)
        let lsn = try log.appendAndCommit(marker)
        try log.close()
        let reopened = try Log.openReadOnly(work.path)
        if lsn != LSN(kept + 1) || reopened.recoveryReport.outcome != .clean || reopened.writtenLSN != LSN(kept + 1)
            || (try? reopened.read(LSN(kept + 1))) != marker || (try? reopened.read(LSN(kept))) != records[kept - 1].payload
        {
            failures.fail("\(label): after appending, reopened \(reopened.recoveryReport.outcome) written \(reopened.writtenLSN)")
        }
        return report.outcome.rawValue
    }
}

extension RecordHeader {
    /// Writes the header (its CRC as given) into `bytes` at `offset`.
    func store(into bytes: inout [UInt8], at offset: Int) {
        bytes.withUnsafeMutableBytes { raw in
            storeFields(to: raw.baseAddress! + offset)
            raw.storeBytes(of: crc.littleEndian, toByteOffset: offset, as: UInt32.self)
        }
    }
}

// MARK: - Full disk machinery

/// Appends records until the log has `segments` segments (a few records into the last one, so
/// that it stays under half full and no further file is prepared), committing every 32 records.
struct FullDiskWorkload {
    let seed: UInt64
    let segments: Int
    var payloads: [[UInt8]] = []

    init(seed: UInt64, segments: Int) {
        self.seed = seed
        self.segments = segments
    }

    mutating func payload(_ index: Int) -> [UInt8] {
        while payloads.count <= index {
            var generator = SplitMix64(seed: seed &+ UInt64(payloads.count))
            payloads.append(seededBytes(Int(generator.next() % 3001), seed: generator.next()))
        }
        return payloads[index]
    }

    /// One run with ENOSPC from the `fault`-th preallocation on (nil: none); returns how many
    /// `noSpace` errors surfaced.
    mutating func run(fault: Int?, persistent: Bool, _ failures: inout FailureLog) throws -> Int {
        let scratch = ScratchDirectory("enospc")
        let directory = scratch.child("log")
        let label = "ENOSPC from preallocation #\(fault.map(String.init) ?? "-") (\(persistent ? "lasting" : "one-shot"))"
        if let fault {
            FaultInjection.arm(.segmentPreallocation, directory: directory, after: fault, times: persistent ? .max : 1,
                               errno: .noSpace)
        }
        defer { FaultInjection.disarm(directory: directory) }
        var surfaced = 0

        func leftovers() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter {
                $0.hasSuffix(".tmp") || ($0.hasSuffix(".seg") && Format.segmentID(fromFileName: $0) == nil)
            }
        }
        func segmentFiles() -> Int {
            ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter {
                Format.segmentID(fromFileName: $0) != nil
            }.count
        }

        var log: Log
        do {
            log = try Log.open(directory, options: options())
            if fault == 0 { failures.fail("\(label): the new log was created") }
        } catch {
            surfaced += 1
            if fault != 0 || error.code != .noSpace { failures.fail("\(label): Log.open: \(error)") }
            if segmentFiles() != 0 || !leftovers().isEmpty { failures.fail("\(label): Log.open left \(leftovers())") }
            if persistent {
                do {
                    _ = try Log.open(directory, options: options())
                    failures.fail("\(label): created a log on a full disk")
                } catch {
                    if error.code != .noSpace { failures.fail("\(label): second Log.open: \(error)") }
                }
                FaultInjection.disarm(directory: directory)
            }
            log = try Log.open(directory, options: options())
        }

        var index = 0
        var durable: LSN = 0
        while log.segments.count < segments || log.segments[segments - 1].recordCount < 5 {
            let bytes = payload(index)
            do {
                let lsn = try log.append(bytes)
                if lsn != LSN(index + 1) { failures.fail("\(label): record \(index) got LSN \(lsn)") }
                index += 1
                if index % 32 == 0 { durable = try log.commit() }
            } catch {
                // The append that had to roll into a new segment file.
                surfaced += 1
                let count = log.segments.count
                if !persistent || error.code != .noSpace || error.path?.hasSuffix(".seg.tmp") != true || fault != count {
                    failures.fail("\(label): append \(index) with \(count) segments: \(error)")
                }
                if log.writtenLSN != LSN(index) || !leftovers().isEmpty || segmentFiles() != count {
                    failures.fail("\(label): the failed roll left \(leftovers()), \(segmentFiles()) segment files")
                }
                // Still full: a retry fails the same way; committing needs no space.
                do {
                    try log.append(bytes)
                    failures.fail("\(label): appended on a full disk")
                } catch {
                    if error.code != .noSpace { failures.fail("\(label): retry: \(error)") }
                }
                durable = try log.commit()
                if durable != LSN(index) { failures.fail("\(label): commit on a full disk reached \(durable)") }
                FaultInjection.disarm(directory: directory)
                if count % 2 == 1 {
                    try log.close()
                    log = try Log.open(directory, options: options())
                    if log.recoveryReport.outcome != .clean || log.writtenLSN != LSN(index) {
                        failures.fail("\(label): reopened \(log.recoveryReport.outcome) at \(log.writtenLSN)")
                    }
                }
            }
        }
        if durable > LSN(index) { failures.fail("\(label): durable \(durable) beyond \(index)") }
        try log.close()
        if !leftovers().isEmpty { failures.fail("\(label): left \(leftovers()) after closing") }

        let reopened = try Log.open(directory, options: options())
        let records = (try reopened.records().collect())
        if reopened.recoveryReport.outcome != .clean || records.count != index || reopened.segments.count != segments {
            failures.fail("\(label): reopened \(reopened.recoveryReport.outcome) with \(records.count) records in "
                          + "\(reopened.segments.count) segments, expected \(index) in \(segments)")
        }
        for record in records where record.payload != payloads[Int(record.lsn) - 1] {
            failures.fail("\(label): record \(record.lsn) differs")
            break
        }
        try reopened.close()
        return surfaced
    }
}
