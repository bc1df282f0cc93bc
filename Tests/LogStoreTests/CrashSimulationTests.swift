import Foundation
@testable import LogStore
import LogStoreSimulation
import Testing

/// The power-loss simulator (the LogStoreSimulation target, which `logctl crashtest` runs too)
/// in CI: every crash state of the seeded workloads recovered and checked, the counts printed.
///
/// `LOGSTORE_CRASH_SEED` replays a seed; `LOGSTORE_CRASH_SCALE` multiplies the states per crash
/// point (≥ 10 gives the ≥ 1,000,000 states of a release run).
@Suite(.serialized) struct CrashSimulationTests {
    typealias Workload = CrashSimulation.Workload
    typealias Expectations = CrashSimulation.Expectations

    static let scale = CrashSimulation.scaleFromEnvironment()
    static let seed = CrashSimulation.seedFromEnvironment()
    static let simulation = CrashSimulation(seed: seed)
    /// tmpfs when there is one: crash states are written and recovered by the hundred thousand.
    static let scratchRoot = CrashSimulation.tmpfsOrTemporaryDirectory

    /// Runs `workload` in a scratch directory of its own (states per crash point times the
    /// scale) and prints its counts.
    static func simulate(_ workload: Workload, label: String) throws -> CrashSimulation.Outcome {
        let root = scratchRoot + "/logstore-crash-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        var scaled = workload
        scaled.statesPerPoint *= scale
        let outcome = try simulation.simulate(scaled, label: label, in: root)
        print(simulation.summary(outcome, label: label))
        for violation in outcome.violations.prefix(5) { print("  " + violation) }
        return outcome
    }

    /// The default: sector-atomic writes (every sector of a torn page old or new).
    @Test(arguments: [Log.SyncMode.msync, .uring, .fdatasync])
    func everyAcknowledgedRecordSurvivesEveryCrashState(mode: Log.SyncMode) throws {
        let label = "\(mode.rawValue), sector-atomic writes"
        let outcome = try Self.simulate(Workload(mode: mode, exhaustivePoints: mode == .msync ? 12 : 0), label: label)
        #expect(outcome.violations.isEmpty, "\(outcome.violations.prefix(3))")
        #expect(outcome.states >= 25_000 * Self.scale)
        if mode == .msync { #expect(outcome.exhaustivePoints > 0) }
    }

    @Test func sectorAlignedCommitsSurviveGarbageInChangedSectors() throws {
        let label = "msync, sector-aligned commits, garbage in changed sectors"
        let outcome = try Self.simulate(
            Workload(garbage: .changedSectors, alignment: .sector, statesPerPoint: 24), label: label)
        #expect(outcome.violations.isEmpty, "\(outcome.violations.prefix(3))")
    }

    @Test func pageAlignedCommitsSurviveGarbageInAnySectorOfAWrittenPage() throws {
        let label = "msync, page-aligned commits, garbage in any sector of a written page"
        let outcome = try Self.simulate(
            Workload(garbage: .anySectorOfAWrittenPage, alignment: .page, statesPerPoint: 24), label: label)
        #expect(outcome.violations.isEmpty, "\(outcome.violations.prefix(3))")
    }

    /// Recovery writes again what nothing proves durable (FORMAT.md §8.6 step 5), but no page the
    /// disk holds: with page-aligned commits that may be an acknowledged commit's, and a power
    /// loss during the rewrite may garble any sector of a page being written, changed or not.
    /// Each round crashes a log right after its last commit was acknowledged (no record claims
    /// it), then crashes its recovery at every step on such a disk.
    @Test func pageAlignedRecoveryNeverWritesAnAcknowledgedPageAgain() throws {
        var violations: [String] = []
        for round in 0..<32 {
            let simulation = CrashSimulation(seed: Self.seed &+ UInt64(round))
            let root = Self.scratchRoot + "/logstore-unproven-\(UUID().uuidString)"
            let directory = root + "/log"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: root) }
            let simulator = PowerLossSimulator(directory: directory)
            defer { simulator.stop() }
            let log = try Log.open(directory, options: simulation.options(Workload(alignment: .page)))
            var expected = Expectations()
            var random = SplitMix64(seed: simulation.seed)
            for index in 0..<12 {
                expected.appended.append((0..<Int(random.next() % 3_000)).map { _ in UInt8(truncatingIfNeeded: random.next()) })
                try log.append(expected.appended[index])
                if index % 4 == 3 { expected.acknowledged = try log.commit() }
            }
            // Every commit completed: the disk holds what the cache does.
            let state = PowerLossSimulator.crashState(simulator.snapshot(), random: &random, garbage: .none)
            violations += simulation.verify(state, expected: expected, tag: "round \(round), seed \(simulation.seed)", root: root,
                                            deep: true, garbage: .anySectorOfAWrittenPage, alignment: .page)
            try log.close()
        }
        for violation in violations.prefix(5) { print("  " + violation) }
        #expect(violations.isEmpty, "\(violations.prefix(3))")
    }

    /// The other side of FORMAT.md's sector assumption: without aligned commits, a disk that
    /// garbles a sector being written can destroy acknowledged bytes that share the sector
    /// with the next commit's. The simulator must see that (a checker that cannot fail checks
    /// nothing).
    @Test func withoutAlignedCommitsGarbageInChangedSectorsLosesAcknowledgedRecords() throws {
        let label = "msync, garbage in changed sectors, commits not aligned (expected to fail)"
        let outcome = try Self.simulate(
            Workload(garbage: .changedSectors, statesPerPoint: 6, length: .records(120), maxRecordSize: 300), label: label)
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
        // With page-aligned commits recovery writes again only the pages the disk lacks: the
        // pages a failed sync left clean must be among them.
        for (mode, alignment) in [(Log.SyncMode.msync, Log.CommitAlignment.none), (.uring, .none), (.fdatasync, .none), (.msync, .page)] {
            for failing in 0..<12 {
                let tag = "\(behaviour.rawValue), \(mode.rawValue), \(alignment.rawValue) alignment, sync #\(failing) fails, seed \(Self.seed)"
                let root = Self.scratchRoot + "/logstore-eio-\(UUID().uuidString)"
                let directory = root + "/log"
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
                defer { try? FileManager.default.removeItem(atPath: root) }
                let simulator = PowerLossSimulator(directory: directory)
                simulator.syncFailure = behaviour
                defer { simulator.stop() }
                let workload = Workload(mode: mode, alignment: alignment)
                let log = try Log.open(directory, options: Self.simulation.options(workload))
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
                    violations += Self.simulation.verify(state, expected: expected, tag: tag + ", power loss after the failure, state \(index)",
                                              root: root, deep: false)
                    states += 1
                }
                try? log.close()
                FaultInjection.disarm(directory: directory)
                // Reopen in this process (the cache as the failure left it), then lose power.
                let reopened = try Log.open(directory, options: Self.simulation.options(workload))
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
                    violations += Self.simulation.verify(state, expected: afterRecovery,
                                              tag: tag + ", power loss after reopening, state \(index)", root: root, deep: false)
                    states += 1
                }
                try reopened.close()
            }
        }
        print("sync failures [\(behaviour.rawValue)]: \(runs) runs (EIO/ENOSPC at every sync index of the workload, "
              + "msync, uring, fdatasync, msync with page-aligned commits), \(states) crash states, \(violations.count) invariant violations (seed \(Self.seed))")
        for violation in violations.prefix(5) { print("  " + violation) }
        #expect(violations.isEmpty, "\(violations.prefix(3))")
        #expect(runs >= 40)
    }
}
