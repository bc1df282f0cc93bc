import Foundation
import LogStore
import Synchronization

/// A `logctl append` child process: lines go to its stdin, acknowledged LSNs come back on its
/// stdout, and it can be killed with SIGKILL at any moment.
final class ChildWriter {
    let pid: Int32
    private let process: Process
    private let input: Int32
    private let acknowledged = Acknowledged()
    private let reader: Thread

    /// The path of the running logctl binary, so the child is the same build.
    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    init(arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executablePath)
        process.arguments = ["append"] + arguments
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        pid = process.processIdentifier
        input = stdin.fileHandleForWriting.fileDescriptor
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

    func kill() {
        _ = Foundation.kill(pid, SIGKILL)
        process.waitUntilExit()
        // The pipe closes with the child; let the reader drain what was printed before.
        while !reader.isFinished { usleep(1000) }
    }

    /// Closes stdin and waits for a clean exit; returns the exit status.
    func finish() -> Int32 {
        close(input)
        process.waitUntilExit()
        while !reader.isFinished { usleep(1000) }
        return process.terminationStatus
    }
}

/// LSNs printed by the child, shared with the thread that reads them.
private final class Acknowledged: Sendable {
    let lsns = Mutex<[LSN]>([])
}
