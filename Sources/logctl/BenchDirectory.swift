import Foundation
import LogStore
import Synchronization

/// Where the rows of one `logctl bench` run keep their logs: a directory per row, removed after
/// the row, inside either the user's --dir (never removed, nor anything else in it) or a new
/// directory under /tmp (removed at the end).
final class BenchDirectory: Sendable {
    let path: String
    /// Whether `path` was created by this run, and so is removed at the end.
    let ownsPath: Bool
    /// The row directories in use, for removal on SIGINT/SIGTERM.
    private let current = Mutex<[String]>([])

    init(under directory: String?) throws {
        if let directory {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
                throw LogError(.notFound, "--dir does not exist", path: directory)
            }
            guard isDirectory.boolValue else {
                throw LogError(.invalidArgument, "--dir is not a directory", path: directory)
            }
            path = directory
            ownsPath = false
        } else {
            path = try Self.makeUniqueDirectory("/tmp/logctl-bench-")
            ownsPath = true
        }
    }

    /// Runs `body` with a new, empty directory that is removed afterwards, whatever happens.
    func withRowDirectory<T>(_ name: String, _ body: (String) throws -> T) throws -> T {
        try withRowDirectories([name]) { try body($0[0]) }
    }

    /// The same for rows measured together (in rounds): one new directory per name.
    func withRowDirectories<T>(_ names: [String], _ body: ([String]) throws -> T) throws -> T {
        defer {
            for row in current.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: row) }
            current.withLock { $0 = [] }
        }
        for name in names {
            let row = try Self.makeUniqueDirectory(path + "/logctl-bench-" + name + "-")
            current.withLock { $0.append(row) }
        }
        return try body(current.withLock { $0 })
    }

    /// Removes what this run created.
    func finish() {
        if ownsPath { try? FileManager.default.removeItem(atPath: path) }
    }

    /// Until cancelled, SIGINT and SIGTERM remove what this run created before exiting: a
    /// benchmark log is tens of MiB to GiBs that nobody wants left behind.
    func removeOnSignal() -> SignalCleanup {
        SignalCleanup(signals: [SIGINT, SIGTERM]) { [self] in
            for row in current.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: row) }
            finish()
        }
    }

    private static func makeUniqueDirectory(_ prefix: String) throws -> String {
        var template = Array((prefix + "XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw systemCallError("cannot create a directory for the benchmark", path: prefix + "XXXXXX")
        }
        return String(cString: made)
    }
}

/// Handles signals on a background queue instead of in a signal handler, where removing files
/// would not be safe.
final class SignalCleanup {
    private let sources: [any DispatchSourceSignal]
    private let signals: [Int32]

    init(signals: [Int32], cleanup: @escaping @Sendable () -> Void) {
        self.signals = signals
        sources = signals.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                cleanup()
                // Leave the terminal on a fresh line if a progress line was showing.
                if isatty(2) == 1 { _ = write(2, "\r\u{1B}[K", 4) }
                _exit(128 + number)
            }
            source.resume()
            return source
        }
    }

    func cancel() {
        for source in sources { source.cancel() }
        for number in signals { signal(number, SIG_DFL) }
    }
}
