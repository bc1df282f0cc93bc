import ArgumentParser
import Foundation
import LogStore

extension LogCtl {
    struct Dump: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print records (read-only; takes no lock).",
            discussion: """
                Text output: LSN, segment, offset, length and the payload (as text when it is printable
                UTF-8, else hex). With --json: one object per line with lsn, segment, offset, length
                and data (the payload in base64).

                Example:
                  logctl dump /tmp/log --from 10 --limit 5 --json
                """)

        @OptionGroup var log: LogDirectory
        @OptionGroup var format: OutputFormat

        @Option(help: "First LSN to print.")
        var from: UInt64?

        @Option(help: "Print at most N records.")
        var limit: Int?

        struct Line: Encodable {
            var lsn: LSN
            var segment: String
            var offset: Int
            var length: Int
            var data: String
        }

        func run() throws {
            let log = try Log.openReadOnly(log.directory)
            defer { try? log.close() }
            var printed = 0
            let first = max(from ?? log.firstLSN, log.firstLSN)
            guard first <= log.writtenLSN else { return }
            // By LSN rather than `records(from:)`, so that damage found reading a sealed segment
            // (not checked at open after a clean close) is an error, not the end of the dump.
            for lsn in first...log.writtenLSN {
                if let limit, printed >= limit { break }
                let record = try log.record(lsn)
                if format.json {
                    printJSON(
                        Line(lsn: record.lsn, segment: record.segment, offset: record.offset,
                             length: record.payload.count, data: Data(record.payload).base64EncodedString()))
                } else {
                    print("\(record.lsn)\t\(record.segment)\t\(record.offset)\t\(record.payload.count)\t"
                          + displayPayload(record.payload))
                }
                printed += 1
            }
        }
    }
}
