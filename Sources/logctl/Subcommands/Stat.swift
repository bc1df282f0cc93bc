import ArgumentParser
import Foundation
import LogStore

extension LogCtl {
    struct Stat: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show segments, LSN range, durable LSN and sizes (read-only; takes no lock).",
            discussion: """
                Example:
                  logctl stat /tmp/log --json
                """)

        @OptionGroup var log: LogDirectory
        @OptionGroup var format: OutputFormat

        struct Report: Encodable {
            struct Segment: Encodable {
                var name: String
                var id: UInt64
                var base_lsn: LSN
                var records: Int
                var bytes_used: Int
                var bytes_allocated: Int
            }
            var directory: String
            var log_id: String
            var segments: [Segment]
            var first_lsn: LSN
            var last_lsn: LSN
            var records: UInt64
            var durable_lsn: LSN
            var bytes_used: Int
            var bytes_allocated: Int
            var segment_size: Int
            var writer_pid: Int32?
            var recovery: String
            /// LSN ranges past the damage with no valid record anywhere (empty for a clean log).
            var gaps: [[LSN]] = []
            /// LSN ranges of the valid records past the damage (what salvage recovery exports).
            var salvageable_lsns: [[LSN]] = []
            /// Side files in the directory (names), left by earlier recoveries.
            var side_files: [String] = []
        }

        func run() throws {
            let opened = try Log.openReadOnly(log.directory)
            defer { try? opened.close() }
            let segments = opened.segments
            let report = Report(
                directory: log.directory, log_id: opened.logID.description,
                segments: segments.map {
                    .init(name: $0.name, id: $0.id, base_lsn: $0.baseLSN, records: $0.recordCount,
                          bytes_used: $0.bytesUsed, bytes_allocated: $0.bytesAllocated)
                },
                first_lsn: opened.firstLSN, last_lsn: opened.writtenLSN,
                records: opened.writtenLSN + 1 - opened.firstLSN, durable_lsn: opened.durableLSN,
                bytes_used: segments.reduce(0) { $0 + $1.bytesUsed },
                bytes_allocated: segments.reduce(0) { $0 + $1.bytesAllocated }, segment_size: opened.segmentSize,
                writer_pid: Log.lockHolder(log.directory), recovery: opened.recoveryReport.outcome.rawValue,
                gaps: lsnRanges(opened.recoveryReport.gaps),
                salvageable_lsns: lsnRanges(opened.recoveryReport.salvageableLSNs),
                side_files: (try? Log.sideFiles(in: log.directory)) ?? [])
            if format.json {
                printJSON(report)
                return
            }
            print(Stat.render(report))
        }

        static func render(_ report: Report) -> String {
            var lines: [String] = []
            lines.append("log        \(report.directory)  (id \(report.log_id))")
            lines.append(
                "records    \(report.records)" + (report.records > 0 ? "  LSN \(report.first_lsn)...\(report.last_lsn)" : ""))
            lines.append("durable    LSN \(report.durable_lsn) (proven by the log itself)")
            lines.append(
                "size       \(humanBytes(report.bytes_used)) used of \(humanBytes(report.bytes_allocated)) allocated, "
                    + "\(humanBytes(report.segment_size)) segments")
            lines.append("writer     " + (report.writer_pid.map { "process \($0) holds the lock" } ?? "none"))
            let style = Style.standardOutput
            var state = style.outcome(
                report.recovery, severity: report.recovery == "clean" ? 0 : report.recovery == "torn-tail" ? 1 : 2)
            if !report.gaps.isEmpty {
                state += "; no valid record for LSN " + describeRanges(report.gaps.map { $0[0]...$0[1] })
            }
            if !report.salvageable_lsns.isEmpty {
                state += "; salvageable past the damage: LSN "
                    + describeRanges(report.salvageable_lsns.map { $0[0]...$0[1] })
            }
            lines.append("state      \(state)")
            if !report.side_files.isEmpty {
                lines.append("side files \(report.side_files.count): " + report.side_files.joined(separator: ", "))
            }
            lines.append("")
            let header = ["segment", "id", "base LSN", "records", "used", "allocated"]
            let rows = report.segments.map {
                [$0.name, "\($0.id)", "\($0.base_lsn)", "\($0.records)", humanBytes($0.bytes_used),
                 humanBytes($0.bytes_allocated)]
            }
            let widths = header.indices.map { column in
                ([header] + rows).map { $0[column].count }.max() ?? 0
            }
            for row in [header] + rows {
                lines.append(
                    row.enumerated().map { column, cell in
                        column == 0
                            ? cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
                            : String(repeating: " ", count: widths[column] - cell.count) + cell
                    }.joined(separator: "  "))
            }
            return lines.joined(separator: "\n")
        }
    }
}
