#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import SystemPackage

/// The durable record of a truncation being carried out (`TRUNCATE`, FORMAT.md §11).
///
/// A truncation changes several files (unlinks segments, zeroes the tail of one), and a crash
/// may keep any subset of those changes. So it first makes this intent durable, then carries
/// it out, then removes it; a writer's open finds a leftover intent and carries it out again
/// (every step is idempotent) before recovery scans the log. A crash therefore leaves the log
/// as it was before the truncation (no durable intent yet) or as it is after it.
struct TruncationIntent: Equatable, Sendable {
    enum Kind: Equatable, Sendable {
        /// `removeBefore`: every segment with an id below `segmentID` goes; `lsn` is the base
        /// LSN of segment `segmentID`, the log's new first LSN.
        case front
        /// `removeAfter`: segment `segmentID` is zeroed from `offset` on (where record `lsn + 1`
        /// was) and every segment with a higher id goes; `lsn` is the last LSN kept.
        case suffix
    }

    var kind: Kind
    var logID: LogID
    var segmentID: UInt64
    var lsn: LSN
    var offset: Int
    /// Suffix: the bytes of segment `segmentID` from `imageOffset` on as they must be after the
    /// truncation: the records before `offset` as they were, a padding record from `offset` to
    /// the next commit-alignment boundary when the log aligns commits, zeros to the end of the
    /// page. Writing the page that holds the cut rewrites sectors that may hold acknowledged
    /// records; a crash in that write may garble them (FORMAT.md §6), and completing the
    /// intent writes them again from here (a double write). At most two pages.
    var image: [UInt8] = []

    var imageOffset: Int { alignDown(offset, to: Format.pageSize) }

