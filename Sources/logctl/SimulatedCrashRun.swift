import ArgumentParser
import Foundation
import LogStore
import LogStoreSimulation

extension PowerLossSimulator.Garbage: ExpressibleByArgument {}

extension Log.CommitAlignment: ExpressibleByArgument {}

/// One sync mode of `logctl crashtest`'s power-loss simulator: the test suite's seeded
/// workload on a log in `directory` (on the user's disk), with `states` crash states drawn at
/// its crash points and each recovered and checked there.
struct SimulatedCrashRun {
    let mode: Log.SyncMode
    let directory: String
    let states: Int
    let seed: UInt64
    let segmentSize: Int
    let garbage: PowerLossSimulator.Garbage
    let alignment: Log.CommitAlignment
    let cancellation: SimulationCancellation

    /// About this many crash points per run, whatever --states: the states per point grow
    /// instead of the log, since every crash point reads the whole log and every state writes it.
    static let crashPoints = 600
    /// Records of 0 to this many random bytes: 600 crash points are some 340 records, 2 MB,
    /// which roll the default 1 MiB segments (the test suite's workload has 7,000).
    static let maxRecordSize = 12_000

    /// Names the workload: part of its seed, so it must not change between a run and its replay.
    var label: String { "\(mode.rawValue), " + Self.diskModel(garbage: garbage, alignment: alignment) }

    static func diskModel(garbage: PowerLossSimulator.Garbage, alignment: Log.CommitAlignment) -> String {
        "garbage \(garbage.rawValue), commit alignment \(alignment.rawValue)"
    }

    /// Runs the workload; `progress` gets the states checked so far. A violation is in the
    /// outcome, not a problem.
    func run(progress: (Int) -> Void) -> (outcome: CrashSimulation.Outcome?, problem: CrashTestRun.Problem?) {
        var simulation = CrashSimulation(seed: seed)
        simulation.segmentSize = segmentSize
        simulation.keptViolatingStates = 1
        simulation.cancellation = cancellation
        let workload = CrashSimulation.Workload(
            mode: mode, garbage: garbage, alignment: alignment,
            statesPerPoint: (states + Self.crashPoints - 1) / Self.crashPoints, length: .states(states),
            maxRecordSize: Self.maxRecordSize)
        let outcome: CrashSimulation.Outcome
        do {
            outcome = try simulation.simulate(workload, label: label, in: directory, progress: progress)
        } catch let error where error.code == .syncModeUnavailable {
            return (nil, .unavailable(error.description))
        } catch let error where error.code == .invalidArgument {
            return (nil, .invalidArgument(error.message))
        } catch {
            return (nil, .failure("the simulator stopped: \(error)"))
        }
        // Every append is a crash point: fewer states than asked means the simulator did not
        // see the log's files (and checked less than it claims).
        if outcome.states < states && !cancellation.isCancelled {
            return (outcome, .failure("the simulator drew \(outcome.states) of \(states) crash states"))
        }
        return (outcome, nil)
    }
}
