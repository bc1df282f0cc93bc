import ArgumentParser
import Foundation
import LogStore

extension LogCtl {
    struct Truncate: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove old segments (--before) or every record after an LSN (--after), crash-safely.",
            discussion: """
                --before LSN deletes the whole segments at the front that hold only LSNs below LSN (the
                retention cut); the first LSN afterwards is the base of the first segment kept, which may
                be below LSN, and the last segment is never deleted. --after LSN removes every record
                after LSN (Raft-style conflict resolution): LSN must lie between the first LSN - 1 and
                the last LSN, and the next append gets LSN + 1 again. A crash at any moment leaves the
                log as before or as after (docs/FORMAT.md §11).

                Takes the writer lock (exit 4 while another writer holds it) and runs recovery first,
                as append does. --dry-run opens the log read-only instead (no lock, nothing changed)
                and prints what would be removed.

                Examples:
                  logctl truncate /tmp/log --before 1000 --dry-run
                  logctl truncate /tmp/log --after 41 --json
                """)

        @OptionGroup var log: LogDirectory
        @OptionGroup var format: OutputFormat

        @Option(help: "Delete the whole segments holding only LSNs below this one.")
        var before: UInt64?

        @Option(help: "Remove every record after this LSN.")
        var after: UInt64?

        @Flag(help: "Print what would be removed; change nothing (opens read-only, takes no lock).")
        var dryRun = false

        func validate() throws {
            guard (before == nil) != (after == nil) else {
                throw ValidationError("give exactly one of --before LSN and --after LSN")
            }
        }

        struct Report: Encodable {
            var dry_run: Bool
            var kind: String
            var lsn: LSN
            var removed_lsns: [LSN]?
            var removed_segments: [String]
            var cut_segment: String?
            var cut_offset: Int?
            var first_lsn: LSN
            var last_lsn: LSN
        }

        func run() throws {
            let opened = dryRun ? try Log.openReadOnly(log.directory) : try Log.open(log.directory)
            defer { try? opened.close() }
            if let note = describeAppliedRecovery(opened.recoveryReport) {
                FileHandle.standardError.write(Data(("logctl: " + note + "\n").utf8))
            }
            let plan: TruncationPlan
            if let before {
                plan = try opened.planRemoveBefore(before)
                if !dryRun { try opened.removeBefore(before) }
            } else {
                plan = try opened.planRemoveAfter(after!)
                if !dryRun { try opened.removeAfter(after!) }
            }
            try opened.close()
            if format.json {
                printJSON(Report(
                    dry_run: dryRun, kind: plan.kind.rawValue, lsn: plan.lsn,
                    removed_lsns: plan.removedLSNs.map { [$0.lowerBound, $0.upperBound] },
                    removed_segments: plan.removedSegments, cut_segment: plan.cutSegment, cut_offset: plan.cutOffset,
                    first_lsn: plan.firstLSN, last_lsn: plan.writtenLSN))
                return
            }
            print(describe(plan))
        }

        func describe(_ plan: TruncationPlan) -> String {
            guard let removed = plan.removedLSNs else {
                return "nothing to remove (LSNs \(plan.firstLSN)...\(plan.writtenLSN))"
            }
            let count = removed.upperBound - removed.lowerBound + 1
            var text = (dryRun ? "would remove" : "removed")
                + " LSNs \(removed.lowerBound)...\(removed.upperBound) (\(count) record\(count == 1 ? "" : "s"))"
            if !plan.removedSegments.isEmpty {
                text += "; " + (dryRun ? "would delete " : "deleted ") + plan.removedSegments.joined(separator: ", ")
            }
            if let segment = plan.cutSegment, let offset = plan.cutOffset {
                text += "; " + (dryRun ? "would zero " : "zeroed ") + "\(segment) from offset \(offset)"
            }
            let range = plan.writtenLSN >= plan.firstLSN ? "LSNs \(plan.firstLSN)...\(plan.writtenLSN)" : "no records"
            return text + "; the log " + (dryRun ? "would hold " : "holds ") + range
        }
    }
}