    func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Format.truncationIntentHeaderSize)
        bytes.withUnsafeMutableBytes { raw in
            let base = raw.baseAddress!
            base.storeBytes(of: Format.truncationIntentMagic.littleEndian, toByteOffset: 0, as: UInt64.self)
            base.storeBytes(of: Format.truncationIntentVersion.littleEndian, toByteOffset: 8, as: UInt32.self)
            let kindCode = kind == .front ? Format.truncationKindFront : Format.truncationKindSuffix
            base.storeBytes(of: kindCode.littleEndian, toByteOffset: 12, as: UInt32.self)
            base.storeBytes(of: logID.high.littleEndian, toByteOffset: 16, as: UInt64.self)
            base.storeBytes(of: logID.low.littleEndian, toByteOffset: 24, as: UInt64.self)
            base.storeBytes(of: segmentID.littleEndian, toByteOffset: 32, as: UInt64.self)
            base.storeBytes(of: lsn.littleEndian, toByteOffset: 40, as: UInt64.self)
            base.storeBytes(of: UInt64(offset).littleEndian, toByteOffset: 48, as: UInt64.self)
            base.storeBytes(of: UInt32(image.count).littleEndian, toByteOffset: 56, as: UInt32.self)
        }
        bytes += image
        let crc = Self.checksum(bytes)
        bytes.withUnsafeMutableBytes {
            $0.storeBytes(of: crc.littleEndian, toByteOffset: Format.truncationIntentCRCOffset, as: UInt32.self)
        }
        return bytes
    }

    /// Parses an intent file's bytes. The file is written in full and fsync'd before it gets
    /// its name, so anything else is damage from outside the crash model: corruption.
    static func decode(_ bytes: [UInt8], path: String) throws(LogError) -> TruncationIntent {
        func damaged(_ why: String) -> LogError {
            LogError(.corruption, "truncation intent is damaged (\(why)); it was written in full before it got its name, "
                     + "so this is not a crash: inspect the log before removing it", path: path)
        }
        guard bytes.count >= Format.truncationIntentHeaderSize else { throw damaged("\(bytes.count) bytes, fewer than 64") }
        func load<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        }
        guard load(0, UInt64.self) == Format.truncationIntentMagic else { throw damaged("bad magic") }
        let imageLength = Int(load(56, UInt32.self))
        guard bytes.count == Format.truncationIntentHeaderSize + imageLength else {
            throw damaged("\(bytes.count) bytes, not \(Format.truncationIntentHeaderSize + imageLength)")
        }
        guard load(Format.truncationIntentCRCOffset, UInt32.self) == checksum(bytes) else {
            throw damaged("checksum mismatch")
        }
        let version = load(8, UInt32.self)
        guard version == Format.truncationIntentVersion else {
            throw LogError(.unsupportedVersion, "truncation intent version \(version) is not supported", path: path)
        }
        let kind: Kind
        switch load(12, UInt32.self) {
        case Format.truncationKindFront: kind = .front
        case Format.truncationKindSuffix: kind = .suffix
        case let other: throw damaged("unknown kind \(other)")
        }
        let offset = load(48, UInt64.self)
        // Bounded before it is converted and added to: a u64 past Int.max would trap.
        guard offset <= UInt64(Format.maxSegmentSize) else { throw damaged("fields out of range") }
        let imageEnd = alignDown(Int(offset), to: Format.pageSize) + imageLength
        guard imageEnd <= Format.maxSegmentSize, imageLength <= Format.maxTruncationImage,
            kind == .suffix ? offset >= UInt64(Format.segmentHeaderSize) && imageEnd >= Int(offset)
                : offset == 0 && imageLength == 0
        else { throw damaged("fields out of range") }
        return TruncationIntent(
            kind: kind, logID: LogID(high: load(16, UInt64.self), low: load(24, UInt64.self)),
            segmentID: load(32, UInt64.self), lsn: load(40, UInt64.self), offset: Int(offset),
            image: Array(bytes[Format.truncationIntentHeaderSize...]))
    }

    /// CRC-32C of bytes `0..<60` and of the image (bytes 64 on) of an encoded intent.
    private static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { raw in
            CRC32C.checksum(
                UnsafeRawBufferPointer(rebasing: raw[Format.truncationIntentHeaderSize...]),
                continuing: CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[0..<Format.truncationIntentCRCOffset])))
        }
    }

    // MARK: - Files

    static func path(in directory: String) -> String { directory + "/" + Format.truncationIntentFileName }

    /// Makes the intent durable: `TRUNCATE.partial` written and fsync'd, renamed to `TRUNCATE`,
    /// directory fsync'd. Only then may the truncation change anything.
    func write(directory: String) throws(Errno) {
        let bytes = encoded()
        try SideFiles.writeComplete(Self.path(in: directory)) { (file: Int32) throws(Errno) in
            try bytes.withUnsafeBytes { raw in Result { () throws(Errno) in try SideFiles.writeAll(file, raw, at: 0) } }
                .get()
        }
        FaultInjection.crashPoint("truncation: intent renamed, directory not synced", directory: directory)
        try FileSystem.syncDirectory(directory)
        FaultInjection.crashPoint("truncation: intent durable", directory: directory)
    }

    /// Removes a carried-out intent durably (unlink, directory fsync): once this returns, no
    /// crash can bring it back to cut records appended later.
    static func remove(directory: String) throws(Errno) {
        do { try FileSystem.unlink(path(in: directory)) } catch where error == .noSuchFileOrDirectory {}
        FaultInjection.crashPoint("truncation: intent unlinked, directory not synced", directory: directory)
        try FileSystem.syncDirectory(directory)
    }

    /// The intent left in `directory`, if any. A writer first deletes a `TRUNCATE.partial`
    /// (never renamed, so nothing was changed on its strength).
    static func read(directory: String, removingPartial: Bool) throws(LogError) -> TruncationIntent? {
        let path = path(in: directory)
        if removingPartial { try? FileSystem.unlink(path + Format.partialFileSuffix) }
        var bytes = [UInt8](repeating: 0, count: Format.truncationIntentHeaderSize + Format.maxTruncationImage + 1)
        let count: Int
        do throws(Errno) {
            let file = try OwnedDescriptor(path: path, flags: O_RDONLY)
            count = try bytes.withUnsafeMutableBytes { raw in
                Result { () throws(Errno) -> Int in try file.read(into: raw, at: 0) }
            }.get()
        } catch {
            if error == .noSuchFileOrDirectory { return nil }
            throw LogError.system(error, "cannot read the truncation intent", path: path)
        }
        return try decode(Array(bytes[0..<count]), path: path)
    }

    // MARK: - Carrying it out

    /// Carries out the intent on the segment files of `directory` (`names`: id and file name,
    /// ascending), then removes it. Idempotent: run again after a crash at any point, it ends
    /// in the same state. Used by `removeBefore`/`removeAfter` after writing the intent, and
    /// by a writer's open for a leftover one.
    func carryOut(directory: String, names: [(UInt64, String)]) throws(LogError) {
        guard let target = names.first(where: { $0.0 == segmentID }) else {
            throw LogError(
                .corruption, "the truncation intent names segment \(segmentID), which is missing",
                path: Self.path(in: directory))
        }
        try validate(against: try Segment.open(directory: directory, name: target.1, writable: false), directory: directory)
        do throws(Errno) {
            switch kind {
            case .front:
                // Oldest first: the names are durable only with the directory fsync below, and
                // the intent stays until then, so the order only matters to a process crash.
                for (id, name) in names where id < segmentID {
                    try Self.unlinkIfPresent(directory + "/" + name)
                    FaultInjection.crashPoint("truncation: unlinked \(name)", directory: directory)
                }
            case .suffix:
                try zeroTail(of: directory + "/" + target.1, directory: directory)
                for (id, name) in names.reversed() where id > segmentID {
                    try Self.unlinkIfPresent(directory + "/" + name)
                    FaultInjection.crashPoint("truncation: unlinked \(name)", directory: directory)
                }
            }
            try FileSystem.syncDirectory(directory)
            FaultInjection.crashPoint("truncation: carried out, intent still there", directory: directory)
            try Self.remove(directory: directory)
        } catch {
            throw LogError.system(
                error, "cannot carry out the truncation (the intent stays; the next writer's open completes it)",
                path: directory)
        }
    }

    /// Checks that the intent belongs to this log and matches `segment` (the one it names):
    /// nothing is deleted on the strength of a file copied in from elsewhere.
    func validate(against segment: Segment, directory: String) throws(LogError) {
        guard segment.header.logID == logID else {
            throw LogError(.notALog, "the truncation intent belongs to another log (\(logID), not "
                           + "\(segment.header.logID))", path: Self.path(in: directory))
        }
        guard kind == .suffix || segment.header.baseLSN == lsn else {
            throw LogError(.corruption, "the truncation intent says segment \(segmentID) starts at LSN \(lsn), its "
                           + "header says \(segment.header.baseLSN)", path: Self.path(in: directory))
        }
    }

    /// Writes the image of the page(s) holding the cut, then zeroes every nonzero byte of the
    /// segment file after it, and `fdatasync`s it. Zeroes rather than shrinks: a reader may
    /// have the file mapped, and the segment stays full size (FORMAT.md §3.1).
    private func zeroTail(of path: String, directory: String) throws(Errno) {
        let file = try OwnedDescriptor(path: path, flags: O_RDWR)
        let size = try file.size()
        if !image.isEmpty {
            try file.write(image, at: imageOffset)
            FaultInjection.crashPoint("truncation: page of the cut written, not synced", directory: directory)
        }
        let offset = max(offset, imageOffset + image.count)
        let chunk = 64 * Format.pageSize
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: Format.pageSize)
        defer { buffer.deallocate() }
        var wrote = false
        for range in file.dataRanges(from: offset, to: size) {
            var position = range.lowerBound
            while position < range.upperBound {
                let count = try file.read(
                    into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<min(chunk, range.upperBound - position)]),
                    at: position)
                guard count > 0 else { break }
                // Only pages holding something are written: the rest of a preallocated segment
                // stays unwritten.
                var start = 0
                while start < count {
                    let end = min(alignDown(position + start, to: Format.pageSize) + Format.pageSize - position, count)
                    if !UnsafeRawBufferPointer(rebasing: buffer[start..<end]).allSatisfy({ $0 == 0 }) {
                        try file.writeZeros(at: position + start, length: end - start)
                        wrote = true
                    }
                    start = end
                }
                position += count
            }
        }
        if wrote { FaultInjection.crashPoint("truncation: tail zeroed, not synced", directory: directory) }
        try file.dataSync()
    }

    private static func unlinkIfPresent(_ path: String) throws(Errno) {
        do { try FileSystem.unlink(path) } catch where error == .noSuchFileOrDirectory {}
    }
}
