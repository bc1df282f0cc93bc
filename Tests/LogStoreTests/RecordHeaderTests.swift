@testable import LogStore
import Testing

@Suite struct RecordHeaderTests {
    @Test func headerRoundTripsAndChecksumCoversSaltFieldsAndPayload() {
        let payload = Array("hello".utf8)
        var record = [UInt8](repeating: 0, count: Format.recordFootprint(payloadLength: payload.count))
        let header = RecordHeader(crc: 0, length: 5, lsn: 9, durableLSN: 7, type: Format.recordTypeData)
        let saltCRC = RecordHeader.saltCRC(0x1234)
        let crc: UInt32 = record.withUnsafeMutableBytes { raw in
            header.storeFields(to: raw.baseAddress!)
            raw.baseAddress!.advanced(by: 32).copyMemory(from: payload, byteCount: 5)
            return RecordHeader.checksum(recordAt: raw.baseAddress!, payloadLength: 5, saltCRC: saltCRC)
        }
        record.withUnsafeMutableBytes { $0.storeBytes(of: crc.littleEndian, as: UInt32.self) }
        let loaded = record.withUnsafeBytes { RecordHeader.load(from: $0.baseAddress!) }
        #expect(loaded == RecordHeader(crc: crc, length: 5, lsn: 9, durableLSN: 7, type: 1))

        // The definition in FORMAT.md, computed independently: salt, header bytes 4..<32, payload.
        var covered: [UInt8] = withUnsafeBytes(of: UInt64(0x1234).littleEndian) { Array($0) }
        covered += record[4..<32] + payload
        #expect(CRC32C.checksum(covered) == crc)

        // A different salt (another segment, or an earlier incarnation of this file) never validates.
        let otherSalt = RecordHeader.saltCRC(0x1235)
        record.withUnsafeBytes {
            #expect(RecordHeader.checksum(recordAt: $0.baseAddress!, payloadLength: 5, saltCRC: otherSalt) != crc)
        }
    }

    @Test func allZeroHeaderMeansNeverWritten() {
        var bytes = [UInt8](repeating: 0, count: 32)
        bytes.withUnsafeBytes { #expect(RecordHeader.isAllZero($0.baseAddress!)) }
        for index in 0..<32 {
            bytes[index] = 1
            bytes.withUnsafeBytes { #expect(!RecordHeader.isAllZero($0.baseAddress!)) }
            bytes[index] = 0
        }
    }
}
