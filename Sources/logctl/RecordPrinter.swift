import ArgumentParser
import Foundation
import LogStore

/// Formats one record for `dump` and `tail` (and their follow loops): text, a hexdump of the
/// header and payload, or one JSON object per line.
struct RecordPrinter {
    enum Format {
        /// `LSN<TAB>segment<TAB>offset<TAB>length<TAB>payload`, the payload as text when it is
        /// printable UTF-8, else as 0x-prefixed hex.
        case text
        /// A summary line, then the header's and the payload's bytes as stored, 16 a line,
        /// addressed by their offset in the segment file.
        case hex
        /// The core contract's keys (lsn, segment, offset, length, data in base64) plus the
        /// header fields: crc, durable_lsn, type, flags.
        case json
    }

    struct Line: Encodable {
        var lsn: LSN
        var segment: String
        var offset: Int
        var length: Int
        var data: String
        var crc: UInt32
        var durable_lsn: LSN
        var type: UInt16
        var flags: UInt16
    }

    let format: Format
    var style = Style.standardOutput

    /// The record's lines, newline-terminated.
    func render(_ record: Log.RecordDetails) -> String {
        switch format {
        case .text:
            return "\(record.lsn)\t\(record.segment)\t\(record.offset)\t\(record.payload.count)\t"
                + displayPayload(record.payload) + "\n"
        case .json:
            return jsonLine(
                Line(lsn: record.lsn, segment: record.segment, offset: record.offset, length: record.payload.count,
                     data: Data(record.payload).base64EncodedString(), crc: record.crc, durable_lsn: record.durableLSN,
                     type: record.type, flags: record.flags)) + "\n"
        case .hex:
            var text = style.paint("LSN \(record.lsn)", .bold)
                + "  \(record.segment) offset \(record.offset)  length \(record.payload.count)"
                + "  crc 0x" + hex(record.crc, width: 8) + "  durable LSN \(record.durableLSN)"
                + "  type \(record.type)  flags \(record.flags)\n"
            text += style.paint("  header", .dim) + "\n"
            text += hexdump(record.headerBytes, address: record.offset)
            text += style.paint("  payload", .dim) + "\n"
            text += hexdump(record.payload, address: record.offset + record.headerBytes.count)
            return text
        }
    }

    /// Writes the record to standard output (buffered: a follow loop calls `flush()` when it
    /// has printed what is there).
    func print(_ record: Log.RecordDetails) {
        Swift.print(render(record), terminator: "")
    }

    func flush() { fflush(nil) }

    /// Prints the records of `log` from `first` through `last` (clamped to the log), at most
    /// `limit` of them; returns the LSN after the last one printed.
    @discardableResult
    func printRecords(of log: Log, from first: LSN?, through last: LSN?, limit: Int?) throws(LogError) -> LSN {
        var next = max(first ?? log.firstLSN, log.firstLSN)
        let end = min(last ?? log.writtenLSN, log.writtenLSN)
        var printed = 0
        while next <= end, printed < limit ?? Int.max {
            print(try log.recordDetails(next))
            next += 1
            printed += 1
        }
        flush()
        return next
    }
}

/// `hexdump -C` style lines: address, 16 bytes in two groups of 8, then the printable ASCII.
func hexdump(_ bytes: [UInt8], address: Int) -> String {
    var text = ""
    for start in stride(from: 0, to: bytes.count, by: 16) {
        let line = bytes[start..<min(start + 16, bytes.count)]
        var cells = line.map { hex($0, width: 2) }
        cells += Array(repeating: "  ", count: 16 - cells.count)
        let ascii = String(line.map { $0 >= 0x20 && $0 < 0x7F ? Character(UnicodeScalar($0)) : "." })
        text += "  " + hex(address + start, width: 8) + "  " + cells[0..<8].joined(separator: " ") + "  "
            + cells[8..<16].joined(separator: " ") + "  |" + ascii + "|\n"
    }
    return text
}

/// Lower-case hex, zero-padded to `width` digits.
func hex(_ value: some BinaryInteger, width: Int) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
}

/// Output options of the subcommands that print records.
struct RecordOutputOptions: ParsableArguments {
    @Flag(help: "Print one JSON object per record (lsn, segment, offset, length, data in base64, crc, durable_lsn, type, flags).")
    var json = false

    @Flag(help: "Print a hexdump of each record's header and payload, addressed by file offset.")
    var hex = false

    func validate() throws {
        if json && hex { throw ValidationError("--json and --hex exclude each other") }
    }

    var printer: RecordPrinter { RecordPrinter(format: json ? .json : hex ? .hex : .text) }
}
