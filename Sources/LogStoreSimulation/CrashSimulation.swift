import Dispatch
import Foundation
import LogStore
import Synchronization

/// The power-loss simulator at work: a real log runs a seeded workload; at every crash point
/// (after each append, before each sync and after it returns but before its callers are
/// woken, at each roll, and between recovery's own steps) the simulator builds crash states
/// from the durable and memory images of its files, and each state is recovered and checked
/// (see `verify`).
///
/// Everything random comes from `seed`, so that a violation, printed with the seed, replays.
/// Used by the test suite (CrashSimulationTests) and by `logctl crashtest`, which runs it on
/// the user's disk.
package struct CrashSimulation: Sendable {
    package var seed: UInt64
    package var segmentSize = 1 << 20
    /// How many crash states that violate an invariant are written again, as they were before
    /// recovery touched them, into `violating-state-N` directories for inspection.
    package var keptViolatingStates = 0
    /// Lets another thread stop the run; the crash states not yet checked are then skipped.
    package var cancellation = SimulationCancellation()

    package init(seed: UInt64) { self.seed = seed }

    // MARK: Seeds and scale from the environment

    /// `LOGSTORE_CRASH_SEED`, to replay a run; a random seed without it.
    package static func seedFromEnvironment() -> UInt64 {
        UInt64(ProcessInfo.processInfo.environment["LOGSTORE_CRASH_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64(Int64.max))
    }

    /// `LOGSTORE_CRASH_SCALE`: how many times the states per crash point of a CI run (≥ 10 gives
    /// the ≥ 1,000,000 states of a release run); 1 without it.
    package static func scaleFromEnvironment() -> Int {
        max(1, Int(ProcessInfo.processInfo.environment["LOGSTORE_CRASH_SCALE"] ?? "") ?? 1)
    }

    /// tmpfs when there is one: crash states are written and recovered by the hundred thousand.
    package static let tmpfsOrTemporaryDirectory: String = {
        let shm = "/dev/shm"
        return access(shm, W_OK) == 0 ? shm : NSTemporaryDirectory()
    }()

    // MARK: Workloads and outcomes

    /// What the workload appended (index LSN - 1) and the last LSN a commit acknowledged.
    package struct Expectations: Sendable {
        package var appended: [[UInt8]] = []
        package var acknowledged: LSN = 0

        package init() {}
    }

    package struct Outcome: Sendable {
        package var states = 0
        package var crashPoints = 0
        package var violations: [String] = []
        package var seconds = 0.0
        package var exhaustivePoints = 0
        package var exhaustiveStates = 0
        /// Where `keptViolatingStates` put them.
        package var keptStates: [String] = []
    }

    package struct Workload: Sendable {
        /// How long the workload runs.
        package enum Length: Sendable {
            /// This many records.
            case records(Int)
            /// Records until this many crash states are drawn (the last crash point draws
            /// fewer than `statesPerPoint` if that is all that is left).
            case states(Int)
        }

        package var mode: Log.SyncMode = .msync
        package var garbage: PowerLossSimulator.Garbage = .none
        package var alignment: Log.CommitAlignment = .none
        package var statesPerPoint = 48
        /// Crash points (of syncs) at which every state is enumerated instead of sampled.
        package var exhaustivePoints = 0
        package var length = Length.records(320)
        package var maxRecordSize = 7_000
        /// One state in this many is also crashed in the middle of its recovery, and one in
        /// this many gets appends after recovery (with a commit alignment, so does every state
        /// whose recovery kept records ending off the boundary).
        package var deepCheckEvery = 64

        package init(
            mode: Log.SyncMode = .msync, garbage: PowerLossSimulator.Garbage = .none,
            alignment: Log.CommitAlignment = .none, statesPerPoint: Int = 48, exhaustivePoints: Int = 0,
            length: Length = .records(320), maxRecordSize: Int = 7_000
        ) {
            self.mode = mode
            self.garbage = garbage
            self.alignment = alignment
            self.statesPerPoint = statesPerPoint
            self.exhaustivePoints = exhaustivePoints
            self.length = length
            self.maxRecordSize = maxRecordSize
        }
    }

    /// The options the workload's log is created with.
    package func options(_ workload: Workload) -> Log.Options {
        var options = Log.Options(segmentSize: segmentSize, createIfMissing: true, sync: workload.mode)
        options.commitAlignment = workload.alignment
        return options
    }

    // MARK: Running

    /// Runs `workload` on a log in `directory`/log and checks every crash state (each written
    /// to a directory of its own beside the log, removed once checked); returns the counts
    /// and the violations. `directory` must exist; what the run leaves in it (the log, kept
    /// violating states) is the caller's to remove. `progress` is called on this thread with
    /// the number of states checked so far.
    package func simulate(
        _ workload: Workload, label: String, in directory: String, progress: (Int) -> Void = { _ in }
    ) throws(LogError) -> Outcome {
        let started = Date()
        // The simulator matches the paths of synced files (read back from /proc/self/fd) against
        // its directory: it must be the real path, not a relative or symlinked one.
        guard let resolved = realpath(directory, nil) else {
            throw LogError(.notFound, "cannot resolve the simulation's directory", path: directory)
        }
        let root = String(cString: resolved)
        free(resolved)
        let logDirectory = root + "/log"
        guard mkdir(logDirectory, 0o755) == 0 else {
            throw LogError(.ioError, "cannot create the simulated log's directory (errno \(errno))", path: logDirectory)
        }
        let seed = seed
        let expectations = Mutex(Expectations())
        let outcome = Mutex(Outcome())
        let verifications = DispatchGroup()
        let inFlight = DispatchSemaphore(value: 4)
        let queue = DispatchQueue(label: "crash-verify", attributes: .concurrent)
        let pointIndex = Atomic<Int>(0)
        // States drawn so far (scheduled for checking), against a `.states` budget.
        let drawn = Mutex(0)
        let budget: Int? = if case .states(let total) = workload.length { total } else { nil }
        let simulatorBox = Mutex<PowerLossSimulator?>(nil)

        let simulator = PowerLossSimulator(directory: logDirectory) { name in
            guard let simulator = simulatorBox.withLock({ $0 }) else { return }
            let wanted = drawn.withLock { drawn in
                let wanted = budget.map { min(workload.statesPerPoint, $0 - drawn) } ?? workload.statesPerPoint
                drawn += max(0, wanted)
                return wanted
            }
            guard wanted > 0 else { return }
            let point = pointIndex.add(1, ordering: .relaxed).newValue
            let snapshot = simulator.snapshot()
            let expected = expectations.withLock { $0 }
            var states: [[PowerLossSimulator.FileState]] = []
            let exhaustive = budget == nil && name.hasPrefix("before")
                && outcome.withLock { $0.exhaustivePoints } < workload.exhaustivePoints
            if exhaustive, let all = PowerLossSimulator.exhaustiveStates(snapshot) {
                states = all
                outcome.withLock {
                    $0.exhaustivePoints += 1
                    $0.exhaustiveStates += all.count
                }
            } else {
                for index in 0..<wanted {
                    var random = SplitMix64(seed: seed ^ UInt64(point) &* 0x9E37_79B9 ^ UInt64(index) &* 0x85EB_CA6B)
                    states.append(PowerLossSimulator.crashState(snapshot, random: &random, garbage: workload.garbage))
                }
            }
            outcome.withLock { $0.crashPoints += 1 }
            for (index, state) in states.enumerated() {
                let tag = "\(label), seed \(seed), crash point #\(point) (\(name)), state \(index)"
                let deep = (point &* 31 &+ index) % workload.deepCheckEvery == 0
                inFlight.wait()
                verifications.enter()
                queue.async {
                    defer {
                        inFlight.signal()
                        verifications.leave()
                    }
                    guard cancellation.enter() else { return }
                    defer { cancellation.leave() }
                    let found = verify(
                        state, expected: expected, tag: tag, root: root, deep: deep, garbage: workload.garbage,
                        alignment: workload.alignment)
                    let kept: String? = found.isEmpty ? nil : outcome.withLock { outcome in
                        guard outcome.keptStates.count < keptViolatingStates else { return nil }
                        outcome.keptStates.append(root + "/violating-state-\(point)-\(index)")
                        return outcome.keptStates.last
                    }
                    if let kept { PowerLossSimulator.write(state, into: kept) }
                    outcome.withLock {
                        $0.states += 1
                        $0.violations += found
                    }
                }
            }
        }
        simulatorBox.withLock { $0 = simulator }
        defer {
            simulator.stop()
            // The handler reaches the simulator through the box: break the cycle.
            simulatorBox.withLock { $0 = nil }
        }

        var random = SplitMix64(seed: seed ^ UInt64(label.utf8.reduce(0) { $0 &* 31 &+ UInt64($1) }))
        let log = try Log.open(logDirectory, options: options(workload))
        var sinceCommit = 0
        var index = 0
        func more() -> Bool {
            switch workload.length {
            case .records(let count): index < count
            // Every append is a crash point that draws at least one state: the budget is spent
            // after as many appends at the latest.
            case .states(let total): drawn.withLock { $0 } < total && index < total
            }
        }
        while more(), cancellation.enter() {
            defer { cancellation.leave() }
            let length = Int(random.next() % UInt64(workload.maxRecordSize))
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) } + Array("#\(index)".utf8)
            // Known before the append, whose crash point fires inside it.
            expectations.withLock { $0.appended.append(bytes) }
            try log.append(bytes)
            sinceCommit += 1
            index += 1
            if sinceCommit >= 1 + Int(random.next() % 6) || !more() {
                let durable = try log.commit()
                expectations.withLock { $0.acknowledged = durable }
                sinceCommit = 0
            }
            progress(outcome.withLock { $0.states })
        }
        if cancellation.enter() {
            defer { cancellation.leave() }
            try log.close()
        }
        while verifications.wait(timeout: .now() + .milliseconds(100)) == .timedOut {
            progress(outcome.withLock { $0.states })
        }
        outcome.withLock { $0.seconds = Date().timeIntervalSince(started) }
        return outcome.withLock { $0 }
    }

    /// The line tests print for a run: counts, time, the seed and how to replay it.
    package func summary(_ outcome: Outcome, label: String) -> String {
        let exhaustive = outcome.exhaustivePoints == 0 ? "" :
            " (\(outcome.exhaustiveStates) of them every state of \(outcome.exhaustivePoints) syncs with <= 12 dirty pages)"
        return "crash simulation [\(label)]: \(outcome.states) crash states\(exhaustive) at \(outcome.crashPoints) crash points, "
            + "\(outcome.violations.count) invariant violations, \(Int(outcome.seconds)) s (seed \(seed); replay with LOGSTORE_CRASH_SEED=\(seed))"
    }
}
