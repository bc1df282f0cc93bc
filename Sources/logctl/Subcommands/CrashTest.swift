import ArgumentParser
import Foundation
import LogStore
import Synchronization

extension LogCtl {
    struct CrashTest: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "crashtest",
            abstract: "Kill -9 a writer again and again on your disk and check that no acknowledged record is lost.",
            discussion: """
                For each sync mode, crashtest creates a log in a new directory of its own
                inside DIR (logctl-crashtest-MODE-XXXXXX) and runs --cycles cycles of: start `logctl append` (this binary)
                on the log, feed it records, read the LSNs it prints once they are durable,
                SIGKILL it, then open the log read-only and check that every acknowledged
                record is there byte for byte, that LSNs run from 1 without gaps and that no
                record exists that was not sent. The next cycle's writer recovers the log
                and appends on; at the end one more writer appends after recovery and exits
                cleanly.

                The kill moment, the --batch of each writer and the records come from
                --seed: sometimes while the writer opens and recovers the log, while records
                stream in, right after a batch was acknowledged, or with a batch half
                appended. The timing is the machine's, so a replay repeats the same choices,
                not the same instants.

                Each mode's directory is removed at the end unless --keep is given; a mode
                that found a violation keeps its log for inspection. Nothing else in DIR is
                touched.

                --json prints one object per mode that ran: mode, cycles, acknowledged,
                verified, lost, seconds, seed.

                Exit codes: 0 no violation; 2 an acknowledged record was lost or changed,
                LSNs have a gap, a record that was never sent exists, or recovery found
                corruption (stderr names the mode, cycle, LSN and the seed to replay); 3 bad
                arguments or DIR missing; 5 a mode could not run (io_uring unavailable, a
                full disk, ...): it was reported and skipped, the others ran.

                Example:
                  logctl crashtest /mnt/data --mode msync,fdatasync --cycles 50
                """)

        @Argument(help: "An existing directory on the disk to test.")
        var directory: String

        @Option(help: "Sync modes to test, comma-separated.")
        var mode = "msync,uring,fdatasync"

        @Option(help: "Kill -9 cycles per mode.")
        var cycles = 20

        @Option(help: "Random seed (printed, so that a run can be replayed).")
        var seed: UInt64?

        @Option(help: "Segment size of the test logs (small, so that they roll segments).")
        var segmentSize = "1MiB"

        @Flag(help: "Keep the test logs.")
        var keep = false

        @OptionGroup var format: OutputFormat

        static let maxCycles = 1_000_000

        func validate() throws { _ = try modes() }

        func modes() throws -> [Log.SyncMode] {
            guard cycles >= 1, cycles <= Self.maxCycles else {
                throw ValidationError("--cycles must be a whole number from 1 to \(Self.maxCycles)")
            }
            // Log.Options' documented range; the library checks it again when the log is created.
            guard let bytes = parseByteCount(segmentSize), bytes >= 1 << 20, bytes <= 1 << 32, bytes % 4096 == 0 else {
                throw ValidationError("--segment-size '\(segmentSize)' must be 1 MiB to 4 GiB, a multiple of 4 KiB")
            }
            return try Bench.list(mode, option: "--mode").map { name in
                guard let parsed = Log.SyncMode(rawValue: name), parsed != .none else {
                    let known = Log.SyncMode.allCases.filter { $0 != .none }.map(\.rawValue)
                    throw ValidationError(
                        name == "none"
                            ? "--mode none acknowledges nothing, so there is nothing to check"
                            : "unknown --mode '\(name)'; choose from \(known.joined(separator: ", "))")
                }
                return parsed
            }
        }

        func run() throws {
            let modes = try modes()
            let segmentBytes = parseByteCount(segmentSize)!
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
                throw LogError(.notFound, "no such directory", path: directory)
            }
            guard isDirectory.boolValue else { throw LogError(.invalidArgument, "not a directory", path: directory) }
            let seed = seed ?? UInt64.random(in: 1...UInt64(UInt32.max))
            let output = CrashTestOutput(json: format.json, progress: isatty(2) == 1)
            let resources = CrashTestResources(keep: keep)
            let cleanup = SignalCleanup(signals: [SIGINT, SIGTERM]) { resources.abandon() }
            defer { cleanup.cancel() }
            output.start(directory: directory, cycles: cycles, segmentSize: segmentBytes, seed: seed)

            var violation = false
            var skipped = false
            for mode in modes {
                let logDirectory = try resources.makeDirectory(in: directory, mode: mode)
                var run = CrashTestRun(
                    mode: mode, directory: logDirectory, cycles: cycles, seed: seed, segmentSize: segmentBytes)
                let result = run.run(resources: resources) { cycle in
                    output.progress("crashtest \(mode.rawValue): cycle \(cycle)/\(cycles)")
                }
                output.clearProgress()
                switch result.problem {
                case nil:
                    output.row(result)
                    resources.remove(logDirectory)
                case .unavailable(let message):
                    warn("crashtest: mode \(mode.rawValue) cannot run here, skipped: \(message)")
                    output.skipped(mode, reason: "unavailable")
                    skipped = true
                    resources.remove(logDirectory)
                case .failure(let message):
                    warn("crashtest: mode \(mode.rawValue) stopped after \(result.cycles) cycles, skipped: \(message)")
                    output.skipped(mode, reason: "failed")
                    skipped = true
                    resources.remove(logDirectory)
                case .invalidArgument(let message):
                    output.clearProgress()
                    resources.remove(logDirectory)
                    throw ValidationError("--segment-size \(segmentSize): \(message)")
                case .violation(let cycle, let lsn, let message):
                    output.row(result)
                    violation = true
                    let replay = "logctl crashtest DIR --mode \(mode.rawValue) --cycles \(cycles) --seed \(seed)"
                        + (segmentSize == "1MiB" ? "" : " --segment-size \(segmentSize)")
                    warn("crashtest: VIOLATION in mode \(mode.rawValue), cycle \(cycle), "
                         + "LSN \(lsn.map { "\($0)" } ?? "unknown"): \(message); replay with --seed \(seed) "
                         + "(\(replay)); the log is kept in \(logDirectory)")
                }
            }
            output.finish()
            if violation { throw ExitCode(2) }
            if skipped { throw ExitCode(5) }
        }
    }
}

