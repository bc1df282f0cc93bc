import Foundation
import LogStore
import Testing

/// The logctl binary built beside this test bundle (or $LOGCTL).
let logctlPath: String = {
    if let path = ProcessInfo.processInfo.environment["LOGCTL"] { return path }
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent("logctl").path
}()

struct Outcome {
    var status: Int32
    var signalled: Bool
    var stdout: String
    var stderr: String
}

/// Runs logctl to completion with `input` on stdin.
func logctl(
    _ arguments: [String], input: String = "", executable: String = logctlPath, environment: [String: String] = [:]
) throws -> Outcome {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if !environment.isEmpty {
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let stdin = Pipe()
    let stdout = Pipe()
    let stderr = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stderr
    try process.run()
    let writer = Thread {
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try? stdin.fileHandleForWriting.close()
    }
    writer.start()
    let out = stdout.fileHandleForReading.readDataToEndOfFile()
    let err = stderr.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Outcome(
        status: process.terminationStatus, signalled: process.terminationReason == .uncaughtSignal,
        stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
}

final class Scratch: @unchecked Sendable {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "/logctl-test-" + UUID().uuidString
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func child(_ name: String) -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// Every file of a directory with its bytes.
func snapshot(_ directory: String) throws -> [String: Data] {
    var files: [String: Data] = [:]
    for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
        files[name] = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name))
    }
    return files
}


/// Runs logctl with stdout and stderr on a pseudo-terminal (script(1)), as a person would;
/// the output comes back with the terminal's \r\n line ends.
func logctlOnTerminal(_ arguments: [String], environment: [String: String] = [:]) throws -> Outcome {
    let command = ([logctlPath] + arguments).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        .joined(separator: " ")
    var clean = environment
    if clean["NO_COLOR"] == nil { clean["NO_COLOR"] = "" }
    return try logctl(["-qec", command, "/dev/null"], executable: "/usr/bin/script", environment: clean)
}

let scriptAvailable = FileManager.default.isExecutableFile(atPath: "/usr/bin/script")

/// What a read-only subcommand must not change: every file's bytes, size and modification
/// time, and the directory's own modification time (a file created or removed changes it).
func fingerprint(_ directory: String) throws -> [String: String] {
    func stamp(_ path: String) throws -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        return "\(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
    }
    var result: [String: String] = [".": try stamp(directory)]
    for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
        let path = directory + "/" + name
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        result[name] = try stamp(path) + " crc \(CRC32C.checksum(bytes))"
    }
    return result
}

/// A `logctl append` child holding the writer lock, fed through its stdin.
final class LiveWriter {
    let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private var printed = ""

    init(_ directory: String, arguments: [String] = []) throws {
        process.executableURL = URL(fileURLWithPath: logctlPath)
        process.arguments = ["append", directory, "--create", "--segment-size", "1M"] + arguments
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    /// Sends lines and returns once the writer printed `lsn` (made it durable).
    func write(_ lines: [String], through lsn: LSN) {
        input.fileHandleForWriting.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        while !printed.split(separator: "\n").contains(Substring("\(lsn)")) {
            let chunk = output.fileHandleForReading.availableData
            if chunk.isEmpty { return }
            printed += String(decoding: chunk, as: UTF8.self)
        }
    }

    var pid: Int32 { process.processIdentifier }

    /// Ends input and waits for a clean exit.
    func finish() -> Int32 {
        try? input.fileHandleForWriting.close()
        _ = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return process.terminationStatus
    }
}

/// Writes `lines` with `logctl append` into a new log of 1 MiB segments and returns its records.
@discardableResult
func makeLog(_ directory: String, _ lines: [String], arguments: [String] = []) throws -> [Log.Record] {
    let result = try logctl(["append", directory, "--create", "--segment-size", "1M"] + arguments,
                            input: lines.joined(separator: "\n") + "\n")
    #expect(result.status == 0, "\(result.stderr)")
    return try Log.openReadOnly(directory).records().collect()
}

/// XORs `mask` into the byte `delta` bytes into `record` (32: its payload's first byte).
func damage(_ directory: String, _ record: Log.Record, at delta: Int, mask: UInt8 = 0x5A) throws {
    let path = directory + "/" + record.segment
    var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    bytes[record.offset + delta] ^= mask
    try bytes.write(to: URL(fileURLWithPath: path))
}

/// A log whose last record nothing proves durable (`--sync none`) has a damaged payload: a torn tail.
@discardableResult
func tornLog(_ directory: String, records count: Int) throws -> [Log.Record] {
    let records = try makeLog(directory, (1...count).map { String(UnicodeScalar(UInt8(96 + $0))) }, arguments: ["--sync", "none"])
    try damage(directory, records[count - 1], at: 32, mask: 1)
    return records
}
