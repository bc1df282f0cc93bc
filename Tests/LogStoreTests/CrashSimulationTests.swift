import Dispatch
import Foundation
@testable import LogStore
import Synchronization
import Testing

/// The power-loss simulator at work: a real log runs a seeded workload; at every crash point
/// (after each append, before each sync and after it returns but before its callers are
/// woken, at each roll, and between recovery's own steps) the simulator builds crash states
/// from the durable and memory images of its files, and each state is recovered and checked:
/// every acknowledged record present and byte-identical, LSNs contiguous, nothing that was not
/// written, no corruption reported for what is only a crash, recovery idempotent (a crash in
/// the middle of recovery, recovered again, gives the same records), and appends go on.
///
/// `LOGSTORE_CRASH_SEED` replays a seed; `LOGSTORE_CRASH_SCALE` multiplies the states per crash
/// point (≥ 10 gives the ≥ 1,000,000 states of a release run).
@Suite(.serialized) struct CrashSimulationTests {
    static let scale = max(1, Int(ProcessInfo.processInfo.environment["LOGSTORE_CRASH_SCALE"] ?? "") ?? 1)
    static let seed = UInt64(ProcessInfo.processInfo.environment["LOGSTORE_CRASH_SEED"] ?? "")
        ?? UInt64.random(in: 1...UInt64(Int64.max))
    static let segmentSize = 1 << 20
    /// tmpfs when there is one: crash states are written and recovered by the hundred thousand.
    static let scratchRoot: String = {
        let shm = "/dev/shm"
        return access(shm, W_OK) == 0 ? shm : NSTemporaryDirectory()
    }()

    /// What the workload appended (index LSN - 1) and the last LSN a commit acknowledged.
    struct Expectations: Sendable {
        var appended: [[UInt8]] = []
        var acknowledged: LSN = 0
    }

    struct Outcome: Sendable {
        var states = 0
        var crashPoints = 0
        var violations: [String] = []
        var seconds = 0.0
        var exhaustivePoints = 0
        var exhaustiveStates = 0
    }

    struct Workload: Sendable {
        var mode: Log.SyncMode = .msync
        var garbage: PowerLossSimulator.Garbage = .none
        var alignment: Log.CommitAlignment = .none
        var statesPerPoint = 48
        /// Crash points (of syncs) at which every state is enumerated instead of sampled.
        var exhaustivePoints = 0
        var records = 320
        var maxRecordSize = 7_000
        /// One state in this many is also crashed in the middle of its recovery, and one in
        /// this many gets appends after recovery.
        var deepCheckEvery = 64
    }

