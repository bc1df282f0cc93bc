/// The 32-byte header in front of every record's payload.
struct RecordHeader: Equatable, Sendable {
    var crc: UInt32
    var length: UInt32
    var lsn: LSN
    /// The log's durable LSN when this record was written.
    var durableLSN: LSN
    var type: UInt16
    var flags: UInt16 = 0
    var reserved: UInt32 = 0

    var footprint: Int { Format.recordFootprint(payloadLength: Int(length)) }

    static func load(from base: UnsafeRawPointer) -> RecordHeader {
        RecordHeader(
            crc: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 0, as: UInt32.self)),
            length: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4, as: UInt32.self)),
            lsn: UInt64(littleEndian: base.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            durableLSN: UInt64(littleEndian: base.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
            type: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 24, as: UInt16.self)),
            flags: UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 26, as: UInt16.self)),
            reserved: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 28, as: UInt32.self)))
    }

    /// Stores every field but the CRC.
    func storeFields(to base: UnsafeMutableRawPointer) {
        base.storeBytes(of: length.littleEndian, toByteOffset: 4, as: UInt32.self)
        base.storeBytes(of: lsn.littleEndian, toByteOffset: 8, as: UInt64.self)
        base.storeBytes(of: durableLSN.littleEndian, toByteOffset: 16, as: UInt64.self)
        base.storeBytes(of: type.littleEndian, toByteOffset: 24, as: UInt16.self)
        base.storeBytes(of: flags.littleEndian, toByteOffset: 26, as: UInt16.self)
        base.storeBytes(of: reserved.littleEndian, toByteOffset: 28, as: UInt32.self)
    }

    /// The CRC of a record whose header (fields already stored) and payload start at `base`.
    /// `saltCRC` is `RecordHeader.saltCRC(salt)` of the segment.
    static func checksum(recordAt base: UnsafeRawPointer, payloadLength: Int, saltCRC: UInt32) -> UInt32 {
        // Header bytes 4..<32 and the payload are contiguous, so one call covers both.
        CRC32C.checksum(
            UnsafeRawBufferPointer(start: base + 4, count: Format.recordHeaderSize - 4 + payloadLength),
            continuing: saltCRC)
    }

    /// CRC-32C of the segment salt's 8 little-endian bytes: the start of every record CRC.
    static func saltCRC(_ salt: UInt64) -> UInt32 {
        withUnsafeBytes(of: salt.littleEndian) { CRC32C.checksum($0) }
    }

    static func isAllZero(_ base: UnsafeRawPointer) -> Bool {
        (base.loadUnaligned(fromByteOffset: 0, as: UInt64.self) | base.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            | base.loadUnaligned(fromByteOffset: 16, as: UInt64.self)
            | base.loadUnaligned(fromByteOffset: 24, as: UInt64.self)) == 0
    }
}
