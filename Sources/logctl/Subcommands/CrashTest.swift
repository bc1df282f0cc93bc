import ArgumentParser
import Foundation
import LogStore
import LogStoreSimulation
import Synchronization

extension LogCtl {
    struct CrashTest: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "crashtest",
            abstract: "Kill -9 a writer and simulate power losses on your disk; check that no acknowledged record is lost.",
            discussion: """
                For each sync mode, crashtest runs two tests on the disk and filesystem of
                DIR.

                Kill -9: it creates a log in a new directory of its own inside DIR
                (logctl-crashtest-MODE-XXXXXX) and runs --cycles cycles of: start `logctl
                append` (this binary) on the log, feed it records, read the LSNs it prints
                once they are durable, SIGKILL it, then open the log read-only and check that
                every acknowledged record is there byte for byte, that LSNs run from 1 without
                gaps and that no record exists that was not sent. The next cycle's writer
                recovers the log and appends on; at the end one more writer appends after
                recovery and exits cleanly. The kill moment, the --batch of each writer and
                the records come from --seed: sometimes while the writer opens and recovers
                the log, while records stream in, right after a batch was acknowledged, or
                with a batch half appended. The timing is the machine's, so a replay repeats
                the same choices, not the same instants.

                Power-loss simulator: the one the test suite runs (docs/FORMAT.md §6), working
                in logctl-crashsim-MODE-XXXXXX inside DIR. A log there runs a seeded workload
                of appends and commits; at every crash point (after each append, before each
                sync, after a sync returns but before its callers are woken, at each roll, in
                the middle of recovery) the simulator builds crash states from what the syncs
                made durable and what the page cache holds: each page not covered by a
                completed sync kept, dropped or torn at 512-byte sectors, names not made
                durable by a directory fsync gone. It writes --states such states per mode,
                recovers each with LogStore and checks the same invariants, plus that recovery
                is idempotent and that appends continue without risking what recovery kept
                (crashes inside recovery and in the first commit after it follow the same
                disk model). It shows what LogStore's recovery
                does on this filesystem with whatever a power loss may leave; it does not cut
                the power of this machine.

                --garbage changes the disk model: changed-sectors lets a sector whose contents
                a write changes come back as garbage, any-sector any sector of a page being
                written. --commit-alignment sets the log's Log.Options.commitAlignment. The
                default layout (none) relies on sector-atomic writes and does lose
                acknowledged records under --garbage changed-sectors: that run exits 2. sector
                survives changed-sectors, page survives both; try them to see what the
                assumption buys (docs/FORMAT.md §6).

                --seed drives both tests. Each mode's directories are removed at the end
                unless --keep is given; a mode that found a violation keeps its log (kill -9)
                or one violating crash state, as written before recovery (violating-state-*).
                Nothing else in DIR is touched.

                --json prints one object per mode that ran: mode, cycles, acknowledged,
                verified, lost, seconds (both tests), seed, simulated_states,
                simulated_crash_points, simulated_violations.

                Exit codes: 0 no violation; 2 an acknowledged record was lost or changed, LSNs
                have a gap, a record that was never sent exists, or recovery found corruption
                or was not idempotent (stderr names the mode, cycle or crash state, the seed
                and the command that replays it); 3 bad arguments or DIR missing; 5 a mode
                could not run (io_uring unavailable, a full disk, ...): it was reported and
                skipped, the others ran.

                Examples:
                  logctl crashtest /mnt/data --mode msync,fdatasync --cycles 50
                  logctl crashtest /mnt/data --cycles 0 --states 100000
                  logctl crashtest /mnt/data --cycles 0 --garbage changed-sectors \\
                      --commit-alignment sector
                """)

        @Argument(help: "An existing directory on the disk to test.")
        var directory: String

        @Option(help: "Sync modes to test, comma-separated.")
        var mode = "msync,uring,fdatasync"

        @Option(help: "Kill -9 cycles per mode (0: no kill -9 test).")
        var cycles = 20

        @Option(help: "Simulated power-loss crash states per mode (0: no simulator).")
        var states = 2_000

        @Option(help: "Simulator: which sectors a torn write may fill with garbage.")
        var garbage = PowerLossSimulator.Garbage.none

        @Option(help: "Simulator: where the log starts the record after a commit (Log.Options.commitAlignment).")
        var commitAlignment = Log.CommitAlignment.none

        @Option(help: "Random seed (printed, so that a run can be replayed).")
        var seed: UInt64?

        @Option(help: "Segment size of the test logs (small, so that they roll segments).")
        var segmentSize = "1MiB"

        @Flag(help: "Keep the test logs.")
        var keep = false

        @OptionGroup var format: OutputFormat

        static let maxCycles = 1_000_000
        static let maxStates = 100_000_000

        func validate() throws { _ = try modes() }

        func modes() throws -> [Log.SyncMode] {
            guard cycles >= 0, cycles <= Self.maxCycles else {
                throw ValidationError("--cycles must be a whole number from 0 to \(Self.maxCycles)")
            }
            guard states >= 0, states <= Self.maxStates else {
                throw ValidationError("--states must be a whole number from 0 to \(Self.maxStates)")
            }
            guard cycles > 0 || states > 0 else {
                throw ValidationError("--cycles 0 and --states 0 leave nothing to test")
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
            output.start(
                directory: directory, cycles: cycles, states: states,
                simulator: SimulatedCrashRun.diskModel(garbage: garbage, alignment: commitAlignment),
                segmentSize: segmentBytes, seed: seed)

            var violation = false
            var skipped = false
            /// Reports a part that could not run (warning, and a row saying so unless the mode
            /// already has counts to show); true when the part ran.
            func ran(_ problem: CrashTestRun.Problem?, mode: Log.SyncMode, stopped: String, showSkipped: Bool) throws -> Bool {
                switch problem {
                case nil, .violation:
                    return true
                case .unavailable(let message):
                    warn("crashtest: mode \(mode.rawValue) cannot run here, skipped: \(message)")
                    if showSkipped { output.skipped(mode, reason: "unavailable") }
                case .failure(let message):
                    warn("crashtest: mode \(mode.rawValue) stopped after \(stopped), skipped: \(message)")
                    if showSkipped { output.skipped(mode, reason: "failed") }
                case .invalidArgument(let message):
                    throw ValidationError("--segment-size \(segmentSize): \(message)")
                }
                skipped = true
                return false
            }

            for mode in modes {
                var result = CrashTestRun.Result(mode: mode, seed: seed)
                if cycles > 0 {
                    let logDirectory = try resources.makeDirectory(in: directory, kind: .killNine, mode: mode)
                    var run = CrashTestRun(
                        mode: mode, directory: logDirectory, cycles: cycles, seed: seed, segmentSize: segmentBytes)
                    result = run.run(resources: resources) { cycle in
                        output.progress("crashtest \(mode.rawValue): cycle \(cycle)/\(cycles)")
                    }
                    output.clearProgress()
                    if case .violation(let cycle, let lsn, let message) = result.problem {
                        violation = true
                        warn("crashtest: VIOLATION in mode \(mode.rawValue), cycle \(cycle), "
                             + "LSN \(lsn.map { "\($0)" } ?? "unknown"): \(message); replay with --seed \(seed) "
                             + "(\(replayCommand(mode, seed: seed, part: .killNine))); the log is kept in \(logDirectory)")
                        resources.retain(logDirectory)
                    } else {
                        resources.remove(logDirectory)
                    }
                    // A mode the writer cannot run in (or that failed) is not simulated either.
                    guard try ran(result.problem, mode: mode, stopped: "\(result.cycles) cycles", showSkipped: true) else {
                        continue
                    }
                }
                var simulated: CrashSimulation.Outcome?
                if states > 0 {
                    let workDirectory = try resources.makeDirectory(in: directory, kind: .simulator, mode: mode)
                    let run = SimulatedCrashRun(
                        mode: mode, directory: workDirectory, states: states, seed: seed, segmentSize: segmentBytes,
                        garbage: garbage, alignment: commitAlignment, cancellation: resources.cancellation)
                    var shownPercent = -1
                    let (checked, problem) = run.run { count in
                        guard count * 100 / states != shownPercent else { return }
                        shownPercent = count * 100 / states
                        output.progress("crashtest \(mode.rawValue): \(count)/\(states) simulated crash states checked")
                    }
                    // A signal stopped the simulator: its handler is removing the files and ends
                    // the process; a row of the states checked so far would look like a result.
                    while resources.cancellation.isCancelled { sleep(1) }
                    output.clearProgress()
                    if let checked, !checked.violations.isEmpty {
                        violation = true
                        warn("crashtest: VIOLATION in mode \(mode.rawValue), power-loss simulator (\(run.label)): "
                             + "\(checked.violations.count) invariant violations in \(checked.states) crash states; "
                             + "replay with --seed \(seed) (\(replayCommand(mode, seed: seed, part: .simulator)))"
                             + (checked.keptStates.isEmpty ? "" : "; a violating crash state, as written before "
                                + "recovery, is kept in \(checked.keptStates.joined(separator: ", "))"))
                        for message in checked.violations.prefix(5) { warn("  " + message) }
                        resources.retain(workDirectory)
                    } else {
                        resources.remove(workDirectory)
                    }
                    let stopped = "\(checked?.states ?? 0) simulated crash states"
                    if try ran(problem, mode: mode, stopped: stopped, showSkipped: cycles == 0) { simulated = checked }
                    if simulated == nil && cycles == 0 { continue }
                }
                output.row(result, simulated: simulated)
            }
            output.finish()
            if violation { throw ExitCode(2) }
            if skipped { throw ExitCode(5) }
        }

        /// The command that replays one part of one mode of this run.
        func replayCommand(_ mode: Log.SyncMode, seed: UInt64, part: CrashTestResources.Part) -> String {
            var words = ["logctl", "crashtest", shellQuoted(directory), "--mode", mode.rawValue]
            switch part {
            case .killNine:
                words += ["--cycles", "\(cycles)", "--states", "0"]
            case .simulator:
                words += ["--cycles", "0", "--states", "\(states)"]
                if garbage != .none { words += ["--garbage", garbage.rawValue] }
                if commitAlignment != .none { words += ["--commit-alignment", commitAlignment.rawValue] }
            }
            if segmentSize != "1MiB" { words += ["--segment-size", segmentSize] }
            return (words + ["--seed", "\(seed)"]).joined(separator: " ")
        }
    }
}

