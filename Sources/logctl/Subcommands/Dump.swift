import ArgumentParser
import Foundation
import LogStore

extension LogCtl {
    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print records (read-only; takes no lock).",
            discussion: """
                Text output: LSN, segment, offset, length and the payload (as text when it is printable
                UTF-8, else hex), tab-separated. With --json: one object per line with lsn, segment,
                offset, length and data (the payload in base64), plus the header fields crc, durable_lsn,
                type and flags. With --hex: a hexdump of each record's header and payload, addressed
                by their offset in the segment file.

                Only the valid records are printed (what a read-only open shows); `logctl verify`
                reports anything past them.

                Examples:
                  logctl dump /tmp/log --from 10 --limit 5 --json
                  logctl dump /tmp/log --from 100 --to 120 --hex
                """)

        @OptionGroup var log: LogDirectory
        @OptionGroup var output: RecordOutputOptions

        @Option(help: "First LSN to print.")
        var from: UInt64?

        @Option(help: "Last LSN to print.")
        var to: UInt64?

        @Option(help: "Print at most N records.")
        var limit: Int?

        func validate() throws {
            if let limit, limit < 0 { throw ValidationError("--limit must not be negative") }
            if let from, let to, from > to { throw ValidationError("--from \(from) is after --to \(to)") }
        }

        func run() throws {
            let log = try Log.openReadOnly(log.directory)
            defer { try? log.close() }
            try output.printer.printRecords(of: log, from: from, through: to, limit: limit)
        }
    }
}
