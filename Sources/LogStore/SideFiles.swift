#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SystemPackage

/// Side files: what a writer's recovery removes from a log, preserved in the log directory
/// before it is removed (docs/FORMAT.md §8.6), and salvage recovery's export of the valid
/// records past the damage.
///
/// A copy is written as `<name>.partial`, fsync'd and renamed to `<name>`, so a file with a
/// final name is always complete; the caller fsyncs the directory before it removes anything,
/// so a crash cannot lose both the side file and the original. Names never end in `.seg` or
/// `.seg.tmp`, so no open mistakes a side file for a segment, and every open ignores them.
///
/// Recovery run again after a crash (or a second time for any reason) does not write a second
/// copy of what an existing side file already holds: a copy is reused when a side file for the
/// same segment and offset holds every nonzero byte of the region (the rerun may find part of
/// it zeroed already), and an export when an earlier export for the same cut lists every record
/// the new one would (in the same order). An orphan segment is moved by `rename`, which a
/// crash cannot do twice.
enum SideFiles {
    /// Whether `name` is a complete side file (`dropped-*.bin` or `salvaged-*.jsonl`).
    static func isSideFileName(_ name: String) -> Bool {
        (name.hasPrefix(Format.droppedFilePrefix) && name.hasSuffix("." + Format.droppedFileExtension))
            || (name.hasPrefix(Format.salvageFilePrefix) && name.hasSuffix("." + Format.salvageFileExtension))
    }

    /// Whether `name` is a side file that was being written (`<side file name>.partial`).
    static func isPartialSideFileName(_ name: String) -> Bool {
        name.hasSuffix(Format.partialFileSuffix)
            && isSideFileName(String(name.dropLast(Format.partialFileSuffix.count)))
    }

