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
        }

        struct DamageReport: Encodable {
            var segment: String
            var offset: UInt64
            var lsn: LSN
            var reason: String
        }

        func run() throws {
            let report: RecoveryReport
            do {
                report = try Log.openReadOnly(log.directory).recoveryReport
            } catch {
                // Damage found before records could be scanned (a bad segment header, a segment
                // shorter than its header) is corruption too, and reported the same way.
                guard error.code == .corruption, format.json else { throw error }
                let damage = DamageReport(
                    segment: error.path ?? "", offset: error.offset ?? 0, lsn: error.lsn ?? 0,
                    reason: error.message)
                printJSON(
                    Report(status: "corruption", segments: 0, records: 0, first_lsn: 0, last_lsn: 0, durable_lsn: 0,
                           damage: damage, dropped_bytes: 0, removed_segments: [], lost_lsns: nil))
                throw ExitCode(2)
            }
            if format.json {
                printJSON(
                    Report(status: report.outcome.rawValue, segments: report.segmentsKept, records: report.recordsKept,
                           first_lsn: report.firstLSN, last_lsn: report.lastLSN, durable_lsn: report.provenDurableLSN,
                           damage: report.damage.map {
                               DamageReport(segment: $0.segment, offset: $0.offset, lsn: $0.lsn, reason: $0.reason)
                           },
                           dropped_bytes: report.droppedBytes, removed_segments: report.removedSegments,
                           lost_lsns: report.lostLSNs.map { [$0.lowerBound, $0.upperBound] }))
            } else {
                print(Verify.describe(report, directory: log.directory))
            }
            switch report.outcome {
            case .clean: return
            case .tornTail: throw ExitCode(1)
            case .corruption: throw ExitCode(2)
            }
        }

        static func describe(_ report: RecoveryReport, directory: String) -> String {
            let records = "\(report.recordsKept) records"
                + (report.recordsKept > 0 ? " (LSN \(report.firstLSN)...\(report.lastLSN))" : "")
                + " in \(report.segmentsKept) segments"
            switch report.outcome {
            case .clean:
                return "clean: \(records)"
            case .tornTail:
                var text = "torn tail: \(records) are intact; recovery would drop "
                    + "\(humanBytes(Int(report.droppedBytes))) that no acknowledged record lives in"
                if let damage = report.damage { text += "\n  at \(directory)/\(damage)" }
                for segment in report.removedSegments { text += "\n  would remove \(segment)" }
                return text
            case .corruption:
                var text = "CORRUPTION of durable data: \(records) before the damage are intact"
                if let damage = report.damage { text += "\n  at \(directory)/\(damage)" }
                if let lost = report.lostLSNs { text += "\n  durable records lost if truncated here: LSN \(lost)" }
                return text
            }
        }
    }
}
