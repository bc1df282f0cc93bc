import Foundation
import LogStore
import Testing

/// `verify`'s file-by-file check: every problem with its segment, offset, LSN and reason, and
/// the progress bar (only on a terminal).
@Suite struct VerifyCheckTests {
    /// A log of three 1 MiB segments.
    func threeSegments(_ scratch: Scratch) throws -> (String, [Log.Record]) {
        let directory = scratch.child("log")
        let lines = (1...600).map { "r\($0) " + String(repeating: "v", count: 4000) }
        let appended = try logctl(["append", directory, "--create", "--segment-size", "1M", "--batch", "50"],
                                  input: lines.joined(separator: "\n") + "\n")
        #expect(appended.status == 0)
        let records = try Log.openReadOnly(directory).records().collect()
        #expect(Set(records.map(\.segment)).count == 3)
        return (directory, records)
    }

    func flip(_ directory: String, _ segment: String, at offset: Int) throws {
        let path = directory + "/" + segment
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[offset] ^= 0x21
        try bytes.write(to: URL(fileURLWithPath: path))
    }

    @Test func everyDamagedRecordInEverySegmentIsListed() throws {
        let scratch = Scratch()
        let (directory, records) = try threeSegments(scratch)
        let damaged = [records[30], records[400]]
        #expect(damaged[0].segment != damaged[1].segment)
        for record in damaged { try flip(directory, record.segment, at: record.offset + 40) }
        let result = try logctl(["verify", directory, "--json"])
        #expect(result.status == 2)
        let report = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
        let problems = report["problems"] as? [[String: Any]] ?? []
        #expect(problems.count == 2, "\(problems)")
        for (problem, record) in zip(problems, damaged) {
            #expect(problem["segment"] as? String == record.segment)
            #expect(problem["offset"] as? Int == record.offset)
            #expect(problem["lsn"] as? Int == Int(record.lsn))
            #expect((problem["reason"] as? String)?.hasPrefix("checksum mismatch") == true)
            #expect((problem["reason"] as? String)?.contains("next valid record has LSN \(record.lsn + 1)") == true)
        }
        #expect(report["bytes_scanned"] as? Int == 3 << 20)
        let text = try logctl(["verify", directory])
        #expect(text.stdout.contains("2 problems found checking every segment file:"))
        #expect(text.stdout.contains("\(damaged[1].segment) offset \(damaged[1].offset) (LSN \(damaged[1].lsn)): checksum mismatch"))
    }

    @Test func aBadSegmentHeaderAndABrokenChainAreListedWithTheRest() throws {
        let scratch = Scratch()
        let (directory, records) = try threeSegments(scratch)
        let segments = Array(Set(records.map(\.segment))).sorted()
        try flip(directory, segments[1], at: 20)  // the segment id: header checksum mismatch
        try flip(directory, segments[2], at: records.last!.offset + 50)
        let result = try logctl(["verify", directory, "--json"])
        #expect(result.status == 2)
        let report = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
        let problems = report["problems"] as? [[String: Any]] ?? []
        #expect(problems.map { $0["segment"] as? String } == [segments[1], segments[2]])
        #expect(problems.first?["reason"] as? String == "segment header checksum mismatch")
        let text = try logctl(["verify", directory])
        #expect(text.status == 2)
        #expect(text.stdout.hasPrefix("CORRUPTION (no writer can open this log): corruption: "))
        #expect(text.stdout.contains("2 problems found"))

        // A segment that does not continue where the previous one ended: a broken chain.
        let chain = Scratch()
        let (chained, chainedRecords) = try threeSegments(chain)
        let names = Array(Set(chainedRecords.map(\.segment))).sorted()
        try FileManager.default.removeItem(atPath: chained + "/" + names[1])
        let gap = try logctl(["verify", chained, "--json"])
        #expect(gap.status == 2)
        let gapReport = try JSONSerialization.jsonObject(with: Data(gap.stdout.utf8)) as! [String: Any]
        let reasons = (gapReport["problems"] as? [[String: Any]] ?? []).compactMap { $0["reason"] as? String }
        #expect(reasons.contains { $0.hasPrefix("segment starts at LSN ") && $0.contains("was expected") }, "\(reasons)")
    }

    @Test(.enabled(if: scriptAvailable))
    func theProgressBarIsDrawnOnATerminalOnly() throws {
        let scratch = Scratch()
        let (directory, _) = try threeSegments(scratch)
        let small = ["LOGCTL_PROGRESS_MIN_BYTES": "1"]
        let terminal = try logctlOnTerminal(["verify", directory], environment: small)
        #expect(terminal.status == 0)
        #expect(terminal.stdout.contains("verify [####################]  3.0 MiB of 3.0 MiB"), "\(terminal.stdout)")
        #expect(terminal.stdout.contains(": 600 records (LSN 1...600) in 3 segments"))
        let piped = try logctl(["verify", directory], environment: small)
        #expect(piped.stderr.isEmpty && !piped.stdout.contains("["), "no progress into a pipe")
        let below = try logctlOnTerminal(["verify", directory])
        #expect(!below.stdout.contains("verify ["), "a 3 MiB log is under the 256 MiB threshold")
    }
}
