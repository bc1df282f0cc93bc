import ArgumentParser
import Foundation
import LogStore

extension LogCtl {
    struct Tail: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the last N records (read-only; never takes the writer lock).",
            discussion: """
                Prints the last N valid records, oldest first, in the same formats as `dump`. Safe to run
                while a writer appends: it shows what was valid when it opened the log.

                Examples:
                  logctl tail /tmp/log
                  logctl tail /tmp/log -n 3 --json
                """)

        @OptionGroup var log: LogDirectory
        @OptionGroup var output: RecordOutputOptions

        @Option(name: [.customShort("n"), .customLong("lines")], help: "How many records to print.")
        var count = 10

        func validate() throws {
            if count < 0 { throw ValidationError("-n must not be negative") }
        }

        func run() throws {
            let log = try Log.openReadOnly(log.directory)
            defer { try? log.close() }
            guard count > 0 else { return }
            let written = log.writtenLSN
            let first = written >= UInt64(count) ? max(log.firstLSN, written - UInt64(count) + 1) : log.firstLSN
            try output.printer.printRecords(of: log, from: first, through: written, limit: nil)
        }
    }
}