/// What a crashtest run created and is running, for the cleanup at the end and on SIGINT/SIGTERM:
/// the child writer alive (killed on a signal) and the per-mode directories (removed unless
/// --keep; never anything crashtest did not create).
final class CrashTestResources: Sendable {
    let keep: Bool
    private let pid = Mutex<Int32?>(nil)
    private let directories = Mutex<[String]>([])

    init(keep: Bool) { self.keep = keep }

    func running(_ child: Int32?) { pid.withLock { $0 = child } }

    /// A new, empty directory for `mode`'s log.
    func makeDirectory(in parent: String, mode: Log.SyncMode) throws -> String {
        let prefix = (parent.hasSuffix("/") ? parent : parent + "/") + "logctl-crashtest-\(mode.rawValue)-"
        var template = Array((prefix + "XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw systemCallError("cannot create a directory for the crash test", path: prefix + "XXXXXX")
        }
        let path = String(cString: made)
        directories.withLock { $0.append(path) }
        return path
    }

    /// Removes a mode's log (unless --keep): the files a log consists of, then the directory,
    /// which is left alone if anything else appeared in it.
    func remove(_ directory: String) {
        directories.withLock { $0.removeAll { $0 == directory } }
        guard !keep else { return }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names
        where name == "LOCK" || name == Log.watermarkFileName || name.hasSuffix(".seg") || name.hasSuffix(".seg.tmp") || Log.isSideFileName(name)
            || (name.hasSuffix(".partial") && Log.isSideFileName(String(name.dropLast(".partial".count))))
        {
            unlink(directory + "/" + name)
        }
        if rmdir(directory) != 0 && errno != ENOENT {
            warn("crashtest: left \(directory) in place: it holds files crashtest did not create")
        }
    }

    /// On a signal: kill the writer, remove what is left.
    func abandon() {
        if let child = pid.withLock({ $0 }) {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
        }
        for directory in directories.withLock({ $0 }) { remove(directory) }
    }
}