    /// The time now in UTC, as `20250612T101500Z`.
    static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"
    }

    /// `<stem>-<UTC time>.<ext>`, or with `-2`, `-3`, … before the extension if that is taken.
    static func freshName(stem: String, extension ext: String, taken: Set<String>) -> String {
        let base = stem + "-" + timestamp()
        var name = base + "." + ext
        var counter = 2
        while taken.contains(name) || taken.contains(name + Format.partialFileSuffix) {
            name = base + "-\(counter)." + ext
            counter += 1
        }
        return name
    }

    // MARK: - Copies of a segment's tail

    /// Preserves `bytes`, the bytes of segment `segment` from `offset` on, in
    /// `dropped-<segment>-<offset>-<UTC time>.bin`, or finds an existing side file that holds
    /// them already. Returns its path. The caller fsyncs the directory before removing them.
    static func preserve(_ bytes: UnsafeRawBufferPointer, segment: String, offset: Int, directory: String)
        throws(Errno) -> String
    {
        let stem = Format.droppedFilePrefix + segment + "-\(offset)"
        let names = try FileSystem.listDirectory(directory)
        for name in names.sorted()
        where name.hasPrefix(stem + "-") && name.hasSuffix("." + Format.droppedFileExtension) {
            if try holdsEveryNonzeroByte(of: bytes, path: directory + "/" + name) { return directory + "/" + name }
        }
        let path = directory + "/" + freshName(stem: stem, extension: Format.droppedFileExtension, taken: Set(names))
        try writeComplete(path) { (file: Int32) throws(Errno) in try writeAll(file, bytes, at: 0) }
        return path
    }

    /// Whether the file at `path` has, at every position where `bytes` is not zero, the same
    /// byte (so it preserves everything `bytes` holds).
    static func holdsEveryNonzeroByte(of bytes: UnsafeRawBufferPointer, path: String) throws(Errno) -> Bool {
        let file = try OwnedDescriptor(path: path, flags: O_RDONLY)
        let chunk = 1 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: Format.pageSize)
        defer { buffer.deallocate() }
        var position = 0
        while position < bytes.count {
            let wanted = min(chunk, bytes.count - position)
            let read = try file.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<wanted]), at: position)
            let expected = UnsafeRawBufferPointer(rebasing: bytes[position..<(position + wanted)])
            if read == wanted, memcmp(buffer.baseAddress!, expected.baseAddress!, wanted) == 0 {
                position += wanted
                continue
            }
            for index in 0..<wanted where expected[index] != 0 {
                if index >= read || buffer[index] != expected[index] { return false }
            }
            position += wanted
        }
        return true
    }

    // MARK: - Orphan segments

    /// Moves an orphan segment out of the log: fsyncs it (so that the side file holds what
    /// recovery saw), then renames it to `dropped-<segment>-0-<UTC time>.bin`. Returns the new
    /// path. The caller fsyncs the directory.
    static func moveAside(_ segment: Segment, directory: String) throws(Errno) -> String {
        try segment.descriptor.sync()
        let names = try FileSystem.listDirectory(directory)
        let stem = Format.droppedFilePrefix + segment.name + "-0"
        let path = directory + "/" + freshName(stem: stem, extension: Format.droppedFileExtension, taken: Set(names))
        try FileSystem.rename(segment.path, to: path)
        return path
    }

    // MARK: - Salvage export

    /// Writes every valid data record past the cut of `scan` (`LogScanner.forEachRecordPastCut`)
    /// to `salvaged-<cut segment>-<cut offset>-<UTC time>.jsonl`, one JSON object per line, or
    /// finds an earlier export for the same cut that lists them all. Returns its path, or nil
    /// when there is no such record. The caller fsyncs the directory.
    static func exportSalvage(_ scan: LogScanner.Result, directory: String) throws(Errno) -> String? {
        guard !scan.salvageable.isEmpty else { return nil }
        let stem = Format.salvageFilePrefix + scan.cut.segment.name + "-\(scan.cut.end)"
        let names = try FileSystem.listDirectory(directory)
        for name in names.sorted()
        where name.hasPrefix(stem + "-") && name.hasSuffix("." + Format.salvageFileExtension) {
            if try listsEveryRecord(of: scan, path: directory + "/" + name) { return directory + "/" + name }
        }
        let path = directory + "/" + freshName(stem: stem, extension: Format.salvageFileExtension, taken: Set(names))
        try writeComplete(path) { (file: Int32) throws(Errno) in
            var buffer: [UInt8] = []
            buffer.reserveCapacity(1 << 20)
            var written = 0
            var failure: Errno?
            func flush() {
                guard failure == nil, !buffer.isEmpty else { return }
                let result = buffer.withUnsafeBytes { raw in
                    Result { () throws(Errno) in try writeAll(file, raw, at: written) }
                }
                if case .failure(let error) = result { failure = error }
                written += buffer.count
                buffer.removeAll(keepingCapacity: true)
            }
            LogScanner.forEachRecordPastCut(scan) { segment, offset, header in
                guard failure == nil else { return }
                appendLine(to: &buffer, segment: segment, offset: offset, header: header)
                buffer.append(UInt8(ascii: "\n"))
                if buffer.count >= 1 << 20 { flush() }
            }
            flush()
            if let failure { throw failure }
        }
        return path
    }

    /// Whether the lines of the file at `path` contain every line the export of `scan` would
    /// have, in the same order.
    static func listsEveryRecord(of scan: LogScanner.Result, path: String) throws(Errno) -> Bool {
        let file = try OwnedDescriptor(path: path, flags: O_RDONLY)
        var reader = LineReader(file: file.raw.rawValue)
        var line: [UInt8] = []
        var covered = true
        LogScanner.forEachRecordPastCut(scan) { segment, offset, header in
            guard covered else { return }
            line.removeAll(keepingCapacity: true)
            appendLine(to: &line, segment: segment, offset: offset, header: header)
            while true {
                guard let next = reader.next() else {
                    covered = false
                    return
                }
                if next.elementsEqual(line) { return }
            }
        }
        return covered && reader.failure == nil
    }

    /// One record as a JSON object (no newline), keys sorted like `logctl dump --json`:
    /// `{"data":"<base64>","durable_lsn":…,"length":…,"lsn":…,"offset":…,"segment":"…"}`.
    static func appendLine(to line: inout [UInt8], segment: Segment, offset: Int, header: RecordHeader) {
        line.append(contentsOf: #"{"data":""#.utf8)
        let payload = UnsafeRawBufferPointer(
            start: segment.bytes.baseAddress! + offset + Format.recordHeaderSize, count: Int(header.length))
        appendBase64(payload, to: &line)
        line.append(contentsOf: #"","durable_lsn":\#(header.durableLSN),"length":\#(header.length),"#.utf8)
        line.append(contentsOf: #""lsn":\#(header.lsn),"offset":\#(offset),"segment":"\#(segment.name)"}"#.utf8)
    }

    private static let base64Alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Standard base64 (RFC 4648, with padding).
    static func appendBase64(_ bytes: UnsafeRawBufferPointer, to output: inout [UInt8]) {
        output.reserveCapacity(output.count + (bytes.count + 2) / 3 * 4)
        var index = 0
        while index + 3 <= bytes.count {
            let value = UInt32(bytes[index]) << 16 | UInt32(bytes[index + 1]) << 8 | UInt32(bytes[index + 2])
            output.append(base64Alphabet[Int(value >> 18 & 63)])
            output.append(base64Alphabet[Int(value >> 12 & 63)])
            output.append(base64Alphabet[Int(value >> 6 & 63)])
            output.append(base64Alphabet[Int(value & 63)])
            index += 3
        }
        let rest = bytes.count - index
        guard rest > 0 else { return }
        let value = UInt32(bytes[index]) << 16 | (rest == 2 ? UInt32(bytes[index + 1]) << 8 : 0)
        output.append(base64Alphabet[Int(value >> 18 & 63)])
        output.append(base64Alphabet[Int(value >> 12 & 63)])
        output.append(rest == 2 ? base64Alphabet[Int(value >> 6 & 63)] : UInt8(ascii: "="))
        output.append(UInt8(ascii: "="))
    }

    // MARK: - Writing

    /// Creates `<path>.partial`, lets `body` write it, fsyncs it and renames it to `path`. On
    /// failure the partial file is removed.
    static func writeComplete(_ path: String, _ body: (Int32) throws(Errno) -> Void) throws(Errno) {
        let partial = path + Format.partialFileSuffix
        do throws(Errno) {
            let file = try OwnedDescriptor(path: partial, flags: O_WRONLY | O_CREAT | O_TRUNC)
            try body(file.raw.rawValue)
            try file.sync()
            try FileSystem.rename(partial, to: path)
        } catch {
            try? FileSystem.unlink(partial)
            throw error
        }
    }

    /// `pwrite(2)` of all of `bytes` at `offset`.
    static func writeAll(_ file: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int) throws(Errno) {
        var done = 0
        while done < bytes.count {
            let count = pwrite(file, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if count < 0 {
                let code = Errno(rawValue: errno)
                if code == .interrupted { continue }
                throw code
            }
            done += count
        }
    }
}

/// Lines of a file read through a buffer (without the newline).
private struct LineReader {
    let file: Int32
    private var buffer: [UInt8] = []
    private var start = 0
    private var position = 0
    private var atEnd = false
    private(set) var failure: Errno?

    init(file: Int32) { self.file = file }

    mutating func next() -> ArraySlice<UInt8>? {
        while true {
            if let newline = buffer[start...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = buffer[start..<newline]
                start = newline + 1
                return line
            }
            if atEnd {
                guard start < buffer.count else { return nil }
                let line = buffer[start...]
                start = buffer.count
                return line
            }
            buffer.removeFirst(start)
            start = 0
            var chunk = [UInt8](repeating: 0, count: 1 << 20)
            let count = chunk.withUnsafeMutableBytes { pread(file, $0.baseAddress, $0.count, off_t(position)) }
            if count < 0 {
                if errno == EINTR { continue }
                failure = Errno(rawValue: errno)
                atEnd = true
            } else if count == 0 {
                atEnd = true
            } else {
                position += count
                buffer.append(contentsOf: chunk[0..<count])
            }
        }
    }
}

extension Log {
    /// Deletes side files from `directory` (all of them, or those of `names`), as the log's
    /// writer: it takes the writer lock for the while (`locked` if another writer holds it),
    /// so no recovery can be writing one meanwhile. Returns the names deleted, after the
    /// directory was fsync'd. Refuses a directory that holds no segment files, and names
    /// that are not side files, before deleting anything.
    @discardableResult
    public static func removeSideFiles(in directory: String, names: [String]? = nil) throws(LogError) -> [String] {
        let present: [String]
        do { present = try FileSystem.listDirectory(directory) } catch {
            throw LogError.system(error, "cannot list the log directory", path: directory)
        }
        guard present.contains(where: { Format.segmentID(fromFileName: $0) != nil }) else {
            throw LogError(.notALog, "no segment files in the directory", path: directory)
        }
        let sideFiles = present.filter(SideFiles.isSideFileName).sorted()
        let chosen = names ?? sideFiles
        if let stranger = chosen.first(where: { !sideFiles.contains($0) }) {
            throw LogError(.invalidArgument, "'\(stranger)' is not a side file of this log", path: directory)
        }
        let lock = try DirectoryLock.acquire(directory: directory)
        defer { lock.release() }
        do throws(Errno) {
            for name in chosen { try FileSystem.unlink(directory + "/" + name) }
            if !chosen.isEmpty { try FileSystem.syncDirectory(directory) }
        } catch {
            throw LogError.system(error, "cannot delete side files", path: directory)
        }
        return chosen
    }
}
