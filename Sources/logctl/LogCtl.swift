import ArgumentParser
import Foundation
import LogStore
import Logging

@main
struct LogCtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logctl",
        abstract: "Inspect, verify, recover, write and demonstrate LogStore logs.",
        discussion: """
            Read-only subcommands (dump, tail, stat, verify, recover without --apply) take no lock and
            never change a byte; they work while a writer appends. Mutating ones (append, recover
            --apply) take the writer lock and refuse with exit 4 while another writer holds it.

            Exit codes:
              0  success (verify: the log is clean)
              1  verify: only a torn tail (recovery would drop it; nothing acknowledged is affected)
              2  corruption of data that was durable (recover: a writer in that mode would refuse;
                 demo, crashtest: an acknowledged record was lost)
              3  not a log, unreadable, or bad arguments
              4  the log is locked by another writer
              5  any other I/O failure (full disk, failed sync, ...)

            Shell completion: logctl --generate-completion-script bash|zsh|fish
            (e.g. logctl --generate-completion-script bash > /etc/bash_completion.d/logctl)
            """,
        subcommands: [
            Append.self, Dump.self, Tail.self, Stat.self, Verify.self, Recover.self, Truncate.self, Demo.self, Bench.self,
            CrashTest.self,
        ]
    )

    /// Runs the command; every failure becomes one line on stderr and a documented exit code.
    static func main() {
        signal(SIGPIPE, SIG_IGN)
        bootstrapLogging()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let error as LogError {
            fail(error.description + (hint(for: error.code).map { " — " + $0 } ?? ""), code: exitCode(for: error))
        } catch let error as ExitCode {
            Foundation.exit(error.rawValue)
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }
            fail(message(for: error).replacingOccurrences(of: "\n", with: " ") + " (see logctl help)", code: 3)
        }
    }

    /// LogStore's own messages (recovery, failed syncs, rolls) are off: logctl reports what
    /// matters itself, one line per error. `LOGCTL_LOG_LEVEL=info` (any swift-log level) shows
    /// them on stderr.
    static func bootstrapLogging() {
        let level = ProcessInfo.processInfo.environment["LOGCTL_LOG_LEVEL"].flatMap(Logger.Level.init(rawValue:))
        LoggingSystem.bootstrap { label in
            guard let level else { return SwiftLogNoOpLogHandler() }
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }

    static func exitCode(for error: LogError) -> Int32 {
        switch error.code {
        case .corruption: 2
        case .notFound, .notALog, .unsupportedVersion, .invalidArgument, .lsnOutOfRange, .permissionDenied,
            .readOnly, .closed, .truncated:
            3
        case .locked: 4
        case .recordTooLarge, .noSpace, .ioError, .poisoned, .syncModeUnavailable: 5
        }
    }

    /// What to do about an error, appended to its line.
    static func hint(for code: LogError.Code) -> String? {
        switch code {
        case .notFound: "check the path (logctl append DIR --create makes a new log)"
        case .notALog: "point logctl at a LogStore log directory"
        case .unsupportedVersion: "use a logctl built from a LogStore that knows this format version"
        case .corruption:
            "see logctl verify DIR for every problem, and logctl recover DIR --mode point-in-time "
                + "(or salvage) for what keeping the valid records would drop"
        case .locked: "wait for that writer to exit or stop it; dump, tail, stat and verify work meanwhile"
        case .permissionDenied: "run as a user who may read (and, to write, modify) the log directory"
        case .noSpace: "free some disk space and retry"
        case .syncModeUnavailable: "choose --sync msync or fdatasync"
        case .invalidArgument, .lsnOutOfRange, .readOnly, .closed, .truncated, .recordTooLarge, .ioError, .poisoned: nil
        }
    }

    static func fail(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data(("logctl: " + message + "\n").utf8))
        Foundation.exit(code)
    }
}

/// The log directory argument every subcommand takes.
struct LogDirectory: ParsableArguments {
    @Argument(help: "The log directory.")
    var directory: String
}

/// `--json` for scripts.
struct OutputFormat: ParsableArguments {
    @Flag(help: "Print JSON (one object per line) instead of text.")
    var json = false
}
