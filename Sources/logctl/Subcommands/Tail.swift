import ArgumentParser
import Foundation
import LogStore

extension LogCtl {
    struct Tail: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the last N records (read-only; never takes the writer lock).",
            discussion: """
                Prints the last N valid records, oldest first, in the same formats as `dump`. Safe to run
                while a writer appends: it shows what was valid when it opened the log. With -f it then
                follows the log another process is writing, printing each record once it is durable
                (never one that is only written), across segment rolls, retention and writer
                restarts, until interrupted (Ctrl-C: exit 0). Idle, it sleeps on the writer's
                DURABLE file (a futex) and wakes within microseconds of each commit.

                Examples:
                  logctl tail /tmp/log
                  logctl tail /tmp/log -n 3 --json
                  logctl tail /tmp/log -f
                """)

        @OptionGroup var log: LogDirectory
        @OptionGroup var output: RecordOutputOptions

        @Option(name: [.customShort("n"), .customLong("lines")], help: "How many records to print.")
        var count = 10

        @Flag(name: [.customShort("f"), .long], help: "Keep printing new records as they become durable (until Ctrl-C).")
        var follow = false

        func validate() throws {
            if count < 0 { throw ValidationError("-n must not be negative") }
        }

        func run() throws {
            let opened = try Log.openReadOnly(log.directory)
            let written = opened.writtenLSN
            let first = written >= UInt64(count) ? max(opened.firstLSN, written - UInt64(count) + 1) : opened.firstLSN
            if follow {
                // Everything, the last N included, through the follower: each line printed is durable.
                try? opened.close()
                return try followRecords(directory: log.directory, from: first, through: nil, limit: nil,
                                         printer: output.printer)
            }
            defer { try? opened.close() }
            guard count > 0 else { return }
            try output.printer.printRecords(of: opened, from: first, through: written, limit: nil)
        }
    }
}
