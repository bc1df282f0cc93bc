import Foundation
import Histogram
import LogStore
import Synchronization
import SystemPackage

/// What one timed loop of `logctl bench` measured.
struct BenchMeasurement {
    /// Records made durable.
    var records: Int
    /// Wall time of the timed part.
    var nanoseconds: UInt64
    /// Per-commit latency in nanoseconds; nil for bulk, which has one commit.
    var latency: Histogram<UInt64>?

    /// Nothing measured yet: the start of a durable row measured in rounds.
    static func empty() -> BenchMeasurement {
        BenchMeasurement(records: 0, nanoseconds: 0, latency: BenchRunner.makeHistogram())
    }

    /// Adds another round of the same row: its records, its time and its latencies.
    mutating func add(_ round: BenchMeasurement) {
        records += round.records
        nanoseconds += round.nanoseconds
        if let other = round.latency { latency?.add(other) }
    }
}

/// The timed loops of `logctl bench`: through the library, and the raw `pwrite` + `fdatasync`
/// baseline they are compared with. Every loop reuses one payload buffer, so nothing in it
/// allocates per record.
struct BenchRunner: Sendable {
    let payload: [UInt8]

    init(size: Int) {
        payload = [UInt8](repeating: 0xA5, count: size)
    }

    var size: Int { payload.count }

    /// A fixed range (1 ns to an hour, 3 significant digits) so that recording never resizes,
    /// and so that per-thread histograms share a layout and can be merged.
    static func makeHistogram() -> Histogram<UInt64> {
        Histogram(
            lowestDiscernibleValue: 1, highestTrackableValue: latencyCeiling, numberOfSignificantValueDigits: .three)
    }

    static let latencyCeiling: UInt64 = 3_600_000_000_000

    // MARK: - Through the library

    /// One writer; each record durable before the next is appended.
    func durableSerial(_ log: Log, records: Int) throws -> BenchMeasurement {
        var histogram = Self.makeHistogram()
        let start = monotonicNanoseconds()
        try payload.withUnsafeBufferPointer { buffer in
            for _ in 0..<records {
                let before = monotonicNanoseconds()
                try log.appendAndCommit(buffer)
                histogram.record(min(monotonicNanoseconds() - before, Self.latencyCeiling))
            }
        }
        return BenchMeasurement(records: records, nanoseconds: monotonicNanoseconds() - start, latency: histogram)
    }

    /// `writers` threads, each appending one record and waiting for it to be durable, until
    /// `duration` has passed. The clock starts once every thread is ready to go.
    func durableConcurrent(_ log: Log, writers: Int, duration: Double) throws -> BenchMeasurement {
        let run = ConcurrentRun()
        let payload = payload
        for _ in 0..<writers {
            run.finished.enter()
            let thread = Thread {
                run.ready.signal()
                run.go.wait()
                var tally = WriterTally(deadline: run.deadline.load(ordering: .acquiring))
                payload.withUnsafeBufferPointer { buffer in
                    while !run.stop.load(ordering: .relaxed) {
                        let before = monotonicNanoseconds()
                        do { try log.appendAndCommit(buffer) } catch {
                            run.fail(error)
                            break
                        }
                        if !tally.record(since: before) { break }
                    }
                }
                run.results.withLock { $0.append((tally.count, tally.histogram)) }
                run.finished.leave()
            }
            thread.start()
        }
        for _ in 0..<writers { run.ready.wait() }
        let start = monotonicNanoseconds()
        run.deadline.store(start + UInt64(duration * 1e9), ordering: .releasing)
        for _ in 0..<writers { run.go.signal() }
        run.finished.wait()
        return try run.measurement(nanoseconds: monotonicNanoseconds() - start)
    }

