extension Log {
    /// A record with its on-disk header, for inspection tools (`logctl dump --hex/--json`).
    public struct RecordDetails: Sendable, Equatable {
        public var lsn: LSN
        /// Segment file name.
        public var segment: String
        /// Byte offset of the record header in that file.
        public var offset: Int
        /// The stored CRC-32C (FORMAT.md: salt, header bytes 4..<32, payload).
        public var crc: UInt32
        /// The log's durable LSN when this record was written (the recovery evidence).
        public var durableLSN: LSN
        /// The record type (1: data; only data records have an LSN of their own).
        public var type: UInt16
        public var flags: UInt16
        /// The header as stored: `Format.recordHeaderSize` bytes.
        public var headerBytes: [UInt8]
        public var payload: [UInt8]

        public init(
            lsn: LSN, segment: String, offset: Int, crc: UInt32, durableLSN: LSN, type: UInt16, flags: UInt16,
            headerBytes: [UInt8], payload: [UInt8]
        ) {
            self.lsn = lsn
            self.segment = segment
            self.offset = offset
            self.crc = crc
            self.durableLSN = durableLSN
            self.type = type
            self.flags = flags
            self.headerBytes = headerBytes
            self.payload = payload
        }
    }

    /// The record at `lsn` with its header, which must be in `firstLSN...writtenLSN`.
    public func recordDetails(_ lsn: LSN) throws(LogError) -> RecordDetails {
        let (segment, offset, cutsSeen) = try locate(lsn)
        return try checkingTruncation(of: lsn, cutsSeen: cutsSeen) { () throws(LogError) -> RecordDetails in
            try withExtendedLifetime(segment) { () throws(LogError) -> RecordDetails in
                let (header, payload) = try segment.dataRecord(at: offset, lsn: lsn)
                return RecordDetails(
                    lsn: lsn, segment: segment.name, offset: offset, crc: header.crc, durableLSN: header.durableLSN,
                    type: header.type, flags: header.flags,
                    headerBytes: Array(UnsafeRawBufferPointer(start: segment.base + offset, count: Format.recordHeaderSize)),
                    payload: Array(payload))
            }
        }
    }
}
