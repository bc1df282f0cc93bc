@testable import LogStore
import Testing

@Suite struct FormatTests {
    @Test func segmentFileNamesRoundTrip() {
        for id: UInt64 in [1, 2, 42, 99_999, UInt64.max] {
            let name = Format.segmentFileName(id: id)
            #expect(name.count == 24)
            #expect(Format.segmentID(fromFileName: name) == id)
        }
        #expect(Format.segmentFileName(id: 7) == "00000000000000000007.seg")
    }

    @Test func foreignFileNamesAreNotSegments() {
        for name in ["LOCK", "1.seg", "0000000000000000000a.seg", "00000000000000000001.seg.tmp",
                     "00000000000000000001.log", "notes.txt", "000000000000000000001.seg"] {
            #expect(Format.segmentID(fromFileName: name) == nil, "\(name)")
        }
    }

    @Test func recordsAreEightByteAligned() {
        #expect(Format.recordFootprint(payloadLength: 0) == 32)
        #expect(Format.recordFootprint(payloadLength: 1) == 40)
        #expect(Format.recordFootprint(payloadLength: 8) == 40)
        #expect(Format.recordFootprint(payloadLength: 128) == 160)
        #expect(Format.maxPayload(segmentSize: 1 << 20) == (1 << 20) - 4096 - 32)
    }

    @Test func magicSpellsLOGSTSEG() {
        withUnsafeBytes(of: Format.magic.littleEndian) { #expect(Array($0) == Array("LOGSTSEG".utf8)) }
    }
}
