import Foundation
@testable import LogStore
import Testing

/// The pieces of a recovery report and of the side files behind it: LSN range sets (gaps and
/// salvageable ranges), side-file names, the export's encoding, and the reuse check that keeps
/// a rerun of recovery from writing a second copy.
@Suite struct RecoveryReportTests {
    @Test func modesHaveTheirDocumentedNames() {
        #expect(RecoveryMode.allCases.map(\.rawValue) == ["strict", "torn-tail", "point-in-time", "salvage"])
        #expect(RecoveryMode(rawValue: "salvage") == .salvage)
    }

    @Test func lsnRangesMergeRunsAndComplementWithinBounds() {
        var set = LSNRanges()
        for lsn: LSN in [5, 6, 7, 7, 20, 21, 3, 8, 30] { set.insert(lsn) }
        #expect(set.normalized == [3...3, 5...8, 20...21, 30...30])
        #expect(LSNRanges.complement(of: set.normalized, within: 1...35) == [1...2, 4...4, 9...19, 22...29, 31...35])
        #expect(LSNRanges.complement(of: set.normalized, within: 5...8) == [])
        #expect(LSNRanges.complement(of: set.normalized, within: 6...21) == [9...19])
        #expect(LSNRanges.complement(of: [], within: 10...10) == [10...10])
        #expect(LSNRanges.complement(of: [1...100], within: 10...20) == [])
        var edge = LSNRanges()
        edge.insert(LSN.max)
        edge.insert(LSN.max - 1)
        #expect(edge.normalized == [(LSN.max - 1)...LSN.max])
        // Random sets against a brute-force model.
        var generator = SplitMix64(seed: 11)
        for _ in 0..<200 {
            var ranges = LSNRanges()
            var model = Set<LSN>()
            for _ in 0..<Int(generator.next() % 40) {
                let lsn = 1 + generator.next() % 60
                ranges.insert(lsn)
                model.insert(lsn)
            }
            let normalized = ranges.normalized
            #expect(Set(normalized.flatMap { Array($0) }) == model)
            #expect(zip(normalized, normalized.dropFirst()).allSatisfy { $0.upperBound + 1 < $1.lowerBound })
            let low = 1 + generator.next() % 60
            let bounds = low...(low + generator.next() % 30)
            let gaps = LSNRanges.complement(of: normalized, within: bounds)
            #expect(Set(gaps.flatMap { Array($0) }) == Set(bounds).subtracting(model))
        }
    }

    @Test func sideFileNamesAreNeverSegmentNames() {
        let names = [
            "dropped-00000000000000000001.seg-4096-20250612T101500Z.bin",
            "dropped-00000000000000000002.seg-0-20250612T101500Z-2.bin",
            "salvaged-00000000000000000001.seg-8192-20250612T101500Z.jsonl",
        ]
        for name in names {
            #expect(Log.isSideFileName(name))
            #expect(Format.segmentID(fromFileName: name) == nil)
            #expect(!name.hasSuffix(".seg.tmp"))
            #expect(SideFiles.isPartialSideFileName(name + ".partial"))
            #expect(!Log.isSideFileName(name + ".partial"))
        }
        for name in ["00000000000000000001.seg", "LOCK", "dropped-x.seg", "salvaged-x.bin", "x.partial", "notes.txt"] {
            #expect(!Log.isSideFileName(name), "\(name)")
            #expect(!SideFiles.isPartialSideFileName(name), "\(name)")
        }
        let stamp = SideFiles.timestamp()
        #expect(stamp.count == 16 && stamp.hasSuffix("Z") && stamp.dropFirst(8).first == "T", "\(stamp)")
        let taken: Set = ["a-\(stamp).bin", "a-\(stamp)-2.bin.partial"]
        let fresh = SideFiles.freshName(stem: "a", extension: "bin", taken: taken)
        // Taken names (and names with a partial file) get a counter; a new second needs none.
        #expect(fresh == "a-\(stamp)-3.bin" || (fresh.hasPrefix("a-") && fresh.count == "a-\(stamp).bin".count), "\(fresh)")
        #expect(!taken.contains(fresh) && !taken.contains(fresh + ".partial"))
    }

    @Test func base64MatchesFoundation() {
        var generator = SplitMix64(seed: 5)
        for length in Array(0..<20) + [255, 256, 257, 4096] {
            let bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            var encoded: [UInt8] = Array("x".utf8)
            bytes.withUnsafeBytes { SideFiles.appendBase64($0, to: &encoded) }
            #expect(String(decoding: encoded.dropFirst(), as: UTF8.self) == Data(bytes).base64EncodedString(), "\(length)")
        }
    }

    @Test func aCopyIsReusedOnlyWhenItHoldsEveryNonzeroByte() throws {
        let directory = TemporaryDirectory()
        let path = directory.child("copy")
        let original: [UInt8] = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 % 251 + 1) }
        try Data(original).write(to: URL(fileURLWithPath: path))
        func holds(_ bytes: [UInt8]) throws -> Bool {
            try bytes.withUnsafeBytes { raw in try SideFiles.holdsEveryNonzeroByte(of: raw, path: path) }
        }
        #expect(try holds(original))
        var partlyZeroed = original
        for index in 4096..<8192 { partlyZeroed[index] = 0 }
        #expect(try holds(partlyZeroed), "a rerun after part of the region was zeroed")
        #expect(try holds(Array(original.prefix(5000))), "a shorter region")
        #expect(try holds(original + [0, 0, 0]), "zeros past the copy's end hold nothing")
        #expect(!(try holds(original + [9])), "a nonzero byte the copy lacks")
        var changed = original
        changed[7000] ^= 1
        #expect(!(try holds(changed)), "another incarnation of the same region")
    }
}
