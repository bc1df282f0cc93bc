import Foundation
@testable import LogStore
import Logging
import MetricsTestKit
import Synchronization
import Testing

/// A fresh directory under the system temp dir, removed when the value goes away.
final class TemporaryDirectory: @unchecked Sendable {
    let path: String

    init(_ label: String = "logstore") {
        _ = quietLogging
        var template = Array((NSTemporaryDirectory() + "/\(label)-XXXXXX").utf8CString)
        let result = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(result != nil, "mkdtemp failed")
        path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A path inside this directory (not created).
    func child(_ name: String) -> String { path + "/" + name }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// LogStore logs every open through swift-log, and this process opens logs by the thousand:
/// the default handler stays quiet. Tests that check messages pass their own `Options.logger`.
let quietLogging: Void = LoggingSystem.bootstrap { _ in SwiftLogNoOpLogHandler() }

/// Deterministic payloads: record `index` of a test has content that depends on its index
/// and a seed, with lengths that vary to exercise padding and page boundaries.
func payload(_ index: Int, seed: UInt64 = 0, maxLength: Int = 300) -> [UInt8] {
    var generator = SplitMix64(seed: seed &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15)
    let length = Int(generator.next() % UInt64(maxLength + 1))
    return (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
}

func options(segmentSize: Int = 1 << 20, recovery: RecoveryMode = .tornTail, sync: Log.SyncMode = .msync)
    -> Log.Options
{
    _ = quietLogging
    return Log.Options(segmentSize: segmentSize, createIfMissing: true, recovery: recovery, sync: sync)
}

/// Every file of a directory with its bytes, for "nothing was modified" checks and copies.
func snapshot(_ directory: String) throws -> [String: Data] {
    var files: [String: Data] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
        do {
            files[name] = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name))
        } catch CocoaError.fileReadNoSuchFile {
            // A live log's background preparer renames its temporary file between the listing
            // and the read: the snapshot is then the directory as listed a moment later.
            continue
        }
    }
    return files
}

/// Writes `files` into a new directory (the inverse of `snapshot`).
func restore(_ files: [String: Data], into directory: String) throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    for (name, data) in files { try data.write(to: URL(fileURLWithPath: directory + "/" + name)) }
}

func segmentPath(_ directory: String, id: UInt64 = 1) -> String {
    directory + "/" + Format.segmentFileName(id: id)
}

/// Reads every record of a log opened read-only.
func readAll(_ directory: String) throws -> [Log.Record] {
    let log = try Log.openReadOnly(directory)
    defer { try? log.close() }
    return (try log.records().collect())
}

/// Runs `body` expecting a LogError with `code`; returns it.
@discardableResult
func expectLogError(_ code: LogError.Code, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void)
    -> LogError?
{
    do {
        try body()
        Issue.record("expected LogError.\(code), but nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as LogError {
        #expect(error.code == code, "got \(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected LogError.\(code), got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Whether this process may mount filesystems (root in a VM or container that allows it).
let canMountTmpfs: Bool = {
    guard getuid() == 0 else { return false }
    let probe = TemporaryDirectory("mount-probe")
    let mounted = run("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", probe.path]) == 0
    if mounted { _ = run("/bin/umount", [probe.path]) }
    return mounted
}()

@discardableResult
func run(_ executable: String, _ arguments: [String]) -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    do { try process.run() } catch { return -1 }
    process.waitUntilExit()
    return process.terminationStatus
}

/// Recomputes a segment header's CRC after a test changed its fields on purpose.
func resealHeader(_ bytes: inout [UInt8]) {
    let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<76])) }
    withUnsafeBytes(of: crc.littleEndian) { bytes.replaceSubrange(76..<80, with: $0) }
}

func resealHeader(_ data: inout Data) {
    var bytes = Array(data.prefix(4096))
    resealHeader(&bytes)
    data.replaceSubrange(0..<4096, with: bytes)
}

/// A log in `directory` that committed 10 records, then appended past a roll until segment 2
/// holds at least 5 records, and whose next commit installed segment 2 (durable, named) and
/// then failed to sync the pages: segment 2 exists and holds nothing acknowledged. Returns
/// every record appended; the log is dropped without `close`, as a crash would leave it.
func logWithAnUnacknowledgedRoll(_ directory: String) throws -> [Log.Record] {
    let log = try Log.open(directory, options: options())
    for index in 0..<10 { try log.append(payload(index, maxLength: 1000)) }
    try log.commit()
    var index = 10
    while log.segments.count < 2 || log.segments[1].recordCount < 5 {
        try log.append(payload(index, maxLength: 1000))
        index += 1
    }
    FaultInjection.arm(.sync, directory: directory, after: 1, errno: .ioError)
    defer { FaultInjection.disarm(directory: directory) }
    #expect(throws: LogError.self) { try log.commit() }
    return (try log.records().collect())
}

/// Appends records of its own to a log from any thread, and holds a background thread of the
/// log (the converter, the prefaulter) inside the range it chose while records reach into it:
/// the tests that no such thread changes a byte of what was appended meanwhile.
final class RangeHoldingAppender: Sendable {
    let seed: UInt64
    let log = Mutex<Log?>(nil)
    let appended = Mutex<[(LSN, [UInt8])]>([])
    let holds = Atomic<Int>(0)

    init(seed: UInt64) { self.seed = seed }

    /// False once the log is gone or closed.
    @discardableResult
    func appendOne() -> Bool {
        appended.withLock { records in
            guard let log = log.withLock({ $0 }) else { return false }
            let record = payload(records.count, seed: seed, maxLength: 400)
            guard let lsn = try? log.append(record) else { return false }
            records.append((lsn, record))
            return true
        }
    }

    /// Called on the background thread with the range it is about to touch: appends records
    /// until they reach past the middle of it.
    func hold(_ bytes: Range<Int>) {
        guard let log = log.withLock({ $0 }) else { return }
        holds.add(1, ordering: .relaxed)
        while let active = log.segments.last, active.bytesUsed <= bytes.lowerBound + bytes.count / 2, appendOne() {}
    }

    /// Stops appending (a held round may still run), commits and closes `log`, and expects
    /// every record appended to read back unchanged from `directory`.
    func expectEveryRecordAfterClosing(_ log: Log, directory: String) throws {
        self.log.withLock { $0 = nil }
        appended.withLock { _ in }
        try log.commit()
        try log.close()
        let reopened = try Log.openReadOnly(directory, checkSealedSegments: true)
        #expect(reopened.recoveryReport.outcome == .clean)
        let records = appended.withLock { $0 }
        #expect(reopened.writtenLSN == LSN(records.count))
        for (lsn, payload) in records {
            #expect(try reopened.record(lsn).payload == payload, "record \(lsn)")
        }
    }
}

/// `options(segmentSize:)` reporting to `metrics`, with `dimensions` on every metric.
func options(segmentSize: Int, metrics: TestMetrics, dimensions: [(String, String)]) -> Log.Options {
    var options = options(segmentSize: segmentSize)
    options.metricsFactory = metrics
    options.metricsDimensions = dimensions
    return options
}

/// The total of the counter `label` with `dimensions` (0 before anything was counted).
func counterTotal(_ metrics: TestMetrics, _ label: String, _ dimensions: [(String, String)]) -> Int64 {
    (try? metrics.expectCounter(label, dimensions).totalValue) ?? 0
}
