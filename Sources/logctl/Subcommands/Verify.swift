import ArgumentParser
import Foundation
import LogStore

extension LogCtl {
    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check every segment header, record checksum and LSN (read-only; takes no lock).",
            discussion: """
                Exit 0: clean. Exit 1: only a torn tail (recovery would drop it; nothing acknowledged is
                affected). Exit 2: corruption of durable data (segment, offset and reason are printed).
                Exit 3: not a log, unreadable, or bad arguments.

                Every segment file is checked on its own as well: its header (magic, version, checksum,
                fields), every record's checksum and structure, LSN continuity within the segment and from
                one segment to the next. Each problem found is listed with its segment, offset, the LSN
                expected there and the reason (JSON: "problems"), past the first damage too.

                On a terminal, a progress bar (bytes scanned, rate, time left) is drawn on stderr for logs
                over 256 MiB; never when stderr is a pipe or a file.

                Past the damage it also lists the valid records a salvage recovery would export
                (salvageable LSNs), the LSNs no valid record was found for (gaps), and the side files
                earlier recoveries left in the directory (dropped-*.bin, salvaged-*.jsonl).

                Example:
                  logctl verify /tmp/log --json
                """)

        @OptionGroup var log: LogDirectory
        @OptionGroup var format: OutputFormat

        struct Report: Encodable {
            var status: String
            var segments: Int
            var records: UInt64
            var first_lsn: LSN
            var last_lsn: LSN
            var durable_lsn: LSN
            var damage: DamageReport?
            var dropped_bytes: UInt64
            var removed_segments: [String]
            var lost_lsns: [LSN]?
            /// What a writer would drop: the damaged segment's tail, then each later segment.
            var dropped_regions: [RegionReport] = []
            /// LSN ranges of the valid records past the damage (what salvage recovery exports).
            var salvageable_lsns: [[LSN]] = []
            /// LSN ranges past the damage with no valid record anywhere.
            var gaps: [[LSN]] = []
            /// Side files in the directory (names), left by earlier recoveries.
            var side_files: [String] = []
            /// Every problem the file-by-file check found (`Log.verify`).
            var problems: [DamageReport] = []
            var bytes_scanned: UInt64 = 0
        }

        struct RegionReport: Encodable {
            var segment: String
            var offset: UInt64
            var length: UInt64
            var reason: String
            /// Recover's report only: the side file the region was copied or moved to.
            var preserved_at: String? = nil
        }

        struct DamageReport: Encodable {
            var segment: String
            var offset: UInt64
            var lsn: LSN?
            var reason: String
        }

        func run() throws {
            let progress = ScanProgress(title: "verify")
            let check = try Log.verify(log.directory, progress: progress.update(scanned:total:))
            progress.finish()
            let problems = check.problems.map {
                DamageReport(segment: $0.segment, offset: $0.offset, lsn: $0.lsn, reason: $0.reason)
            }
            let report: RecoveryReport
            do {
                report = try Log.openReadOnly(log.directory, checkSealedSegments: true).recoveryReport
            } catch {
                // Damage found before records could be scanned (a bad segment header, a segment
                // shorter than its header) is corruption too, and reported the same way.
                guard error.code == .corruption else { throw error }
                let damage = DamageReport(
                    segment: error.path ?? "", offset: error.offset ?? 0, lsn: error.lsn ?? 0,
                    reason: error.message)
                if format.json {
                    printJSON(
                        Report(status: "corruption", segments: 0, records: 0, first_lsn: 0, last_lsn: 0, durable_lsn: 0,
                               damage: damage, dropped_bytes: 0, removed_segments: [], lost_lsns: nil,
                               problems: problems, bytes_scanned: check.bytesScanned))
                } else {
                    print(Style.standardOutput.outcome("CORRUPTION", severity: 2) + " (no writer can open this log): "
                          + error.description + Verify.describeProblems(check.problems))
                }
                throw ExitCode(2)
            }
            let sideFiles = (try? Log.sideFiles(in: log.directory)) ?? []
            if format.json {
                printJSON(
                    Report(status: report.outcome.rawValue, segments: report.segmentsKept, records: report.recordsKept,
                           first_lsn: report.firstLSN, last_lsn: report.lastLSN, durable_lsn: report.provenDurableLSN,
                           damage: report.damage.map {
                               DamageReport(segment: $0.segment, offset: $0.offset, lsn: $0.lsn, reason: $0.reason)
                           },
                           dropped_bytes: report.droppedBytes, removed_segments: report.removedSegments,
                           lost_lsns: report.lostLSNs.map { [$0.lowerBound, $0.upperBound] },
                           dropped_regions: report.droppedRegions.map {
                               RegionReport(segment: $0.segment, offset: $0.offset, length: $0.length, reason: $0.reason)
                           },
                           salvageable_lsns: lsnRanges(report.salvageableLSNs), gaps: lsnRanges(report.gaps),
                           side_files: sideFiles, problems: problems, bytes_scanned: check.bytesScanned))
            } else {
                print(Verify.describe(report, directory: log.directory, sideFiles: sideFiles)
                      + Verify.describeProblems(check.problems))
            }
            switch report.outcome {
            case .clean: return
            case .tornTail: throw ExitCode(1)
            case .corruption: throw ExitCode(2)
            }
        }

        static func describe(_ report: RecoveryReport, directory: String, sideFiles: [String] = []) -> String {
            var text = describeOutcome(report, directory: directory)
            if !report.salvageableLSNs.isEmpty {
                text += "\n  valid records past the damage (salvage recovery would export them): LSN "
                    + describeRanges(report.salvageableLSNs)
            }
            if !report.gaps.isEmpty { text += "\n  no valid record anywhere for LSN " + describeRanges(report.gaps) }
            if !sideFiles.isEmpty {
                text += "\n  \(sideFiles.count) side files from earlier recoveries: " + sideFiles.joined(separator: ", ")
            }
            return text
        }

        /// The file-by-file check's problems, one indented line each (empty when there are none).
        static func describeProblems(_ problems: [VerificationReport.Problem]) -> String {
            guard !problems.isEmpty else { return "" }
            let style = Style.standardOutput
            return "\n  \(problems.count) problem\(problems.count == 1 ? "" : "s") found checking every segment file:"
                + problems.map { "\n    " + style.paint($0.description, .red) }.joined()
        }

        static func describeOutcome(_ report: RecoveryReport, directory: String) -> String {
            let style = Style.standardOutput
            let records = "\(report.recordsKept) records"
                + (report.recordsKept > 0 ? " (LSN \(report.firstLSN)...\(report.lastLSN))" : "")
                + " in \(report.segmentsKept) segments"
            switch report.outcome {
            case .clean:
                return style.outcome("clean", severity: 0) + ": \(records)"
            case .tornTail:
                var text = style.outcome("torn tail", severity: 1) + ": \(records) are intact; recovery would drop "
                    + "\(humanBytes(Int(report.droppedBytes))) that no acknowledged record lives in"
                if let damage = report.damage { text += "\n  at \(directory)/\(damage)" }
                for segment in report.removedSegments { text += "\n  would move \(segment) out of the log" }
                return text
            case .corruption:
                var text = style.outcome("CORRUPTION", severity: 2) + " of durable data: \(records) before the damage are intact"
                if let damage = report.damage { text += "\n  at \(directory)/\(damage)" }
                if let lost = report.lostLSNs { text += "\n  durable records lost if truncated here: LSN \(lost)" }
                return text
            }
        }
    }
}
