@testable import LogStore
import Testing

@Suite struct CRC32CTests {
    /// RFC 3720 (iSCSI) appendix B.4 test vectors, plus the common "123456789" check value.
    static let vectors: [([UInt8], UInt32)] = [
        (Array("123456789".utf8), 0xE306_9283),
        ([UInt8](repeating: 0, count: 32), 0x8A91_36AA),
        ([UInt8](repeating: 0xFF, count: 32), 0x62A8_AB43),
        ((0..<32).map { UInt8($0) }, 0x46DD_794E),
        ((0..<32).map { UInt8(31 - $0) }, 0x113F_DB5C),
        (
            [
                0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
                0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            ], 0xD996_3A56
        ),
    ]

    @Test func rfc3720VectorsMatchOnEveryPath() {
        for (bytes, expected) in Self.vectors {
            bytes.withUnsafeBytes { raw in
                #expect(CRC32C.checksum(raw) == expected)
                #expect(CRC32C.portableChecksum(raw) == expected)
            }
        }
    }

    @Test func hardwareIsUsedOnX86WithSSE42() {
        #if arch(x86_64)
        #expect(CRC32C.isHardwareAccelerated)
        #endif
    }

    @Test func hardwareAndPortableAgreeOnEveryLengthAndAlignment() {
        var generator = SplitMix64(seed: 42)
        let buffer = (0..<(3 * 8192 * 2 + 100)).map { _ in UInt8.random(in: 0...255, using: &generator) }
        buffer.withUnsafeBytes { raw in
            // Every length up to past the 3-way interleaves of 48 and 256 bytes (a record's
            // 144-byte blocks and 768-byte ones), around the 8192*3 one, at every alignment.
            // 25495 takes every block size in one call: 24576 + 768 + 144 + 7.
            let lengths = Array(0..<1000) + [24575, 24576, 24577, 25495, 49152 + 99]
            for length in lengths {
                for alignment in 0..<8 where alignment + length <= raw.count {
                    let slice = UnsafeRawBufferPointer(rebasing: raw[alignment..<(alignment + length)])
                    #expect(CRC32C.checksum(slice) == CRC32C.portableChecksum(slice), "length \(length) at +\(alignment)")
                }
            }
        }
    }

    @Test func checksumsChainAcrossCalls() {
        let bytes = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        bytes.withUnsafeBytes { raw in
            let whole = CRC32C.checksum(raw)
            for split in [0, 1, 7, 500, 999, 1000] {
                let first = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[..<split]))
                #expect(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[split...]), continuing: first) == whole)
            }
        }
    }
}
