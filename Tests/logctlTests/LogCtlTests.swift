import Foundation
import LogStore
import Testing

/// The CLI contract of the core issue, driven through the built binary.
@Suite struct LogCtlTests {
    func makeLog(_ directory: String, lines: [String], arguments: [String] = []) throws {
        let result = try logctl(["append", directory, "--create", "--segment-size", "1M"] + arguments,
                                input: lines.joined(separator: "\n") + "\n")
        #expect(result.status == 0, "\(result.stderr)")
    }

    @Test func appendPrintsEachDurableLSNAndDumpReturnsTheBytes() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        let lines = ["hello", "", "tab\there", "ünïcödé", String(repeating: "x", count: 5000)]
        let appended = try logctl(["append", directory, "--create", "--batch", "2"], input: lines.joined(separator: "\n"))
        #expect(appended.status == 0, "\(appended.stderr)")
        #expect(appended.stdout == "1\n2\n3\n4\n5\n", "a last line without newline is a record too")
        let dump = try logctl(["dump", directory, "--json"])
        #expect(dump.status == 0)
        let objects = try dump.stdout.split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
        #expect(objects.count == lines.count)
        for (index, object) in objects.enumerated() {
            #expect(object["lsn"] as? Int == index + 1)
            #expect(object["segment"] as? String == "00000000000000000001.seg")
            #expect((object["offset"] as? Int ?? 0) >= 4096)
            #expect(object["length"] as? Int == lines[index].utf8.count)
            let data = Data(base64Encoded: object["data"] as? String ?? "")
            #expect(data == Data(lines[index].utf8))
        }
        let limited = try logctl(["dump", directory, "--from", "2", "--limit", "2"])
        #expect(limited.stdout.split(separator: "\n").map { $0.split(separator: "\t")[0] } == ["2", "3"])
        #expect(limited.stdout.contains("tab\there") || limited.stdout.contains("\t\t"))
    }

    @Test(arguments: ["msync", "uring", "fdatasync"])
    func appendInEachDurableSyncModePrintsTheLSNsItMadeDurable(mode: String) throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        let appended = try logctl(["append", directory, "--create", "--sync", mode, "--batch", "3"],
                                  input: (1...10).map { "record \($0)" }.joined(separator: "\n") + "\n")
        #expect(appended.status == 0, "\(appended.stderr)")
        #expect(appended.stdout == (1...10).map { "\($0)\n" }.joined())
        let verify = try logctl(["verify", directory])
        #expect(verify.status == 0, "\(verify.stderr)")
    }

    @Test func appendWithSyncNonePrintsNothing() throws {
        let scratch = Scratch()
        let result = try logctl(["append", scratch.child("log"), "--create", "--sync", "none"], input: "a\nb\n")
        #expect(result.status == 0)
        #expect(result.stdout.isEmpty, "nothing is durable, so nothing is printed")
        #expect(try logctl(["dump", scratch.child("log")]).stdout.split(separator: "\n").count == 2)
    }

    @Test func verifyExitCodesSeparateCleanTornAndCorrupt() throws {
        let scratch = Scratch()
        let clean = scratch.child("clean")
        try makeLog(clean, lines: (1...50).map { "record \($0)" })
        let ok = try logctl(["verify", clean])
        #expect(ok.status == 0)
        #expect(ok.stdout.hasPrefix("clean: 50 records"))

        // Torn: records written without any sync, so nothing vouches for them; garble the last.
        let torn = scratch.child("torn")
        try makeLog(torn, lines: (1...50).map { "record \($0)" }, arguments: ["--sync", "none"])
        let tornRecords = try Log.openReadOnly(torn).records().collect()
        try garble(segment: torn + "/00000000000000000001.seg", at: tornRecords[49].offset + 33)
        let tornResult = try logctl(["verify", torn])
        #expect(tornResult.status == 1, "\(tornResult.stdout)")
        #expect(tornResult.stdout.contains("torn tail"))
        let tornJSON = try logctl(["verify", torn, "--json"])
        #expect(tornJSON.status == 1)
        #expect(tornJSON.stdout.contains(#""status":"torn-tail""#))

        // Corrupt: a committed record followed by later committed records.
        let corrupt = scratch.child("corrupt")
        try makeLog(corrupt, lines: (1...50).map { "record \($0)" })
        let records = try Log.openReadOnly(corrupt).records().collect()
        try garble(segment: corrupt + "/00000000000000000001.seg", at: records[20].offset + 34)
        let before = try snapshot(corrupt)
        let bad = try logctl(["verify", corrupt])
        #expect(bad.status == 2)
        #expect(bad.stdout.contains("00000000000000000001.seg offset \(records[20].offset)"))
        #expect(bad.stdout.contains("LSN 21"))
        let badJSON = try logctl(["verify", corrupt, "--json"])
        let report = try JSONSerialization.jsonObject(with: Data(badJSON.stdout.utf8)) as! [String: Any]
        #expect(report["status"] as? String == "corruption")
        let damage = report["damage"] as? [String: Any]
        #expect(damage?["offset"] as? Int == records[20].offset)
        #expect(damage?["lsn"] as? Int == 21)
        // A writer refuses the corrupt log with exit 2 and one line on stderr; nothing changed.
        let append = try logctl(["append", corrupt], input: "more\n")
        #expect(append.status == 2)
        #expect(append.stderr.split(separator: "\n").count == 1)
        #expect(append.stderr.contains("corruption"))
        var after = try snapshot(corrupt)
        after["LOCK"] = before["LOCK"]
        #expect(after == before)
    }

    @Test func verifyOfSomethingThatIsNotALogExitsThree() throws {
        let scratch = Scratch()
        let randomFiles = scratch.child("random")
        try FileManager.default.createDirectory(atPath: randomFiles, withIntermediateDirectories: true)
        try Data((0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }).write(to: URL(fileURLWithPath: randomFiles + "/blob"))
        try Data("x".utf8).write(to: URL(fileURLWithPath: scratch.child("plain")))
        for target in [scratch.child("missing"), randomFiles, scratch.child("plain")] {
            for command in ["verify", "dump", "stat"] {
                let result = try logctl([command, target])
                #expect(result.status == 3, "\(command) \(target): \(result.stderr)")
                #expect(!result.signalled)
                #expect(result.stderr.hasPrefix("logctl: "))
                #expect(result.stderr.split(separator: "\n").count == 1)
            }
        }
        #expect(try logctl(["verify"]).status == 3, "missing argument")
        #expect(try logctl(["dump", scratch.path, "--limit", "many"]).status == 3)
        #expect(try logctl(["append", scratch.child("x"), "--batch", "0"]).status == 3)
        #expect(try logctl(["append", scratch.child("x"), "--sync", "sometimes"]).status == 3)
        #expect(try logctl(["append", scratch.child("x")], input: "a\n").status == 3, "no --create")
    }

    @Test func garbledSegmentsNeverCrashAnySubcommand() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, lines: (1...200).map { "line \($0) " + String(repeating: "z", count: $0) })
        let segment = directory + "/00000000000000000001.seg"
        let original = try Data(contentsOf: URL(fileURLWithPath: segment))
        var random = SplitMix64(seed: 5)
        for trial in 0..<25 {
            var bytes = original
            switch trial % 5 {
            case 0: bytes = bytes.prefix(Int(random.next() % 60_000))
            case 1:
                let start = Int(random.next() % 40_000)
                for offset in start..<(start + 512) { bytes[offset] = UInt8(truncatingIfNeeded: random.next()) }
            case 2: bytes[Int(random.next() % 80)] ^= 0xFF
            case 3: bytes = Data((0..<Int(random.next() % 9000)).map { _ in UInt8(truncatingIfNeeded: random.next()) })
            default:
                for _ in 0..<50 { bytes[Int(random.next() % 40_000)] ^= UInt8(truncatingIfNeeded: random.next() | 1) }
            }
            try bytes.write(to: URL(fileURLWithPath: segment))
            for command in [
                ["verify", directory], ["dump", directory, "--json"], ["stat", directory], ["tail", directory, "--hex"],
                ["recover", directory, "--mode", "salvage", "--json"],
            ] {
                let result = try logctl(command)
                #expect(!result.signalled, "trial \(trial) \(command[0]) died of a signal")
                #expect([0, 1, 2, 3].contains(result.status), "trial \(trial) \(command[0]): \(result.status)")
                if result.status >= 2 && command[0] != "verify" {
                    #expect(result.stderr.split(separator: "\n").count == 1)
                }
            }
        }
    }

    @Test func secondWriterIsRefusedWithExitFour() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, lines: ["a"])
        let holder = try Log.open(directory)
        let result = try logctl(["append", directory], input: "b\n")
        #expect(result.status == 4)
        #expect(result.stderr.contains("locked"))
        #expect(result.stderr.contains("\(getpid())"))
        // Readers are not blocked by the writer, and see what it made durable.
        try holder.appendAndCommit(Array("from holder".utf8))
        let dump = try logctl(["dump", directory])
        #expect(dump.status == 0)
        #expect(dump.stdout.contains("from holder"))
        let stat = try logctl(["stat", directory, "--json"])
        #expect(stat.stdout.contains(#""writer_pid":\#(getpid())"#))
        try holder.close()
    }

    @Test func statReportsSegmentsRangeAndDurability() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, lines: (1...400).map { "r\($0) " + String(repeating: "y", count: 5000) })
        let stat = try logctl(["stat", directory, "--json"])
        #expect(stat.status == 0)
        let object = try JSONSerialization.jsonObject(with: Data(stat.stdout.utf8)) as! [String: Any]
        #expect(object["first_lsn"] as? Int == 1)
        #expect(object["last_lsn"] as? Int == 400)
        #expect(object["durable_lsn"] as? Int == 400)
        #expect(object["segment_size"] as? Int == 1 << 20)
        let segments = object["segments"] as? [[String: Any]] ?? []
        #expect(segments.count >= 2)
        #expect(segments.map { $0["records"] as? Int ?? 0 }.reduce(0, +) == 400)
        let human = try logctl(["stat", directory])
        #expect(human.stdout.contains("records    400  LSN 1...400"))
        #expect(human.stdout.contains("00000000000000000002.seg"))
    }

    @Test func readOnlySubcommandsNeverModifyTheLog() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, lines: (1...30).map { "r\($0)" }, arguments: ["--sync", "none"])
        let records = try Log.openReadOnly(directory).records().collect()
        try garble(segment: directory + "/00000000000000000001.seg", at: records[29].offset + 2)
        let before = try snapshot(directory)
        for command in [["verify", directory], ["verify", directory, "--json"], ["dump", directory], ["stat", directory]] {
            _ = try logctl(command)
            #expect(try snapshot(directory) == before, "\(command[0]) modified the log")
        }
    }

    /// Root bypasses permission checks, so this drops to `nobody` with setpriv(1).
    @Test(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")))
    func permissionDeniedIsAClearErrorNotACrash() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, lines: ["secret"])
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: scratch.path)
        func asNobody(_ arguments: [String]) throws -> Outcome {
            try logctl(["--reuid=65534", "--regid=65534", "--clear-groups", logctlPath] + arguments, executable: "/usr/bin/setpriv")
        }
        // The log directory is writable by root only: a writer cannot take the lock.
        let append = try asNobody(["append", directory])
        #expect(append.status == 3, "\(append.stderr)")
        #expect(append.stderr.contains("permissionDenied"))
        #expect(append.stderr.contains(directory))
        // A directory nobody may enter.
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: directory)
        for command in ["verify", "dump", "stat"] {
            let result = try asNobody([command, directory])
            #expect(result.status == 3, "\(command): \(result.stderr)")
            #expect(result.stderr.contains("Permission denied"))
        }
    }

    @Test func demoRunsTheMainJobAndVerifies() throws {
        let scratch = Scratch()
        let result = try logctl(["demo", "--dir", scratch.child("demo"), "--rounds", "2", "--seed", "7"])
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("verified: all"))
        #expect(result.stdout.contains("appends continue"))
        #expect(result.stdout.contains("segment "), "ends with stat")
    }

    /// `--recovery` on `append`: each mode does what FORMAT.md §8.5 says on a log whose durable
    /// record 21 of 50 is damaged, and verify/stat show the gaps, what salvage can export and
    /// the side files recovery left; the recovered log verifies clean in every subcommand.
    @Test func appendRecoveryModesAndWhatVerifyAndStatShowOfThem() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, lines: (1...50).map { "record \($0)" })
        let records = try Log.openReadOnly(directory).records().collect()
        try garble(segment: directory + "/00000000000000000001.seg", at: records[20].offset + 34)

        let planJSON = try logctl(["verify", directory, "--json"])
        #expect(planJSON.status == 2)
        let plan = try JSONSerialization.jsonObject(with: Data(planJSON.stdout.utf8)) as! [String: Any]
        #expect(plan["status"] as? String == "corruption")
        #expect(plan["lost_lsns"] as? [Int] == [21, 50])
        #expect(plan["gaps"] as? [[Int]] == [[21, 21]])
        #expect(plan["salvageable_lsns"] as? [[Int]] == [[22, 50]])
        #expect(plan["side_files"] as? [String] == [])
        let regions = plan["dropped_regions"] as? [[String: Any]] ?? []
        #expect(regions.count == 1)
        #expect(regions.first?["offset"] as? Int == records[20].offset)
        #expect(plan["dropped_bytes"] as? Int == regions.first?["length"] as? Int)
        let planText = try logctl(["verify", directory])
        #expect(planText.stdout.contains("salvage recovery would export them): LSN 22...50"))
        #expect(planText.stdout.contains("no valid record anywhere for LSN 21"))

        for mode in ["strict", "torn-tail"] {
            let refused = try logctl(["append", directory, "--recovery", mode], input: "more\n")
            #expect(refused.status == 2, "\(mode): \(refused.stderr)")
        }
        #expect(try logctl(["append", directory, "--recovery", "sometimes"], input: "x\n").status == 3)
        #expect(try Log.sideFiles(in: directory).isEmpty, "a refused open preserves nothing: it drops nothing")

        let salvaged = try logctl(["append", directory, "--recovery", "salvage"], input: "more\n")
        #expect(salvaged.status == 0, "\(salvaged.stderr)")
        #expect(salvaged.stdout == "21\n", "appends continue at the first lost LSN")
        #expect(salvaged.stderr.split(separator: "\n").count == 1)
        #expect(salvaged.stderr.contains("recovery (salvage): corruption"))
        #expect(salvaged.stderr.contains("LSNs 22...50 exported to \(directory)/salvaged-"))
        #expect(salvaged.stderr.contains("no valid record for LSNs 21"))
        let sideFiles = try Log.sideFiles(in: directory)
        #expect(sideFiles.count == 2, "\(sideFiles)")
        #expect(sideFiles.contains { $0.hasPrefix("dropped-00000000000000000001.seg-\(records[20].offset)-") })
        let export = try #require(sideFiles.first { $0.hasPrefix("salvaged-") })
        let lines = try String(contentsOfFile: directory + "/" + export, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 29)
        for (line, record) in zip(lines, records[21...]) {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            #expect(object["lsn"] as? Int == Int(record.lsn))
            #expect(Data(base64Encoded: object["data"] as? String ?? "") == Data(record.payload))
        }

        let verify = try logctl(["verify", directory, "--json"])
        #expect(verify.status == 0, "\(verify.stdout)")
        let after = try JSONSerialization.jsonObject(with: Data(verify.stdout.utf8)) as! [String: Any]
        #expect(after["status"] as? String == "clean")
        #expect(after["last_lsn"] as? Int == 21)
        #expect(after["gaps"] as? [[Int]] == [])
        #expect(after["side_files"] as? [String] == sideFiles)
        #expect(try logctl(["verify", directory]).stdout.contains("2 side files from earlier recoveries"))
        let stat = try logctl(["stat", directory, "--json"])
        #expect(stat.status == 0)
        let statObject = try JSONSerialization.jsonObject(with: Data(stat.stdout.utf8)) as! [String: Any]
        #expect(statObject["recovery"] as? String == "clean")
        #expect(statObject["side_files"] as? [String] == sideFiles)
        #expect(statObject["gaps"] as? [[Int]] == [])
        #expect(try logctl(["stat", directory]).stdout.contains("side files 2: "))
        let dump = try logctl(["dump", directory])
        #expect(dump.status == 0)
        #expect(dump.stdout.split(separator: "\n").count == 21)
        for mode in ["strict", "torn-tail", "point-in-time", "salvage"] {
            let more = try logctl(["append", directory, "--recovery", mode], input: "\(mode)\n")
            #expect(more.status == 0, "\(mode): \(more.stderr)")
            #expect(more.stderr.isEmpty, "a clean log: nothing to say")
        }
        #expect(try Log.sideFiles(in: directory) == sideFiles)
    }

    /// Point-in-time through the CLI, and stat's view of a damaged log.
    @Test func pointInTimeRecoveryThroughAppendPreservesTheDroppedTail() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, lines: (1...30).map { "r\($0)" })
        let records = try Log.openReadOnly(directory).records().collect()
        let segment = directory + "/00000000000000000001.seg"
        try garble(segment: segment, at: records[9].offset + 33)
        let damaged = try Data(contentsOf: URL(fileURLWithPath: segment))
        let stat = try logctl(["stat", directory, "--json"])
        let object = try JSONSerialization.jsonObject(with: Data(stat.stdout.utf8)) as! [String: Any]
        #expect(object["recovery"] as? String == "corruption")
        #expect(object["gaps"] as? [[Int]] == [[10, 10]])
        #expect(object["salvageable_lsns"] as? [[Int]] == [[11, 30]])
        let result = try logctl(["append", directory, "--recovery", "point-in-time"], input: "")
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("recovery (point-in-time): corruption"))
        #expect(result.stderr.contains("durable LSNs 10...30 dropped"))
        let sideFiles = try Log.sideFiles(in: directory)
        #expect(sideFiles.count == 1 && sideFiles[0].hasPrefix("dropped-00000000000000000001.seg-\(records[9].offset)-"))
        let copy = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + sideFiles[0]))
        #expect(copy == damaged[records[9].offset..<(records[9].offset + copy.count)])
        #expect(damaged[(records[9].offset + copy.count)...].allSatisfy { $0 == 0 })
        #expect(try logctl(["verify", directory]).status == 0)
    }

    func garble(segment: String, at offset: Int) throws {
        var bytes = try Data(contentsOf: URL(fileURLWithPath: segment))
        bytes[offset] ^= 0x5A
        try bytes.write(to: URL(fileURLWithPath: segment))
    }
}
