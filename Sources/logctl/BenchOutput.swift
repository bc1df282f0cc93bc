import Foundation
import Histogram
import LogStore

enum BenchWorkload: String, CaseIterable, Sendable {
    case durableSerial = "durable-serial"
    case durableConcurrent = "durable-concurrent"
    case durableConcurrentAsync = "durable-concurrent-async"
    case bulk

    /// Whether rows run `--writers` writers for `--duration` (else one writer, `--records`).
    var isConcurrent: Bool { self == .durableConcurrent || self == .durableConcurrentAsync }
}

/// One measured row: a sync mode (or the raw baseline), a workload and a writer count.
struct BenchRow {
    static let rawMode = "raw-fdatasync"

    /// Nil for the raw baseline.
    var sync: Log.SyncMode?
    var workload: BenchWorkload
    var writers: Int
    /// Records to write (durable-serial, bulk); the concurrent workloads run for a duration instead.
    var records: Int

    var mode: String { sync?.rawValue ?? Self.rawMode }

    /// The start of the name of the row's directory.
    var directoryName: String { "\(mode)-\(workload.rawValue)-w\(writers)" }

    var label: String {
        guard workload.isConcurrent else { return "\(mode) \(workload.rawValue)" }
        return "\(mode) \(workload.rawValue), \(writers) writer" + (writers == 1 ? "" : "s")
    }
}

struct BenchResult {
    var row: BenchRow
    var size: Int
    var records: Int
    /// The measured nanoseconds as seconds; records/s is derived from exactly this value, so
    /// that records_per_s == records / seconds holds (to its 0.1 rounding) for what is printed.
    var seconds: Double
    var recordsPerSecond: Double
    var latency: Histogram<UInt64>?

    init(row: BenchRow, size: Int, measurement: BenchMeasurement) {
        self.row = row
        self.size = size
        records = measurement.records
        seconds = Double(max(measurement.nanoseconds, 1)) / 1e9
        recordsPerSecond = (Double(records) / seconds * 10).rounded() / 10
        latency = measurement.latency
    }

    /// Latency at a percentile, in microseconds (exact to the nanosecond the histogram keeps).
    func microseconds(at percentile: Double) -> Double? {
        latency.map { Double($0.valueAtPercentile(percentile)) / 1000 }
    }

    /// The --json line; its keys are the documented contract.
    struct Line: Encodable {
        var result: BenchResult

        enum CodingKeys: String, CodingKey {
            case mode, workload, writers, size, records, seconds, records_per_s, p50_us, p99_us, p999_us
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(result.row.mode, forKey: .mode)
            try container.encode(result.row.workload.rawValue, forKey: .workload)
            try container.encode(result.row.writers, forKey: .writers)
            try container.encode(result.size, forKey: .size)
            try container.encode(result.records, forKey: .records)
            try container.encode(result.seconds, forKey: .seconds)
            try container.encode(result.recordsPerSecond, forKey: .records_per_s)
            // Explicit nulls for bulk: the keys are always present.
            try container.encode(result.microseconds(at: 50), forKey: .p50_us)
            try container.encode(result.microseconds(at: 99), forKey: .p99_us)
            try container.encode(result.microseconds(at: 99.9), forKey: .p999_us)
        }
    }
}

func warn(_ message: String) {
    FileHandle.standardError.write(Data(("logctl: " + message + "\n").utf8))
}

/// Prints `logctl bench` results as they come: a table row (or a --json line) per finished row,
/// latency histograms at the end, and a progress line on stderr while a row runs.
final class BenchOutput {
    let json: Bool
    let size: Int
    private let progressLine: ProgressLine

    init(json: Bool, size: Int, progress: Bool) {
        self.json = json
        self.size = size
        progressLine = ProgressLine(enabled: progress)
    }

    private static let columns: [(title: String, width: Int)] = [
        ("mode", -13), ("workload", -18), ("writers", 7), ("records", 9), ("seconds", 8), ("records/s", 10),
        ("MB/s", 8), ("p50 µs", 9), ("p99 µs", 9), ("p99.9 µs", 9), ("× raw", 6),
    ]

    func start(directory: String, segmentSize: Int) {
        let filesystem = filesystemName(directory)
        if let filesystem, filesystem == "tmpfs" || filesystem == "ramfs" {
            warn("bench: \(directory) is on \(filesystem): syncs return at once, so these are not disk figures")
        }
        guard !json else { return }
        print("\(size)-byte records, \(humanBytes(segmentSize)) segments, in \(directory)"
              + (filesystem.map { " (" + $0 + ")" } ?? ""))
        print(Self.format(Self.columns.map(\.title)))
        fflush(nil)
    }

    func progress(_ text: String) { progressLine.show(text) }

    func clearProgress() { progressLine.clear() }

