import ArgumentParser
import Foundation
import LogStore

/// Writes one JSON object per line, with stable key order.
func printJSON(_ value: some Encodable) {
    print(jsonLine(value))
}

/// One JSON object, keys sorted, on one line (without its newline).
func jsonLine(_ value: some Encodable) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
}

/// Sizes in binary units: 4096 → "4.0 KiB".
func humanBytes(_ count: Int) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(count)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
}

/// A payload as text when it is printable UTF-8, else as hex.
func displayPayload(_ payload: [UInt8]) -> String {
    if let text = String(validating: payload, as: UTF8.self),
        text.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7F || $0 == "\t" })
    {
        return text
    }
    return "0x" + payload.map { String(format: "%02x", $0) }.joined()
}

/// Parses "4096", "64MiB", "1M", "2G" (binary units).
func parseByteCount(_ text: String) -> Int? {
    let lower = text.lowercased()
    let digits = lower.prefix(while: { $0.isNumber })
    guard let number = Int(digits) else { return nil }
    let multiplier: Int
    switch lower.dropFirst(digits.count) {
    case "", "b": multiplier = 1
    case "k", "kb", "kib": multiplier = 1 << 10
    case "m", "mb", "mib": multiplier = 1 << 20
    case "g", "gb", "gib": multiplier = 1 << 30
    default: return nil
    }
    let (value, overflow) = number.multipliedReportingOverflow(by: multiplier)
    return overflow ? nil : value
}

extension Log.SyncMode: ExpressibleByArgument {}

extension RecoveryMode: ExpressibleByArgument {}

/// LSN ranges as JSON: `[[first, last], ...]`.
func lsnRanges(_ ranges: [ClosedRange<LSN>]) -> [[LSN]] { ranges.map { [$0.lowerBound, $0.upperBound] } }

/// LSN ranges as text: "10, 12...20".
func describeRanges(_ ranges: [ClosedRange<LSN>]) -> String {
    ranges.map { $0.lowerBound == $0.upperBound ? "\($0.lowerBound)" : "\($0.lowerBound)...\($0.upperBound)" }
        .joined(separator: ", ")
}

/// One line on what a writer's recovery changed, or nil when it found a clean log.
func describeAppliedRecovery(_ report: RecoveryReport) -> String? {
    guard report.applied, report.outcome != .clean else { return nil }
    var text = "recovery (\(report.mode.rawValue)): \(report.outcome.rawValue)"
    if let damage = report.damage { text += " at \(damage.segment) offset \(damage.offset) (LSN \(damage.lsn))" }
    text += "; kept \(report.recordsKept) records"
    if report.recordsKept > 0 { text += " (LSN \(report.firstLSN)...\(report.lastLSN))" }
    if let lost = report.lostLSNs { text += "; durable LSNs \(lost.lowerBound)...\(lost.upperBound) dropped" }
    let preserved = report.droppedRegions.compactMap(\.preservedAt)
    if !preserved.isEmpty {
        text += "; dropped \(humanBytes(Int(report.droppedBytes))), preserved in " + preserved.joined(separator: ", ")
    }
    if let file = report.salvageFile { text += "; LSNs \(describeRanges(report.salvageableLSNs)) exported to \(file)" }
    if !report.gaps.isEmpty { text += "; no valid record for LSNs \(describeRanges(report.gaps))" }
    return text
}

/// The one-line progress indication of `bench` and `crashtest`: rewritten in place on stderr,
/// and only on a terminal (a line rewritten with \r would litter a file or a pipe).
final class ProgressLine {
    private let enabled: Bool
    private var showing = false

    init(enabled: Bool) { self.enabled = enabled }

    func show(_ text: String) {
        guard enabled else { return }
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + text + " …").utf8))
        showing = true
    }

    func clear() {
        guard showing else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        showing = false
    }
}

/// Table cells padded to the column widths (negative: left-aligned); a wider cell just pushes on.
func formatRow(_ cells: [String], widths: [Int]) -> String {
    zip(cells, widths).map { cell, width in
        let padding = String(repeating: " ", count: max(0, abs(width) - cell.count))
        return width < 0 ? cell + padding : padding + cell
    }.joined(separator: "  ")
}
