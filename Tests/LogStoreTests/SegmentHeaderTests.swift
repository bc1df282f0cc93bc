@testable import LogStore
import Testing

@Suite struct SegmentHeaderTests {
    static let sample = SegmentHeader(
        segmentID: 7, baseLSN: 1234, segmentSize: 1 << 20, logID: LogID(high: 0x0102_0304_0506_0708, low: 42),
        salt: 0xDEAD_BEEF_CAFE_F00D, durableLSN: 1200)

    func encoded(_ header: SegmentHeader = sample) -> [UInt8] {
        var page = [UInt8](repeating: 0, count: Format.segmentHeaderSize)
        page.withUnsafeMutableBytes { header.encode(into: $0) }
        return page
    }

    func decode(_ bytes: [UInt8]) throws(LogError) -> SegmentHeader {
        try bytes.withUnsafeBytes { raw in Result { () throws(LogError) in try SegmentHeader.decode(raw, path: "x") } }
            .get()
    }

    @Test func headerRoundTrips() throws {
        #expect(try decode(encoded()) == Self.sample)
    }

    @Test func fieldsSitAtTheirDocumentedOffsets() {
        let bytes = encoded()
        func u64(_ offset: Int) -> UInt64 { bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) } }
        #expect(Array(bytes[0..<8]) == Array("LOGSTSEG".utf8))
        #expect(bytes[8] == 1 && bytes[9] == 0)
        #expect(u64(16) == 7)
        #expect(u64(24) == 1234)
        #expect(u64(32) == 1 << 20)
        #expect(u64(56) == 0xDEAD_BEEF_CAFE_F00D)
        #expect(u64(64) == 1200)
        let crc = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<76])) }
        #expect(bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 76, as: UInt32.self)) } == crc)
        #expect(bytes[80...].allSatisfy { $0 == 0 })
    }

    @Test func badMagicIsNotALog() {
        var bytes = encoded()
        bytes[0] ^= 0xFF
        expectLogError(.notALog) { _ = try decode(bytes) }
    }

    @Test func futureVersionIsUnsupported() {
        var bytes = encoded()
        bytes[8] = 2
        resealHeader(&bytes)
        expectLogError(.unsupportedVersion) { _ = try decode(bytes) }
    }

    @Test func damagedVersionFieldIsCorruptionNotANewerFormat() {
        var bytes = encoded()
        bytes[9] ^= 0x04
        expectLogError(.corruption) { _ = try decode(bytes) }
    }

    @Test func everyHeaderBitFlipIsDetected() {
        let good = encoded()
        for bit in 0..<(Format.segmentHeaderUsedBytes * 8) {
            var bytes = good
            bytes[bit / 8] ^= UInt8(1 << (bit % 8))
            do {
                _ = try decode(bytes)
                Issue.record("flip of bit \(bit) went unnoticed")
            } catch {
                #expect([.corruption, .notALog, .unsupportedVersion].contains(error.code))
            }
        }
    }

    @Test func lsnsAndIdsThatWouldOverflowAreCorruption() {
        for header in [
            SegmentHeader(segmentID: 1, baseLSN: .max, segmentSize: 1 << 20, logID: LogID(high: 1, low: 2), salt: 3,
                          durableLSN: 0),
            SegmentHeader(segmentID: .max, baseLSN: 1, segmentSize: 1 << 20, logID: LogID(high: 1, low: 2), salt: 3,
                          durableLSN: 0),
        ] {
            expectLogError(.corruption) { _ = try decode(encoded(header)) }
        }
    }

    @Test func headerShorterThanAPageIsCorruption() {
        let bytes = Array(encoded()[0..<100])
        let error = expectLogError(.corruption) { _ = try decode(bytes) }
        #expect(error?.offset == 100)
    }
}
