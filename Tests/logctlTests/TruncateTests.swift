import Foundation
import LogStore
import Testing

/// `logctl truncate`, driven through the built binary.
@Suite struct TruncateTests {
    /// A log of `count` records of about 5 KB in 1 MiB segments (several segments for 600).
    func makeLog(_ directory: String, count: Int) throws {
        let lines = (1...count).map { "record \($0) " + String(repeating: "x", count: 5_000) }
        let result = try logctl(["append", directory, "--create", "--segment-size", "1M", "--batch", "50"],
                                input: lines.joined(separator: "\n") + "\n")
        #expect(result.status == 0, "\(result.stderr)")
    }

    func json(_ text: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
    }

    @Test func afterRemovesTheSuffixAndAppendsContinueAtTheNextLSN() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, count: 300)
        let result = try logctl(["truncate", directory, "--after", "41", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try json(result.stdout)
        #expect(report["removed_lsns"] as? [Int] == [42, 300])
        #expect(report["last_lsn"] as? Int == 41)
        #expect(report["dry_run"] as? Bool == false)
        #expect((report["removed_segments"] as? [String])?.isEmpty == false)
        let appended = try logctl(["append", directory], input: "new 42\n")
        #expect(appended.stdout == "42\n")
        let dump = try logctl(["dump", directory, "--from", "41"])
        #expect(dump.stdout.split(separator: "\n").count == 2)
        #expect(dump.stdout.contains("new 42"))
        #expect(try logctl(["verify", directory]).status == 0)
    }

    @Test func beforeDeletesWholeSegmentsAndSaysSo() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, count: 600)
        let stat = try json(try logctl(["stat", directory, "--json"]).stdout)
        let segments = stat["segments"] as! [[String: Any]]
        #expect(segments.count >= 3)
        let thirdBase = segments[2]["base_lsn"] as! Int
        let result = try logctl(["truncate", directory, "--before", "\(thirdBase + 1)"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.hasPrefix("removed LSNs 1...\(thirdBase - 1)"), "\(result.stdout)")
        #expect(result.stdout.contains("deleted 00000000000000000001.seg, 00000000000000000002.seg"))
        let after = try json(try logctl(["stat", directory, "--json"]).stdout)
        #expect(after["first_lsn"] as? Int == thirdBase, "the first LSN is the first kept segment's base")
        #expect(after["last_lsn"] as? Int == 600)
        #expect(try logctl(["verify", directory]).status == 0)
    }

    @Test func dryRunPrintsThePlanAndChangesNoByte() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, count: 300)
        let before = try snapshot(directory)
        let result = try logctl(["truncate", directory, "--after", "10", "--dry-run"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.hasPrefix("would remove LSNs 11...300 (290 records)"), "\(result.stdout)")
        let front = try logctl(["truncate", directory, "--before", "1000", "--dry-run", "--json"])
        #expect(try json(front.stdout)["dry_run"] as? Bool == true)
        #expect(try snapshot(directory) == before)
        // A dry run takes no lock, so it works beside a writer.
        let holder = try Log.open(directory)
        #expect(try logctl(["truncate", directory, "--after", "10", "--dry-run"]).status == 0)
        try holder.close()
    }

    @Test func refusesWhileAnotherWriterHoldsTheLockWithExitFour() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, count: 20)
        let holder = try Log.open(directory)
        let result = try logctl(["truncate", directory, "--after", "5"])
        #expect(result.status == 4)
        #expect(result.stderr.contains("locked"))
        #expect(holder.writtenLSN == 20)
        try holder.close()
        #expect(try Log.openReadOnly(directory).writtenLSN == 20, "a refused truncation changes nothing")
    }

    @Test func badInputGetsOneLineAndExitThree() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, count: 20)
        let cases: [[String]] = [
            ["truncate", directory],  // neither option
            ["truncate", directory, "--before", "3", "--after", "4"],  // both
            ["truncate", directory, "--after", "x"],  // not a number
            ["truncate", directory, "--after", "21"],  // past the last LSN
            ["truncate", scratch.child("missing"), "--after", "1"],  // no log
        ]
        for arguments in cases {
            let result = try logctl(arguments)
            #expect(result.status == 3, "\(arguments): \(result.status) \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
            #expect(!result.signalled)
        }
        #expect(try Log.openReadOnly(directory).writtenLSN == 20)
        let help = try logctl(["help", "truncate"])
        #expect(help.stdout.contains("logctl truncate /tmp/log --after 41"))
    }

    @Test func nothingToRemoveIsSuccess() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, count: 20)
        let result = try logctl(["truncate", directory, "--after", "20"])
        #expect(result.status == 0)
        #expect(result.stdout.hasPrefix("nothing to remove"))
    }
}
