import Foundation

/// Colours for human output: only when standard output is a terminal and `NO_COLOR` is unset
/// or empty (https://no-color.org), so that files, pipes and scripts get plain text.
struct Style {
    enum Color: String {
        case red = "31"
        case green = "32"
        case yellow = "33"
        case bold = "1"
        case dim = "2"
    }

    let enabled: Bool

    static let standardOutput = Style(
        enabled: isatty(STDOUT_FILENO) == 1 && (ProcessInfo.processInfo.environment["NO_COLOR"] ?? "").isEmpty)

    func paint(_ text: String, _ color: Color) -> String {
        enabled ? "\u{1B}[\(color.rawValue)m" + text + "\u{1B}[0m" : text
    }

    /// A verdict word coloured by how bad it is: clean green, torn tail yellow, corruption red.
    func outcome(_ text: String, severity: Int) -> String {
        paint(text, severity == 0 ? .green : severity == 1 ? .yellow : .red)
    }
}

/// Whether progress may be drawn on standard error: a terminal, and not a pipe or a file.
var standardErrorIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }

/// Durations for people: "850 ms", "12 s", "3 min 20 s".
func humanDuration(_ seconds: Double) -> String {
    if seconds < 1 { return "\(Int(seconds * 1000)) ms" }
    if seconds < 60 { return "\(Int(seconds.rounded())) s" }
    let whole = Int(seconds.rounded())
    if whole < 3600 { return "\(whole / 60) min \(whole % 60) s" }
    return "\(whole / 3600) h \(whole % 3600 / 60) min"
}

/// The progress bar of a long scan (`verify`): bytes scanned of the total, rate and time left,
/// redrawn at most ten times a second on stderr. Drawn only when stderr is a terminal and the
/// total reaches `minimumBytes` (256 MiB; `LOGCTL_PROGRESS_MIN_BYTES` overrides it, which the
/// tests use to see the bar on a small log).
final class ScanProgress {
    private let line: ProgressLine
    private let title: String
    private let minimumBytes: Int
    private let started = Date()
    private var lastDrawn = Date.distantPast

    init(title: String, enabled: Bool = standardErrorIsTerminal) {
        self.title = title
        self.line = ProgressLine(enabled: enabled)
        minimumBytes = ProcessInfo.processInfo.environment["LOGCTL_PROGRESS_MIN_BYTES"].flatMap(Int.init) ?? 256 << 20
    }

    func update(scanned: Int, total: Int) {
        guard total >= minimumBytes, total > 0 else { return }
        let now = Date()
        guard now.timeIntervalSince(lastDrawn) >= 0.1 || scanned >= total else { return }
        lastDrawn = now
        line.show(ScanProgress.render(title: title, scanned: scanned, total: total,
                                      elapsed: now.timeIntervalSince(started)))
    }

    func finish() { line.clear() }

    /// "verify [#######-------------]  1.2 GiB of 3.0 GiB  850.0 MiB/s  2 s left"
    static func render(title: String, scanned: Int, total: Int, elapsed: Double) -> String {
        let width = 20
        let fraction = min(1, Double(scanned) / Double(max(total, 1)))
        let filled = Int(fraction * Double(width))
        var text = title + " [" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
            + "]  \(humanBytes(scanned)) of \(humanBytes(total))"
        if elapsed > 0.05, scanned > 0 {
            let rate = Double(scanned) / elapsed
            text += "  \(humanBytes(Int(rate)))/s  " + humanDuration(Double(total - scanned) / rate) + " left"
        }
        return text
    }
}