    /// `writers` Swift tasks on the cooperative pool, each awaiting `log.append(_:)` (which
    /// returns once its record is durable, holding no thread meanwhile) in a loop until
    /// `duration` has passed.
    func durableConcurrentAsync(_ log: Log, writers: Int, duration: Double) throws -> BenchMeasurement {
        let run = ConcurrentRun()
        let payload = payload
        let start = monotonicNanoseconds()
        let deadline = start + UInt64(duration * 1e9)
        run.finished.enter()
        Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<writers {
                    group.addTask {
                        var tally = WriterTally(deadline: deadline)
                        while !run.stop.load(ordering: .relaxed) {
                            let before = monotonicNanoseconds()
                            do { _ = try await log.append(payload) } catch {
                                run.fail(error)
                                break
                            }
                            if !tally.record(since: before) { break }
                        }
                        run.results.withLock { [tally] in $0.append((tally.count, tally.histogram)) }
                    }
                }
            }
            run.finished.leave()
        }
        // The calling thread is not one of the cooperative pool's, so blocking it is fine.
        run.finished.wait()
        let elapsed = monotonicNanoseconds() - start
        return try run.measurement(nanoseconds: elapsed)
    }

    /// One writer appends every record, then one commit makes them all durable.
    func bulk(_ log: Log, records: Int) throws -> BenchMeasurement {
        let start = monotonicNanoseconds()
        try payload.withUnsafeBytes { buffer in
            for _ in 0..<records { try log.append(buffer) }
        }
        try log.commit()
        return BenchMeasurement(records: records, nanoseconds: monotonicNanoseconds() - start, latency: nil)
    }

    // MARK: - Raw baseline

    /// `pwrite` + `fdatasync` per record into a preallocated file: the least a durable append
    /// can cost on this disk with one writer.
    func rawSerial(path: String, records: Int) throws -> BenchMeasurement {
        try rawSerial(into: RawFile(path: path, capacity: records * size), records: 0..<records)
    }

    /// The same loop over records `records` of a file made for them all (one round of a row).
    func rawSerial(into file: RawFile, records: Range<Int>) throws -> BenchMeasurement {
        var histogram = Self.makeHistogram()
        let start = monotonicNanoseconds()
        try payload.withUnsafeBytes { buffer in
            for index in records {
                let before = monotonicNanoseconds()
                try file.write(buffer, at: index * size)
                try file.dataSync()
                histogram.record(min(monotonicNanoseconds() - before, Self.latencyCeiling))
            }
        }
        return BenchMeasurement(records: records.count, nanoseconds: monotonicNanoseconds() - start, latency: histogram)
    }

    /// The same loop run for `duration` instead of a record count (durable-concurrent's baseline).
    func rawTimed(path: String, duration: Double) throws -> BenchMeasurement {
        // How many records fit in `duration` is unknown beforehand: start with 64 MiB (more than
        // most disks sync in a few seconds) and extend when a fast one gets there.
        let chunk = max(64 << 20, size)
        let file = try RawFile(path: path, capacity: chunk)
        var histogram = Self.makeHistogram()
        var records = 0
        let start = monotonicNanoseconds()
        let deadline = start + UInt64(duration * 1e9)
        try payload.withUnsafeBytes { buffer in
            while true {
                let offset = records * size
                if offset + size > file.capacity { try file.extend(by: chunk) }
                let before = monotonicNanoseconds()
                try file.write(buffer, at: offset)
                try file.dataSync()
                let after = monotonicNanoseconds()
                histogram.record(min(after - before, Self.latencyCeiling))
                records += 1
                if after >= deadline { break }
            }
        }
        return BenchMeasurement(records: records, nanoseconds: monotonicNanoseconds() - start, latency: histogram)
    }

    /// `pwrite` of every record, then one `fdatasync`.
    func rawBulk(path: String, records: Int) throws -> BenchMeasurement {
        let file = try RawFile(path: path, capacity: records * size)
        let start = monotonicNanoseconds()
        try payload.withUnsafeBytes { buffer in
            for index in 0..<records { try file.write(buffer, at: index * size) }
        }
        try file.dataSync()
        return BenchMeasurement(records: records, nanoseconds: monotonicNanoseconds() - start, latency: nil)
    }
}

