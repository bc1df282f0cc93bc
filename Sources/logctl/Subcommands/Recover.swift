import ArgumentParser
import Foundation
import LogStore

extension LogCtl {
    struct Recover: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Plan or run recovery as a writer would; clean up side files.",
            discussion: """
                Without --apply: prints the plan (what a writer opening with --mode would keep, what it
                would drop, where and why, what it would copy to side files first) and changes nothing
                (read-only; takes no lock). Exits 2 when a writer in that mode would refuse the log
                (damage to durable data outside point-in-time and salvage, any torn tail in strict
                mode), as --apply would; else 0.

                With --apply: takes the writer lock (exit 4 while another writer holds it), runs
                recovery, closes the log and reports what was done. Whatever recovery drops is first
                preserved in side files in the log directory: dropped-<segment>-<offset>-<UTC time>.bin
                (torn or damaged bytes; whole segments past the cut), and with salvage,
                salvaged-*.jsonl (every valid record past the damage, with its LSN).

                --remove-side-files: lists the side files (dropped-*.bin, salvaged-*.jsonl); with
                --apply, deletes them, as the writer (takes the lock), and fsyncs the directory. Look at
                them first: they are the only copy of what recovery dropped.

                Modes (docs/FORMAT.md §8.5): strict refuses any invalid byte; torn-tail (the default)
                drops a torn tail and refuses damage to durable data; point-in-time keeps the records
                before the damage; salvage does the same and exports every valid record past it.

                Examples:
                  logctl recover /tmp/log --mode point-in-time
                  logctl recover /tmp/log --mode salvage --apply
                  logctl recover /tmp/log --remove-side-files --apply
                """)

        @OptionGroup var log: LogDirectory
        @OptionGroup var format: OutputFormat

        @Option(help: "Recovery mode: strict, torn-tail (default), point-in-time or salvage.")
        var mode: RecoveryMode?

        @Flag(help: "Carry out the plan (takes the writer lock). Without it nothing is changed.")
        var apply = false

        @Flag(help: "Delete the side files earlier recoveries left (with --apply; else list them).")
        var removeSideFiles = false

        func validate() throws {
            if removeSideFiles && mode != nil { throw ValidationError("--remove-side-files runs no recovery; drop --mode") }
        }

        func run() throws {
            if removeSideFiles {
                try cleanUp()
                return
            }
            let mode = mode ?? .tornTail
            let report: RecoveryReport
            if apply {
                let opened = try Log.open(log.directory, options: Log.Options(recovery: mode))
                report = opened.recoveryReport
                try opened.close()
            } else {
                report = try Log.openReadOnly(log.directory, recovery: mode).recoveryReport
            }
            let holder = apply ? nil : Log.lockHolder(log.directory)
            if format.json {
                printJSON(Recover.json(report, directory: log.directory, writerPID: holder))
            } else {
                print(Recover.describe(report, directory: log.directory, writerPID: holder))
            }
            if report.writerRefuses { throw ExitCode(2) }
        }

        private func cleanUp() throws {
            let names: [String]
            if apply {
                names = try Log.removeSideFiles(in: log.directory)
            } else {
                _ = try Log.openReadOnly(log.directory)  // refuses what is not a log, like --apply
                names = try Log.sideFiles(in: log.directory)
            }
            if format.json {
                printJSON(SideFileReport(directory: log.directory, applied: apply, side_files: names))
                return
            }
            if names.isEmpty {
                print("no side files in \(log.directory)")
                return
            }
            print((apply ? "deleted" : "would delete (run with --apply)") + " \(names.count) side file"
                  + (names.count == 1 ? "" : "s") + " in \(log.directory):")
            for name in names { print("  " + name) }
        }

        struct SideFileReport: Encodable {
            var directory: String
            var applied: Bool
            var side_files: [String]
        }

        struct Report: Encodable {
            var directory: String
            var mode: String
            var applied: Bool
            /// Whether a writer in this mode refuses the log (nothing is or would be changed).
            var refused: Bool
            var outcome: String
            var damage: Verify.DamageReport?
            var segments_kept: Int
            var records_kept: UInt64
            var first_lsn: LSN
            var last_lsn: LSN
            var dropped_bytes: UInt64
            var dropped_regions: [Verify.RegionReport]
            var removed_segments: [String]
            var lost_lsns: [LSN]?
            var salvageable_lsns: [[LSN]]
            var gaps: [[LSN]]
            var salvage_file: String?
            var writer_pid: Int32?
        }

        static func json(_ report: RecoveryReport, directory: String, writerPID: Int32?) -> Report {
            Report(
                directory: directory, mode: report.mode.rawValue, applied: report.applied,
                refused: report.writerRefuses, outcome: report.outcome.rawValue,
                damage: report.damage.map {
                    Verify.DamageReport(segment: $0.segment, offset: $0.offset, lsn: $0.lsn, reason: $0.reason)
                },
                segments_kept: report.segmentsKept, records_kept: report.recordsKept, first_lsn: report.firstLSN,
                last_lsn: report.lastLSN, dropped_bytes: report.writerRefuses ? 0 : report.droppedBytes,
                dropped_regions: report.writerRefuses ? [] : report.droppedRegions.map {
                    Verify.RegionReport(segment: $0.segment, offset: $0.offset, length: $0.length, reason: $0.reason,
                                        preserved_at: $0.preservedAt)
                },
                removed_segments: report.writerRefuses ? [] : report.removedSegments,
                lost_lsns: report.lostLSNs.map { [$0.lowerBound, $0.upperBound] },
                salvageable_lsns: lsnRanges(report.salvageableLSNs), gaps: lsnRanges(report.gaps),
                salvage_file: report.salvageFile, writer_pid: writerPID)
        }

        /// The plan (or what was done), aligned, one line per decision.
        static func describe(_ report: RecoveryReport, directory: String, writerPID: Int32?) -> String {
            let style = Style.standardOutput
            let mode = report.mode.rawValue
            var rows: [(String, String)] = []
            let found: String
            switch report.outcome {
            case .clean: found = style.outcome("clean", severity: 0) + ": nothing to recover"
            case .tornTail: found = style.outcome("torn tail", severity: 1)
            case .corruption: found = style.outcome("corruption of durable data", severity: 2)
            }
            rows.append(("found", found + (report.damage.map { " at \($0)" } ?? "")))
            let kept = "\(report.recordsKept) records"
                + (report.recordsKept > 0 ? " (LSN \(report.firstLSN)...\(report.lastLSN))" : "")
                + " in \(report.segmentsKept) segment\(report.segmentsKept == 1 ? "" : "s")"
            if report.writerRefuses {
                rows.append(("refuses", style.paint("a \(mode) writer refuses to open this log; nothing is changed", .red)))
                rows.append(("options", alternatives(report)))
            } else {
                rows.append(("keep", kept))
                let verb = report.applied ? "dropped" : "drop"
                for region in report.droppedRegions {
                    let whole = report.removedSegments.contains(region.segment)
                    let what = whole
                        ? "\(region.segment) (whole segment, \(humanBytes(Int(region.length))) of records)"
                        : "\(humanBytes(Int(region.length))) of \(region.segment) from offset \(region.offset)"
                    rows.append((verb, what + ": \(region.reason)"))
                    if let preserved = region.preservedAt {
                        rows.append(("", "→ " + (whole ? "moved to " : "copied to ") + preserved))
                    } else {
                        let name = "dropped-\(region.segment)-\(whole ? 0 : region.offset)-<UTC time>.bin"
                        rows.append(("", "→ would be " + (whole ? "moved to " : "copied to ") + name + " first"))
                    }
                }
                if let lost = report.lostLSNs {
                    rows.append(("lost", style.paint("durable LSNs \(lost.lowerBound)...\(lost.upperBound)", .red)
                                 + " leave the log"))
                }
                if !report.salvageableLSNs.isEmpty {
                    let lsns = "LSN " + describeRanges(report.salvageableLSNs)
                    if let file = report.salvageFile {
                        rows.append(("exported", lsns + " to " + file))
                    } else if report.mode == .salvage {
                        rows.append(("export", lsns + " to salvaged-<segment>-<offset>-<UTC time>.jsonl"))
                    } else {
                        rows.append(("salvage", lsns + " are valid past the damage; --mode salvage would export them"))
                    }
                }
            }
            if !report.gaps.isEmpty { rows.append(("gone", "no valid record anywhere for LSN " + describeRanges(report.gaps))) }
            if let writerPID {
                rows.append(("writer", "process \(writerPID) holds the lock: --apply would be refused (exit 4) "
                             + "until it exits, and this plan may be out of date"))
            }
            let title = report.applied
                ? "recovery (\(mode)) applied to \(directory)"
                : "recovery plan (\(mode)) for \(directory): nothing changed"
                    + (report.writerRefuses || report.outcome == .clean ? "" : "; run with --apply to carry it out")
            let width = rows.map(\.0.count).max() ?? 0
            return ([style.paint(title, .bold)] + rows.map { "  " + $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 })
                .joined(separator: "\n")
        }

        /// What the modes that would open the log keep, for a refused plan.
        static func alternatives(_ report: RecoveryReport) -> String {
            if report.outcome == .tornTail {
                return "--mode torn-tail drops the torn tail and keeps all \(report.recordsKept) records"
            }
            var text = "--mode point-in-time keeps LSN \(report.firstLSN)...\(report.lastLSN)"
            if report.recordsKept == 0 { text = "--mode point-in-time keeps no record" }
            if !report.salvageableLSNs.isEmpty {
                text += "; --mode salvage also exports LSN " + describeRanges(report.salvageableLSNs)
            }
            return text
        }
    }
}
