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
                reports anything past them. With --follow, dump then keeps printing each new record
                once it is durable (never one that is only written), across segment rolls and writer
                restarts, until --to or --limit is reached or it is interrupted (exit 0).

                Examples:
                  logctl dump /tmp/log --from 10 --limit 5 --json
                  logctl dump /tmp/log --from 100 --to 120 --hex
                  logctl dump /tmp/log --from 500 --follow --json
                """)

        @OptionGroup var log: LogDirectory
        @OptionGroup var output: RecordOutputOptions

        @Option(help: "First LSN to print.")
        var from: UInt64?

        @Option(help: "Last LSN to print.")
        var to: UInt64?

        @Option(help: "Print at most N records.")
        var limit: Int?

        @Flag(name: [.customShort("f"), .long], help: "Keep printing new records as they become durable (until Ctrl-C).")
        var follow = false

        func validate() throws {
            if let limit, limit < 0 { throw ValidationError("--limit must not be negative") }
            if let from, let to, from > to { throw ValidationError("--from \(from) is after --to \(to)") }
        }

        func run() throws {
            if follow {
                // Through the follower from the start: each line printed is durable.
                let first = try Log.openReadOnly(log.directory).firstLSN
                return try followRecords(directory: log.directory, from: max(from ?? first, first), through: to,
                                         limit: limit, printer: output.printer)
            }
            let opened = try Log.openReadOnly(log.directory)
            defer { try? opened.close() }
            try output.printer.printRecords(of: opened, from: from, through: to, limit: limit)
        }
    }
}
