import Foundation
import LogStore
import Synchronization

/// A `logctl append` child process: lines go to its stdin, acknowledged LSNs come back on its
/// stdout, and it can be killed with SIGKILL at any moment.
final class ChildWriter {
    let pid: Int32
    private let process: Process
    private let input: Int32
    /// Owns `input`: closing through it keeps the descriptor from being closed twice.
    private let inputHandle: FileHandle
    private let errors: FileHandle?
    private let acknowledged = Acknowledged()
    private let reader: Thread

    /// The path of the running logctl binary, so the child is the same build.
    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// `captureErrors`: keep what the child writes on stderr (its one-line error, should it fail
    /// by itself) for `errorOutput`; otherwise it goes nowhere.
    init(arguments: [String], captureErrors: Bool = false) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executablePath)
        process.arguments = ["append"] + arguments
        let stdin = Pipe()
        let stdout = Pipe()
        let stderr = captureErrors ? Pipe() : nil
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = stderr ?? FileHandle.nullDevice
        try process.run()
        self.process = process
        pid = process.processIdentifier
        inputHandle = stdin.fileHandleForWriting
        input = inputHandle.fileDescriptor
        errors = stderr?.fileHandleForReading
        let output = stdout.fileHandleForReading.fileDescriptor
        let acknowledged = self.acknowledged
        reader = Thread {
            var lines = LineReader(descriptor: output)
            while let line = try? lines.next() {
                guard let lsn = LSN(String(decoding: line, as: UTF8.self)) else { continue }
                acknowledged.lsns.withLock { $0.append(lsn) }
            }
        }
        reader.start()
    }

    /// Writes one record line; false once the child is gone.
    func send(_ line: [UInt8]) -> Bool {
        var bytes = line + [UInt8(ascii: "\n")]
        var done = 0
        while done < bytes.count {
            let written = bytes.withUnsafeMutableBytes { write(input, $0.baseAddress! + done, $0.count - done) }
            if written < 0 {
                if errno == EINTR { continue }
                return false
            }
            done += written
        }
        bytes.removeAll()
        return true
    }

    /// LSNs the child printed so far, in order.
    var acknowledgedLSNs: [LSN] { acknowledged.lsns.withLock { $0 } }

    var acknowledgedCount: Int { acknowledged.lsns.withLock { $0.count } }

    var isRunning: Bool { process.isRunning }

    /// Waits until the child printed `count` LSNs; false on timeout or when it exited first.
    func waitForAcknowledgements(_ count: Int, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while acknowledgedCount < count {
            if !process.isRunning || Date() > deadline { return acknowledgedCount >= count }
            usleep(200)
        }
        return true
    }

    /// SIGKILL (unless the child already exited by itself), then waits until it is gone and
    /// every LSN it printed has been read.
    func kill() {
        if process.isRunning { _ = Foundation.kill(pid, SIGKILL) }
        process.waitUntilExit()
        // The pipe closes with the child; let the reader drain what was printed before.
        while !reader.isFinished { usleep(1000) }
        try? inputHandle.close()
    }

    /// Closes stdin and waits for a clean exit; returns the exit status.
    func finish() -> Int32 {
        try? inputHandle.close()
        process.waitUntilExit()
        while !reader.isFinished { usleep(1000) }
        return process.terminationStatus
    }

    /// After `kill` or `finish`: whether the child died of a signal (not by exiting itself).
    var wasKilled: Bool { process.terminationReason == .uncaughtSignal }

    /// After `kill` or `finish`: the exit status, or the signal number when `wasKilled`.
    var status: Int32 { process.terminationStatus }

    /// After `kill` or `finish`, with `captureErrors`: what the child wrote on stderr.
    var errorOutput: String {
        guard let errors, let data = try? errors.readToEnd() else { return "" }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// LSNs printed by the child, shared with the thread that reads them.
private final class Acknowledged: Sendable {
    let lsns = Mutex<[LSN]>([])
}
