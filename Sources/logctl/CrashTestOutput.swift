import Foundation
import LogStore
import LogStoreSimulation

/// The table (or --json lines) and the progress line of `logctl crashtest`.
final class CrashTestOutput {
    let json: Bool
    private let progressLine: ProgressLine
    private var totals = (cycles: 0, acknowledged: 0, lost: 0, states: 0, violations: 0)

    private static let columns: [(title: String, width: Int)] = [
        ("mode", -10), ("cycles", 7), ("acknowledged", 13), ("verified", 9), ("lost", 5), ("states", 8),
        ("violations", 10), ("seconds", 8),
    ]

    init(json: Bool, progress: Bool) {
        self.json = json
        progressLine = ProgressLine(enabled: progress)
    }

    /// `simulator` describes the simulator's disk model and commit alignment.
    func start(directory: String, cycles: Int, states: Int, simulator: String, segmentSize: Int, seed: UInt64) {
        guard !json else { return }
        var parts: [String] = []
        if cycles > 0 { parts.append("\(cycles) kill -9 cycles") }
        if states > 0 { parts.append("\(states) simulated crash states (\(simulator))") }
        print("crash test in \(directory): \(parts.joined(separator: " and ")) per mode, "
              + "\(humanBytes(segmentSize)) segments, seed \(seed)")
        print(Self.format(Self.columns.map(\.title)))
        fflush(nil)
    }

    func progress(_ text: String) { progressLine.show(text) }

    func clearProgress() { progressLine.clear() }

    struct Line: Encodable {
        var mode: String
        var cycles: Int
        var acknowledged: Int
        var verified: Int
        var lost: Int
        var seconds: Double
        var seed: UInt64
        var simulatedStates: Int
        var simulatedCrashPoints: Int
        var simulatedViolations: Int

        enum CodingKeys: String, CodingKey {
            case mode, cycles, acknowledged, verified, lost, seconds, seed
            case simulatedStates = "simulated_states"
            case simulatedCrashPoints = "simulated_crash_points"
            case simulatedViolations = "simulated_violations"
        }
    }

    /// One mode's row: the kill -9 counts (zero when --cycles 0) and the simulator's (nil when
    /// it did not run).
    func row(_ result: CrashTestRun.Result, simulated: CrashSimulation.Outcome?) {
        let states = simulated?.states ?? 0
        let violations = simulated?.violations.count ?? 0
        let seconds = result.seconds + (simulated?.seconds ?? 0)
        totals.cycles += result.cycles
        totals.acknowledged += result.acknowledged
        totals.lost += result.lost
        totals.states += states
        totals.violations += violations
        if json {
            printJSON(Line(
                mode: result.mode.rawValue, cycles: result.cycles, acknowledged: result.acknowledged,
                verified: result.verified, lost: result.lost, seconds: (seconds * 1000).rounded() / 1000,
                seed: result.seed, simulatedStates: states, simulatedCrashPoints: simulated?.crashPoints ?? 0,
                simulatedViolations: violations))
        } else {
            print(Self.format([
                result.mode.rawValue, "\(result.cycles)", "\(result.acknowledged)", "\(result.verified)",
                "\(result.lost)", simulated == nil ? "-" : "\(states)", simulated == nil ? "-" : "\(violations)",
                String(format: "%.1f", seconds),
            ]))
        }
        fflush(nil)
    }

    func skipped(_ mode: Log.SyncMode, reason: String) {
        guard !json else { return }
        print(Self.format([mode.rawValue] + Array(repeating: "-", count: Self.columns.count - 1)) + "  (\(reason), see stderr)")
        fflush(nil)
    }

    func finish() {
        clearProgress()
        guard !json else { return }
        var parts: [String] = []
        if totals.cycles > 0 {
            parts.append("\(totals.cycles) kill -9 cycles, \(totals.acknowledged) acknowledged records, \(totals.lost) lost")
        }
        if totals.states > 0 {
            parts.append("\(totals.states) simulated crash states, \(totals.violations) invariant violations")
        }
        guard !parts.isEmpty else { return }
        print(parts.joined(separator: "; "))
        fflush(nil)
    }

    static func format(_ cells: [String]) -> String { formatRow(cells, widths: columns.map(\.width)) }
}
