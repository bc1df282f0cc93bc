/// The first 80 bytes of every segment file (the rest of its first page is zero).
struct SegmentHeader: Equatable, Sendable {
    var segmentID: UInt64
    var baseLSN: LSN
    var segmentSize: UInt64
    var logID: LogID
    /// Random per file incarnation; seeds every record CRC in this segment.
    var salt: UInt64
    /// The log's durable LSN when this segment was created (durable with the header).
    var durableLSN: LSN
    var flags: UInt32 = 0

    func encode(into buffer: UnsafeMutableRawBufferPointer) {
        precondition(buffer.count >= Format.segmentHeaderUsedBytes)
        let base = buffer.baseAddress!
        base.storeBytes(of: Format.magic.littleEndian, toByteOffset: 0, as: UInt64.self)
        base.storeBytes(of: Format.version.littleEndian, toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: UInt32(Format.segmentHeaderSize).littleEndian, toByteOffset: 12, as: UInt32.self)
        base.storeBytes(of: segmentID.littleEndian, toByteOffset: 16, as: UInt64.self)
        base.storeBytes(of: baseLSN.littleEndian, toByteOffset: 24, as: UInt64.self)
        base.storeBytes(of: segmentSize.littleEndian, toByteOffset: 32, as: UInt64.self)
        base.storeBytes(of: logID.high.littleEndian, toByteOffset: 40, as: UInt64.self)
        base.storeBytes(of: logID.low.littleEndian, toByteOffset: 48, as: UInt64.self)
        base.storeBytes(of: salt.littleEndian, toByteOffset: 56, as: UInt64.self)
        base.storeBytes(of: durableLSN.littleEndian, toByteOffset: 64, as: UInt64.self)
        base.storeBytes(of: flags.littleEndian, toByteOffset: 72, as: UInt32.self)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(start: base, count: Format.segmentHeaderCRCOffset))
        base.storeBytes(of: crc.littleEndian, toByteOffset: Format.segmentHeaderCRCOffset, as: UInt32.self)
    }

    /// Parses and checks a header. `bytes` is what the file holds (possibly less than a page).
    static func decode(_ bytes: UnsafeRawBufferPointer, path: String) throws(LogError) -> SegmentHeader {
        func load<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
        }
        if bytes.count >= 8, load(0, UInt64.self) != Format.magic {
            throw LogError(.notALog, "not a LogStore segment (bad magic)", path: path, offset: 0)
        }
        guard bytes.count >= Format.segmentHeaderSize else {
            throw LogError(
                .corruption,
                "segment file is \(bytes.count) bytes, shorter than its \(Format.segmentHeaderSize)-byte header",
                path: path, offset: UInt64(bytes.count))
        }
        // Every version keeps the magic, the version at 8 and a CRC of bytes 0..<76 at 76, so
        // the CRC is checked first: a damaged version field is corruption, not a newer format.
        let storedCRC = load(Format.segmentHeaderCRCOffset, UInt32.self)
        let crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[0..<Format.segmentHeaderCRCOffset]))
        guard storedCRC == crc else {
            throw LogError(.corruption, "segment header checksum mismatch", path: path, offset: 0)
        }
        let version = load(8, UInt32.self)
        guard version == Format.version else {
            throw LogError(
                .unsupportedVersion,
                "segment format version \(version) is not supported by this build (version \(Format.version))",
                path: path, offset: 8)
        }
        let header = SegmentHeader(
            segmentID: load(16, UInt64.self), baseLSN: load(24, UInt64.self), segmentSize: load(32, UInt64.self),
            logID: LogID(high: load(40, UInt64.self), low: load(48, UInt64.self)), salt: load(56, UInt64.self),
            durableLSN: load(64, UInt64.self), flags: load(72, UInt32.self))
        guard load(12, UInt32.self) == UInt32(Format.segmentHeaderSize),
            header.segmentSize >= UInt64(Format.minSegmentSize), header.segmentSize <= UInt64(Format.maxSegmentSize),
            header.segmentSize % UInt64(Format.pageSize) == 0, header.baseLSN >= 1, header.durableLSN < header.baseLSN,
            // Far beyond any real log, and keeps LSN and id arithmetic from overflowing.
            header.baseLSN <= Format.maxLSN, header.segmentID >= 1, header.segmentID <= Format.maxSegmentID
        else {
            throw LogError(.corruption, "segment header fields out of range", path: path, offset: 0)
        }
        return header
    }
}

/// 128 random bits naming a log; every segment of the log carries them.
public struct LogID: Hashable, Sendable, CustomStringConvertible {
    /// The first 64 bits.
    public var high: UInt64
    /// The last 64 bits.
    public var low: UInt64

    static func random() -> LogID {
        var generator = SystemRandomNumberGenerator()
        return LogID(high: generator.next(), low: generator.next())
    }

    /// 32 lowercase hex digits, `high` first.
    public var description: String {
        func hex(_ v: UInt64) -> String {
            let s = String(v, radix: 16)
            return String(repeating: "0", count: 16 - s.count) + s
        }
        return hex(high) + hex(low)
    }
}