/// `text` as one shell word.
func shellQuoted(_ text: String) -> String {
    let plain = !text.isEmpty && text.unicodeScalars.allSatisfy {
        $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "/._-+=:,@%".unicodeScalars.contains($0))
    }
    return plain ? text : "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// What a crashtest run created and is running, for the cleanup at the end and on SIGINT/SIGTERM:
/// the child writer alive (killed on a signal), the simulator (stopped), and the per-mode
/// directories (removed unless --keep; never anything crashtest did not create).
final class CrashTestResources: Sendable {
    /// The two tests of a mode, each with a directory of its own.
    enum Part {
        case killNine
        case simulator

        var directoryPrefix: String {
            switch self {
            case .killNine: "logctl-crashtest-"
            case .simulator: "logctl-crashsim-"
            }
        }
    }

    let keep: Bool
    let cancellation = SimulationCancellation()
    private let pid = Mutex<Int32?>(nil)
    private let directories = Mutex<[String]>([])

    init(keep: Bool) { self.keep = keep }

    func running(_ child: Int32?) { pid.withLock { $0 = child } }

    /// A new, empty directory for `mode`'s log (kill -9) or working files (simulator).
    func makeDirectory(in parent: String, kind: Part, mode: Log.SyncMode) throws -> String {
        let prefix = (parent.hasSuffix("/") ? parent : parent + "/") + kind.directoryPrefix + "\(mode.rawValue)-"
        var template = Array((prefix + "XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw systemCallError("cannot create a directory for the crash test", path: prefix + "XXXXXX")
        }
        let path = String(cString: made)
        directories.withLock { $0.append(path) }
        return path
    }

    /// Keeps `directory` for inspection, even on a signal.
    func retain(_ directory: String) { directories.withLock { $0.removeAll { $0 == directory } } }

    /// Removes a mode's directory (unless --keep): the files a log consists of and the
    /// simulator's subdirectories (its log, crash states: logs too), then the directory, which
    /// is left alone if anything else appeared in it.
    func remove(_ directory: String) {
        retain(directory)
        guard !keep else { return }
        removeLog(directory)
    }

    private func removeLog(_ directory: String) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names {
            if name == "LOCK" || name == Log.watermarkFileName || name.hasSuffix(".seg") || name.hasSuffix(".seg.tmp") || Log.isSideFileName(name)
                || (name.hasSuffix(".partial") && Log.isSideFileName(String(name.dropLast(".partial".count))))
            {
                unlink(directory + "/" + name)
            } else if name == "log" || ["state-", "again-", "violating-state-"].contains(where: { name.hasPrefix($0) }) {
                removeLog(directory + "/" + name)
            }
        }
        if rmdir(directory) != 0 && errno != ENOENT {
            warn("crashtest: left \(directory) in place: it holds files crashtest did not create")
        }
    }

    /// On a signal: kill the writer, stop the simulator, remove what is left.
    func abandon() {
        if let child = pid.withLock({ $0 }) {
            kill(child, SIGKILL)
            var status: Int32 = 0
            waitpid(child, &status, 0)
        }
        cancellation.cancel()
        for directory in directories.withLock({ $0 }) { remove(directory) }
    }
}
