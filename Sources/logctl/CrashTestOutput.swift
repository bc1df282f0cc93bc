import Foundation
import LogStore

/// The table (or --json lines) and the progress line of `logctl crashtest`.
final class CrashTestOutput {
    let json: Bool
    private let progressLine: ProgressLine
    private var totals = (cycles: 0, acknowledged: 0, lost: 0)

    private static let columns: [(title: String, width: Int)] = [
        ("mode", -10), ("cycles", 7), ("acknowledged", 13), ("verified", 9), ("lost", 5), ("seconds", 8),
    ]

    init(json: Bool, progress: Bool) {
        self.json = json
        progressLine = ProgressLine(enabled: progress)
    }

    func start(directory: String, cycles: Int, segmentSize: Int, seed: UInt64) {
        guard !json else { return }
        print("kill -9 crash test in \(directory): \(cycles) cycles per mode, \(humanBytes(segmentSize)) segments, "
              + "seed \(seed)")
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
    }

    func row(_ result: CrashTestRun.Result) {
        totals.cycles += result.cycles
        totals.acknowledged += result.acknowledged
        totals.lost += result.lost
        if json {
            printJSON(Line(
                mode: result.mode.rawValue, cycles: result.cycles, acknowledged: result.acknowledged,
                verified: result.verified, lost: result.lost, seconds: (result.seconds * 1000).rounded() / 1000,
                seed: result.seed))
        } else {
            print(Self.format([
                result.mode.rawValue, "\(result.cycles)", "\(result.acknowledged)", "\(result.verified)",
                "\(result.lost)", String(format: "%.1f", result.seconds),
            ]))
        }
        fflush(nil)
    }

    func skipped(_ mode: Log.SyncMode, reason: String) {
        guard !json else { return }
        print(Self.format([mode.rawValue, "-", "-", "-", "-", "-"]) + "  (\(reason), see stderr)")
        fflush(nil)
    }

    func finish() {
        clearProgress()
        guard !json, totals.cycles > 0 else { return }
        print("\(totals.cycles) kill -9 cycles, \(totals.acknowledged) acknowledged records, \(totals.lost) lost")
        fflush(nil)
    }

    static func format(_ cells: [String]) -> String { formatRow(cells, widths: columns.map(\.width)) }
}
