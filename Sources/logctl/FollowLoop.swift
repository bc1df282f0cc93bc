import Foundation
import LogStore

/// `tail -f` and `dump --follow`: after the records a read-only open showed, prints each new
/// record once it is durable (a `LogFollower`, woken by the writer's `DURABLE` file), across
/// segment rolls and writer restarts, until SIGINT/SIGTERM or `last`/`limit` is reached.
/// Never takes the writer lock and never writes a byte of the log.
func followRecords(directory: String, from next: LSN, through last: LSN?, limit: Int?, printer: RecordPrinter)
    throws(LogError)
{
    var printed = 0
    if let last, next > last { return }
    if let limit, printed >= limit { return }
    let follower = try LogFollower(directory, from: next)
    follower.stopOnSignals([SIGINT, SIGTERM])
    let headers = SegmentHeaderReader(directory: directory)
    while let record = try follower.next() {
        if let last, record.lsn > last { return }
        printer.print(try headers.details(of: record))
        printer.flush()
        printed += 1
        if let limit, printed >= limit { return }
        if let last, record.lsn == last { return }
    }
}

/// Reads the stored header of a record a follower returned, so that `--hex` and `--json` show
/// the same fields when following as when dumping (read-only descriptors, one per segment).
final class SegmentHeaderReader {
    let directory: String
    private var descriptors: [String: Int32] = [:]

    init(directory: String) { self.directory = directory }

    deinit { descriptors.values.forEach { close($0) } }

    func details(of record: Log.Record) throws(LogError) -> Log.RecordDetails {
        let path = directory + "/" + record.segment
        var descriptor = descriptors[record.segment] ?? -1
        if descriptor < 0 {
            descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else {
                throw LogError(.ioError, "cannot open the segment to read a record header (errno \(errno))", path: path)
            }
            // A segment deleted by retention meanwhile stays readable through its descriptor.
            if descriptors.count > 8, let (name, old) = descriptors.first {
                close(old)
                descriptors[name] = nil
            }
            descriptors[record.segment] = descriptor
        }
        var header = [UInt8](repeating: 0, count: 32)
        let count = header.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, 32, off_t(record.offset)) }
        guard count == 32 else {
            throw LogError(.ioError, "cannot read the record header at offset \(record.offset)", path: path)
        }
        func field<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            header.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        }
        return Log.RecordDetails(
            lsn: record.lsn, segment: record.segment, offset: record.offset, crc: field(0, UInt32.self),
            durableLSN: field(16, UInt64.self), type: field(24, UInt16.self), flags: field(26, UInt16.self),
            headerBytes: header, payload: record.payload)
    }
}
