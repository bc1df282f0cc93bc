import Foundation
import LogStore
import Testing

/// `recover`: the plan changes nothing and says what --apply then does; side files are kept
/// until an operator removes them.
@Suite struct RecoverTests {
    /// 50 committed records with record 21 damaged: corruption of durable data.
    func damagedLog(_ scratch: Scratch) throws -> (String, [Log.Record]) {
        let directory = scratch.child("log")
        let records = try makeLog(directory, (1...50).map { "record \($0)" })
        try damage(directory, records[20], at: 34)
        return (directory, records)
    }

    func object(_ outcome: Outcome) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as! [String: Any]
    }

    @Test func planInEachModeMatchesWhatApplyDoes() throws {
        for mode in ["point-in-time", "salvage"] {
            let scratch = Scratch()
            let (directory, records) = try damagedLog(scratch)
            let plan = try logctl(["recover", directory, "--mode", mode, "--json"])
            #expect(plan.status == 0, "\(plan.stderr)")
            let planned = try object(plan)
            #expect(planned["applied"] as? Bool == false)
            #expect(planned["refused"] as? Bool == false)
            #expect(planned["outcome"] as? String == "corruption")
            #expect(planned["last_lsn"] as? Int == 20)
            #expect(planned["lost_lsns"] as? [Int] == [21, 50])
            #expect(planned["salvageable_lsns"] as? [[Int]] == [[22, 50]])
            let regions = planned["dropped_regions"] as? [[String: Any]] ?? []
            #expect(regions.count == 1 && regions[0]["offset"] as? Int == records[20].offset)
            #expect(regions[0]["preserved_at"] == nil, "a plan preserves nothing")
            #expect(try Log.sideFiles(in: directory).isEmpty)
            let text = try logctl(["recover", directory, "--mode", mode])
            #expect(text.stdout.hasPrefix("recovery plan (\(mode)) for \(directory): nothing changed"))
            #expect(text.stdout.split(separator: "\n").contains { $0.hasPrefix("  keep ") && $0.hasSuffix(" 20 records (LSN 1...20) in 1 segment") })
            #expect(text.stdout.contains("from offset \(records[20].offset): checksum mismatch"))

            let applied = try logctl(["recover", directory, "--mode", mode, "--apply", "--json"])
            #expect(applied.status == 0, "\(applied.stderr)")
            let done = try object(applied)
            #expect(done["applied"] as? Bool == true)
            #expect(done["last_lsn"] as? Int == planned["last_lsn"] as? Int)
            #expect(done["dropped_bytes"] as? Int == planned["dropped_bytes"] as? Int)
            let preserved = (done["dropped_regions"] as? [[String: Any]])?.first?["preserved_at"] as? String
            #expect(preserved?.hasPrefix(directory + "/dropped-\(records[0].segment)-\(records[20].offset)-") == true)
            #expect((done["salvage_file"] as? String != nil) == (mode == "salvage"))
            #expect(try Log.sideFiles(in: directory).count == (mode == "salvage" ? 2 : 1))
            #expect(try logctl(["verify", directory]).status == 0)
            #expect(try logctl(["recover", directory]).stdout.contains("clean: nothing to recover"))
        }
    }

    @Test func aModeThatWouldRefuseExitsTwoAndChangesNothing() throws {
        let scratch = Scratch()
        let (directory, _) = try damagedLog(scratch)
        let before = try fingerprint(directory)
        for mode in ["strict", "torn-tail"] {
            let plan = try logctl(["recover", directory, "--mode", mode])
            #expect(plan.status == 2)
            #expect(plan.stdout.contains("a \(mode) writer refuses to open this log; nothing is changed"))
            #expect(plan.stdout.contains("--mode point-in-time keeps LSN 1...20; --mode salvage also exports LSN 22...50"))
            let json = try object(try logctl(["recover", directory, "--mode", mode, "--json"]))
            #expect(json["refused"] as? Bool == true)
            #expect(json["dropped_regions"] as? [Any] == nil || (json["dropped_regions"] as? [Any])?.isEmpty == true)
            let applied = try logctl(["recover", directory, "--mode", mode, "--apply"])
            #expect(applied.status == 2)
            #expect(applied.stderr.split(separator: "\n").count == 1 && applied.stderr.contains("logctl recover"))
        }
        var after = try fingerprint(directory)
        var expected = before
        // A refused writer took the lock (and wrote its pid into LOCK), and changed nothing else.
        after["LOCK"] = nil
        expected["LOCK"] = nil
        #expect(after == expected)
    }

    @Test func strictRefusesATornTailThatTornTailModeDrops() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try tornLog(directory, records: 3)
        #expect(try logctl(["recover", directory, "--mode", "strict"]).status == 2)
        let plan = try logctl(["recover", directory])
        #expect(plan.status == 0)
        #expect(plan.stdout.contains("torn tail"))
        #expect(try logctl(["recover", directory, "--apply"]).status == 0)
        #expect(try logctl(["verify", directory]).status == 0)
        #expect(try Log.openReadOnly(directory).writtenLSN == 2)
    }

    @Test func sideFilesAreListedThenRemovedOnlyWithApply() throws {
        let scratch = Scratch()
        let (directory, _) = try damagedLog(scratch)
        #expect(try logctl(["recover", directory, "--mode", "salvage", "--apply"]).status == 0)
        let sideFiles = try Log.sideFiles(in: directory)
        #expect(sideFiles.count == 2)
        let listed = try logctl(["recover", directory, "--remove-side-files"])
        #expect(listed.status == 0)
        #expect(listed.stdout.hasPrefix("would delete (run with --apply) 2 side files in \(directory):"))
        #expect(try Log.sideFiles(in: directory) == sideFiles)
        let removed = try logctl(["recover", directory, "--remove-side-files", "--apply", "--json"])
        #expect(removed.status == 0, "\(removed.stderr)")
        #expect(try object(removed)["side_files"] as? [String] == sideFiles)
        #expect(try Log.sideFiles(in: directory).isEmpty)
        #expect(try logctl(["recover", directory, "--remove-side-files", "--apply"]).stdout.hasPrefix("no side files"))
        #expect(try logctl(["verify", directory]).status == 0, "the log itself is untouched")
    }

    @Test func badInputToRecoverIsExitThree() throws {
        let scratch = Scratch()
        let (directory, _) = try damagedLog(scratch)
        try Data("x".utf8).write(to: URL(fileURLWithPath: scratch.child("dropped-a-0-1.bin")))
        for command in [
            ["recover", directory, "--mode", "sometimes"], ["recover", directory, "--remove-side-files", "--mode", "salvage"],
            ["recover", scratch.child("missing")], ["recover", scratch.child("missing"), "--apply"],
            ["recover", scratch.path, "--remove-side-files", "--apply"], ["recover"],
        ] {
            let result = try logctl(command)
            #expect(result.status == 3, "\(command): \(result.stderr)")
            #expect(result.stderr.hasPrefix("logctl: ") && result.stderr.split(separator: "\n").count == 1)
        }
        #expect(FileManager.default.fileExists(atPath: scratch.child("dropped-a-0-1.bin")), "not a log: nothing deleted")
    }
}