    /// Runs `workload` and checks every crash state; returns the counts and the violations.
    static func simulate(_ workload: Workload, label: String) throws -> Outcome {
        let started = Date()
        let root = scratchRoot + "/logstore-crash-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root + "/log", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let directory = root + "/log"
        let expectations = Mutex(Expectations())
        let outcome = Mutex(Outcome())
        let verifications = DispatchGroup()
        let inFlight = DispatchSemaphore(value: 4)
        let queue = DispatchQueue(label: "crash-verify", attributes: .concurrent)
        let pointIndex = Atomic<Int>(0)
        let simulatorBox = Mutex<PowerLossSimulator?>(nil)

        let simulator = PowerLossSimulator(directory: directory) { name in
            guard let simulator = simulatorBox.withLock({ $0 }) else { return }
            let point = pointIndex.add(1, ordering: .relaxed).newValue
            let snapshot = simulator.snapshot()
            let expected = expectations.withLock { $0 }
            var states: [[PowerLossSimulator.FileState]] = []
            let exhaustive = name.hasPrefix("before") && outcome.withLock { $0.exhaustivePoints } < workload.exhaustivePoints
            if exhaustive, let all = PowerLossSimulator.exhaustiveStates(snapshot) {
                states = all
                outcome.withLock {
                    $0.exhaustivePoints += 1
                    $0.exhaustiveStates += all.count
                }
            } else {
                for index in 0..<(workload.statesPerPoint * scale) {
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
                    let found = verify(state, expected: expected, tag: tag, root: root, deep: deep)
                    outcome.withLock {
                        $0.states += 1
                        $0.violations += found
                    }
                    inFlight.signal()
                    verifications.leave()
                }
            }
        }
        simulatorBox.withLock { $0 = simulator }
        defer { simulator.stop() }

        var random = SplitMix64(seed: seed ^ UInt64(label.utf8.reduce(0) { $0 &* 31 &+ UInt64($1) }))
        let log = try Log.open(directory, options: options(workload))
        var sinceCommit = 0
        for index in 0..<workload.records {
            let length = Int(random.next() % UInt64(workload.maxRecordSize))
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) } + Array("#\(index)".utf8)
            // Known before the append, whose crash point fires inside it.
            expectations.withLock { $0.appended.append(bytes) }
            try log.append(bytes)
            sinceCommit += 1
            if sinceCommit >= 1 + Int(random.next() % 6) || index == workload.records - 1 {
                let durable = try log.commit()
                expectations.withLock { $0.acknowledged = durable }
                sinceCommit = 0
            }
        }
        try log.close()
        verifications.wait()
        outcome.withLock { $0.seconds = Date().timeIntervalSince(started) }
        return outcome.withLock { $0 }
    }

    static func options(_ workload: Workload) -> Log.Options {
        var options = Log.Options(segmentSize: segmentSize, createIfMissing: true, sync: workload.mode)
        options.commitAlignment = workload.alignment
        return options
    }

    /// Recovers one crash state and checks the invariants; `deep` also crashes recovery
    /// itself and appends afterwards.
    static func verify(_ files: [PowerLossSimulator.FileState], expected: Expectations, tag: String, root: String,
                       deep: Bool) -> [String]
    {
        let directory = root + "/state-\(UUID().uuidString)"
        PowerLossSimulator.write(files, into: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var violations: [String] = []
        let (recovered, nested) = PowerLossSimulator.crashStatesDuringRecovery(
            of: directory, seed: seed, garbage: .changedSectors, enabled: deep
        ) { recoverAndCheck(directory, expected: expected, tag: tag, violations: &violations) }
        guard let recovered else { return violations }
        for (index, state) in nested.enumerated() {
            let again = root + "/again-\(UUID().uuidString)"
            PowerLossSimulator.write(state, into: again)
            let result = recoverAndCheck(again, expected: expected, tag: tag + ", crashed in recovery step \(index)",
                                         violations: &violations)
            if let result, result != recovered {
                violations.append("\(tag): recovery is not idempotent: \(recovered) records, then \(result) after a crash in step \(index)")
            }
            try? FileManager.default.removeItem(atPath: again)
        }
        if deep {
            do {
                let log = try Log.open(directory, options: Log.Options(segmentSize: segmentSize, sync: .msync))
                try log.appendAndCommit(Array("after recovery".utf8))
                try log.close()
                let reopened = try Log.openReadOnly(directory)
                let last = try reopened.read(recovered + 1)
                if reopened.writtenLSN != recovered + 1 || last != Array("after recovery".utf8) {
                    violations.append("\(tag): appending after recovery did not continue at LSN \(recovered + 1)")
                }
                try reopened.close()
            } catch {
                violations.append("\(tag): appending after recovery failed: \(error)")
            }
        }
        return violations
    }

    /// Opens (recovering) and checks the records; returns the last LSN kept.
    static func recoverAndCheck(_ directory: String, expected: Expectations, tag: String, violations: inout [String])
        -> LSN?
    {
        do {
            let log = try Log.open(directory, options: Log.Options(segmentSize: segmentSize, sync: .none))
            defer { try? log.close() }
            let written = log.writtenLSN
            if log.recoveryReport.outcome == .corruption {
                violations.append("\(tag): a crash was reported as corruption: \(log.recoveryReport)")
            }
            if written < expected.acknowledged {
                violations.append("\(tag): acknowledged LSN \(expected.acknowledged) lost, only \(written) recovered")
            }
            if written > LSN(expected.appended.count) {
                violations.append("\(tag): recovered LSN \(written), but only \(expected.appended.count) were appended")
                return nil
            }
            if log.firstLSN != 1 { violations.append("\(tag): first LSN is \(log.firstLSN)") }
            if written >= 1 {
                for lsn in 1...written {
                    let stored = (try? log.read(lsn)) ?? []
                    let matches = stored.withUnsafeBytes { a in expected.appended[Int(lsn - 1)].withUnsafeBytes { b in same(a, b) } }
                    if !matches {
                        violations.append("\(tag): LSN \(lsn) recovered with other bytes than were appended")
                        break
                    }
                }
            }
            return written
        } catch {
            violations.append("\(tag): recovery failed: \(error)")
            return nil
        }
    }

    static func report(_ outcome: Outcome, _ label: String) {
        let exhaustive = outcome.exhaustivePoints == 0 ? "" :
            " (\(outcome.exhaustiveStates) of them every state of \(outcome.exhaustivePoints) syncs with <= 12 dirty pages)"
        print("crash simulation [\(label)]: \(outcome.states) crash states\(exhaustive) at \(outcome.crashPoints) crash points, "
              + "\(outcome.violations.count) invariant violations, \(Int(outcome.seconds)) s (seed \(seed); replay with LOGSTORE_CRASH_SEED=\(seed))")
        for violation in outcome.violations.prefix(5) { print("  " + violation) }
    }

    /// The default: sector-atomic writes (every sector of a torn page old or new).
    @Test(arguments: [Log.SyncMode.msync, .uring, .fdatasync])
    func everyAcknowledgedRecordSurvivesEveryCrashState(mode: Log.SyncMode) throws {
        let label = "\(mode.rawValue), sector-atomic writes"
        let outcome = try Self.simulate(Workload(mode: mode, exhaustivePoints: mode == .msync ? 12 : 0), label: label)
        Self.report(outcome, label)
        #expect(outcome.violations.isEmpty, "\(outcome.violations.prefix(3))")
        #expect(outcome.states >= 25_000 * Self.scale)
        if mode == .msync { #expect(outcome.exhaustivePoints > 0) }
    }

    @Test func sectorAlignedCommitsSurviveGarbageInChangedSectors() throws {
        let label = "msync, sector-aligned commits, garbage in changed sectors"
        let outcome = try Self.simulate(
            Workload(garbage: .changedSectors, alignment: .sector, statesPerPoint: 24), label: label)
        Self.report(outcome, label)
        #expect(outcome.violations.isEmpty, "\(outcome.violations.prefix(3))")
    }

    @Test func pageAlignedCommitsSurviveGarbageInAnySectorOfAWrittenPage() throws {
        let label = "msync, page-aligned commits, garbage in any sector of a written page"
        let outcome = try Self.simulate(
            Workload(garbage: .anySectorOfAWrittenPage, alignment: .page, statesPerPoint: 24), label: label)
        Self.report(outcome, label)
        #expect(outcome.violations.isEmpty, "\(outcome.violations.prefix(3))")
    }

    /// The other side of FORMAT.md's sector assumption: without aligned commits, a disk that
    /// garbles a sector being written can destroy acknowledged bytes that share the sector
    /// with the next commit's. The simulator must see that (a checker that cannot fail checks
    /// nothing).
    @Test func withoutAlignedCommitsGarbageInChangedSectorsLosesAcknowledgedRecords() throws {
        let label = "msync, garbage in changed sectors, commits not aligned (expected to fail)"
        let outcome = try Self.simulate(
            Workload(garbage: .changedSectors, statesPerPoint: 6, records: 120, maxRecordSize: 300), label: label)
        Self.report(outcome, label)
        #expect(!outcome.violations.isEmpty)
    }

    /// EIO or ENOSPC at the N-th sync, for every N of a short workload, in every sync mode and
    /// under each kernel behaviour of ATC '20's "Can Applications Recover from fsync
    /// Failures?": nothing is acknowledged after the error, the log is poisoned, a power loss
    /// right then keeps everything acknowledged, and reopening (recovery) keeps a valid prefix
    /// with everything acknowledged and makes it durable (a power loss after it loses nothing
    /// the reopened log reports).
    @Test(arguments: PowerLossSimulator.SyncFailure.allCases)
    func afterAFailedSyncNothingMoreIsAcknowledgedAndNothingAcknowledgedIsLost(
        behaviour: PowerLossSimulator.SyncFailure
    ) throws {
        var runs = 0
        var states = 0
        var violations: [String] = []
        for mode in [Log.SyncMode.msync, .uring, .fdatasync] {
            for failing in 0..<12 {
                let tag = "\(behaviour.rawValue), \(mode.rawValue), sync #\(failing) fails, seed \(Self.seed)"
                let root = Self.scratchRoot + "/logstore-eio-\(UUID().uuidString)"
                let directory = root + "/log"
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(atPath: root) }
                let simulator = PowerLossSimulator(directory: directory)
                simulator.syncFailure = behaviour
                defer { simulator.stop() }
                let log = try Log.open(directory, options: Self.options(Workload(mode: mode)))
                // Armed after creation: the N-th sync of the workload's commits fails.
                FaultInjection.arm(.sync, directory: directory, after: failing, errno: failing % 2 == 0 ? .ioError : .noSpace)
                defer { FaultInjection.disarm(directory: directory) }
                var expected = Expectations()
                var random = SplitMix64(seed: Self.seed ^ UInt64(failing))
                var failed = false
                for index in 0..<80 where !failed {
                    let bytes = (0..<Int(random.next() % 3_000)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                        + Array("#\(index)".utf8)
                    expected.appended.append(bytes)
                    do { try log.append(bytes) } catch {
                        violations.append("\(tag): append failed before any sync did: \(error)")
                        break
                    }
                    guard random.next() % 3 == 0 else { continue }
                    do {
                        expected.acknowledged = try log.commit()
                    } catch {
                        failed = true
                        if ![.ioError, .noSpace].contains(error.code) { violations.append("\(tag): commit threw \(error)") }
                    }
                }
                guard failed else { continue }
                runs += 1
                if log.durableLSN != expected.acknowledged {
                    violations.append("\(tag): durableLSN \(log.durableLSN) moved past the last acknowledged \(expected.acknowledged)")
                }
                if (try? log.append([1])) != nil { violations.append("\(tag): an append was accepted after the failure") }
                if (try? log.commit()) != nil { violations.append("\(tag): a commit succeeded after the failure") }
                // A power loss right after the failure.
                let afterFailure = simulator.snapshot()
                for index in 0..<16 {
                    var random = SplitMix64(seed: Self.seed ^ UInt64(failing << 8 | index))
                    let state = PowerLossSimulator.crashState(afterFailure, random: &random, garbage: .none)
                    violations += Self.verify(state, expected: expected, tag: tag + ", power loss after the failure, state \(index)",
                                              root: root, deep: false)
                    states += 1
                }
                try? log.close()
                FaultInjection.disarm(directory: directory)
                // Reopen in this process (the cache as the failure left it), then lose power.
                let reopened = try Log.open(directory, options: Self.options(Workload(mode: mode)))
                var afterRecovery = expected
                afterRecovery.acknowledged = reopened.writtenLSN
                if reopened.writtenLSN < expected.acknowledged {
                    violations.append("\(tag): reopening lost acknowledged LSN \(expected.acknowledged)")
                }
                for lsn in LSN(1)...max(1, reopened.writtenLSN) where reopened.writtenLSN >= 1 {
                    if (try? reopened.read(lsn)) != expected.appended[Int(lsn - 1)] {
                        violations.append("\(tag): reopened log holds other bytes at LSN \(lsn)")
                        break
                    }
                }
                let recovered = simulator.snapshot()
                for index in 0..<16 {
                    var random = SplitMix64(seed: Self.seed ^ UInt64(failing << 8 | index) ^ 0xFF)
                    let state = PowerLossSimulator.crashState(recovered, random: &random, garbage: .none)
                    violations += Self.verify(state, expected: afterRecovery,
                                              tag: tag + ", power loss after reopening, state \(index)", root: root, deep: false)
                    states += 1
                }
                try reopened.close()
            }
        }
        print("sync failures [\(behaviour.rawValue)]: \(runs) runs (EIO/ENOSPC at every sync index of the workload, "
              + "msync, uring, fdatasync), \(states) crash states, \(violations.count) invariant violations (seed \(Self.seed))")
        for violation in violations.prefix(5) { print("  " + violation) }
        #expect(violations.isEmpty, "\(violations.prefix(3))")
        #expect(runs >= 30)
    }
}