/// One concurrent writer's commits. Each writer keeps its own histogram: sharing one would put
/// a lock (or a data race) inside the timed loop.
private struct WriterTally {
    let deadline: UInt64
    var histogram = BenchRunner.makeHistogram()
    var count = 0

    /// Counts a commit that started at `before`; false once the deadline has passed.
    mutating func record(since before: UInt64) -> Bool {
        let after = monotonicNanoseconds()
        histogram.record(min(after - before, BenchRunner.latencyCeiling))
        count += 1
        return after < deadline
    }
}

/// What the writers (threads or tasks) of one durable-concurrent row share.
private final class ConcurrentRun: Sendable {
    let ready = DispatchSemaphore(value: 0)
    let go = DispatchSemaphore(value: 0)
    let finished = DispatchGroup()
    let deadline = Atomic<UInt64>(0)
    /// Set by the first writer that fails, so that the others stop too.
    let stop = Atomic<Bool>(false)
    let failure = Mutex<(any Error)?>(nil)
    let results = Mutex<[(count: Int, histogram: Histogram<UInt64>)]>([])

    func fail(_ error: any Error) {
        failure.withLock { if $0 == nil { $0 = error } }
        stop.store(true, ordering: .relaxed)
    }

    /// The writers' counts and histograms merged, or the first writer's error.
    func measurement(nanoseconds: UInt64) throws -> BenchMeasurement {
        if let failure = failure.withLock({ $0 }) { throw failure }
        var merged = BenchRunner.makeHistogram()
        var records = 0
        for (count, histogram) in results.withLock({ $0 }) {
            records += count
            merged.add(histogram)
        }
        return BenchMeasurement(records: records, nanoseconds: nanoseconds, latency: merged)
    }
}

/// The raw baseline's file, preallocated and fsync'd before any timing so that the timed loop
/// pays for data (and unwritten-extent conversion, as the log does), not for allocation.
final class RawFile {
    let path: String
    let descriptor: Int32
    private(set) var capacity = 0

    init(path: String, capacity: Int) throws {
        self.path = path
        descriptor = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw systemCallError("cannot create the raw baseline file", path: path) }
        try extend(by: capacity)
    }

    deinit { close(descriptor) }

    func extend(by bytes: Int) throws {
        // posix_fallocate rejects a zero length (0-byte records need no space at all).
        if bytes > 0 {
            let result = posix_fallocate(descriptor, off_t(capacity), off_t(bytes))
            guard result == 0 else {
                throw systemCallError("cannot preallocate the raw baseline file", path: path, errno: result)
            }
        }
        guard fsync(descriptor) == 0 else { throw systemCallError("cannot fsync the raw baseline file", path: path) }
        capacity += bytes
    }

    func write(_ buffer: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < buffer.count {
            let written = pwrite(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if written < 0 {
                if errno == EINTR { continue }
                throw systemCallError("pwrite failed", path: path)
            }
            done += written
        }
    }

    func dataSync() throws {
        guard fdatasync(descriptor) == 0 else { throw systemCallError("fdatasync failed", path: path) }
    }
}

/// A failed system call of the benchmark itself (raw baseline, directories), classified like the
/// library's own errors so that logctl exits with the same codes.
func systemCallError(_ what: String, path: String, errno code: Int32 = errno) -> LogError {
    let kind: LogError.Code
    switch code {
    case ENOSPC, EDQUOT: kind = .noSpace
    case EACCES, EPERM, EROFS: kind = .permissionDenied
    case ENOENT: kind = .notFound
    default: kind = .ioError
    }
    return LogError(kind, "\(what): \(String(cString: strerror(code)))", path: path, errno: Errno(rawValue: code))
}

@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}