    func row(_ result: BenchResult, baseline: BenchResult?) {
        clearProgress()
        if json {
            printJSON(BenchResult.Line(result: result))
        } else {
            let microseconds = { (percentile: Double) in
                result.microseconds(at: percentile).map { String(format: "%.1f", $0) } ?? "-"
            }
            let ratio = baseline.map { $0.recordsPerSecond > 0 ? result.recordsPerSecond / $0.recordsPerSecond : 0 }
            print(Self.format([
                result.row.mode, result.row.workload.rawValue, "\(result.row.writers)", "\(result.records)",
                String(format: result.seconds < 0.1 ? "%.5f" : "%.3f", result.seconds),
                String(format: result.recordsPerSecond >= 100 ? "%.0f" : "%.1f", result.recordsPerSecond),
                String(format: "%.2f", result.recordsPerSecond * Double(size) / 1e6),
                microseconds(50), microseconds(99), microseconds(99.9),
                ratio.map { String(format: "%.2f", $0) } ?? (result.row.mode == BenchRow.rawMode ? "1.00" : "-"),
            ]))
        }
        fflush(nil)
    }

    func finish(_ results: [BenchResult]) {
        clearProgress()
        guard !json else { return }
        let measured = results.filter { $0.latency.map { $0.totalCount > 0 } ?? false }
        guard !measured.isEmpty else { return }
        print("\ncommit latency (share of commits per bucket)")
        for result in measured {
            print("  \(result.row.label), \(result.latency!.totalCount) commits")
            for line in Self.histogramLines(result.latency!) { print("    " + line) }
        }
    }

    static func format(_ cells: [String]) -> String { formatRow(cells, widths: columns.map(\.width)) }

    /// A few rows of latency buckets with round bounds (1-2-5 steps, or whole decades when that
    /// would take more than `maxRows`), from the fastest commit's bucket to the slowest's.
    static func histogramLines(_ histogram: Histogram<UInt64>, maxRows: Int = 8, barWidth: Int = 30) -> [String] {
        let steps: [(factors: [UInt64], base: UInt64)] = [([1, 2, 5], 10), ([1], 10), ([1], 100)]
        for (index, step) in steps.enumerated() {
            var bounds: [UInt64] = [0]
            var power: UInt64 = 100
            while power <= BenchRunner.latencyCeiling {
                bounds += step.factors.map { power * $0 }
                power *= step.base
            }
            var counts = [UInt64](repeating: 0, count: bounds.count)
            for recorded in histogram.recordedValues() {
                let bucket = (bounds.lastIndex { $0 <= recorded.value }) ?? 0
                counts[bucket] += UInt64(recorded.count)
            }
            guard let first = counts.firstIndex(where: { $0 > 0 }), let last = counts.lastIndex(where: { $0 > 0 })
            else { return [] }
            if last - first + 1 > maxRows && index < steps.count - 1 { continue }
            let largest = counts[first...last].max()!
            let labels = (first...last).map { range(bounds[$0], $0 + 1 < bounds.count ? bounds[$0 + 1] : nil) }
            let labelWidth = labels.map(\.count).max()!
            return (first...last).enumerated().map { offset, bucket in
                let count = counts[bucket]
                let scaled = Int((Double(count) / Double(largest) * Double(barWidth)).rounded())
                let length = count == 0 ? 0 : max(1, scaled)
                let label = labels[offset]
                return label + String(repeating: " ", count: labelWidth - label.count) + "  "
                    + String(repeating: "#", count: length) + String(repeating: " ", count: barWidth - length)
                    + Self.share(count, of: histogram.totalCount)
            }
        }
        return []
    }

    /// " 12.5%", with a nonzero share that rounds to nothing shown as "<0.1%", not "0.0%".
    static func share(_ count: UInt64, of total: UInt64) -> String {
        let percent = Double(count) / Double(max(total, 1)) * 100
        return count > 0 && percent < 0.05 ? "  <0.1%" : String(format: " %5.1f%%", percent)
    }

    /// "100-200µs", "500µs-1ms", "≥ 1h".
    static func range(_ lower: UInt64, _ upper: UInt64?) -> String {
        guard let upper else { return "≥ " + duration(lower).joined() }
        let (low, high) = (duration(lower), duration(upper))
        return lower == 0 || low[1] == high[1] ? low[0] + "-" + high.joined() : low.joined() + "-" + high.joined()
    }

    /// A round number of nanoseconds as [number, unit].
    static func duration(_ nanoseconds: UInt64) -> [String] {
        if nanoseconds >= 1_000_000_000 { return ["\(nanoseconds / 1_000_000_000)", "s"] }
        if nanoseconds >= 1_000_000 { return ["\(nanoseconds / 1_000_000)", "ms"] }
        if nanoseconds >= 1000 { return ["\(nanoseconds / 1000)", "µs"] }
        return ["\(nanoseconds)", "ns"]
    }

    /// The type of the filesystem holding `path`, from the longest mount point above it in
    /// /proc/self/mounts (Glibc's module does not export statfs).
    func filesystemName(_ path: String) -> String? {
        guard let mounts = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return nil }
        let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        var best: (mountPoint: String, type: String)?
        for line in mounts.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3 else { continue }
            // Spaces and the like in mount points are octal escapes (\040).
            let mountPoint = String(fields[1]).replacingOccurrences(of: "\\040", with: " ")
            let inside = mountPoint == "/" || resolved == mountPoint || resolved.hasPrefix(mountPoint + "/")
            if inside, mountPoint.count >= (best?.mountPoint.count ?? 0) { best = (mountPoint, String(fields[2])) }
        }
        return best?.type
    }
}
