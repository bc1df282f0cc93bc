import Foundation
import Testing

@testable import logctl

/// `logctl bench` with tiny parameters: the --json contract, directory hygiene and argument checks.
@Suite struct BenchTests {
    static let keys: Set<String> = [
        "mode", "workload", "writers", "size", "records", "seconds", "records_per_s", "p50_us", "p99_us", "p999_us",
    ]

    func rows(_ stdout: String) throws -> [[String: Any]] {
        try stdout.split(separator: "\n", omittingEmptySubsequences: false).dropLast().map { line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8))
            return try #require(object as? [String: Any], "not a JSON object: \(line)")
        }
    }

    @Test func jsonHasOneRowPerModeWorkloadAndWriterCountPlusRawBaselines() throws {
        let scratch = Scratch()
        // Someone else's file in --dir must survive, and the rows' directories must not.
        try Data("mine".utf8).write(to: URL(fileURLWithPath: scratch.child("keep")))
        let result = try logctl([
            "bench", "--json", "--mode", "msync,fdatasync", "--workload",
            "durable-serial,durable-concurrent,durable-concurrent-async,bulk",
            "--writers", "1,4", "--records", "200", "--duration", "0.3", "--dir", scratch.path,
        ])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.hasSuffix("\n"))
        let rows = try rows(result.stdout)
        for row in rows { #expect(Set(row.keys) == Self.keys, "\(row)") }

        var expected: Set<String> = []
        let timed: Set<String> = ["durable-concurrent", "durable-concurrent-async"]
        for workload in ["durable-serial", "durable-concurrent", "durable-concurrent-async", "bulk"] {
            expected.insert("raw-fdatasync \(workload) 1")
            for mode in ["msync", "fdatasync"] {
                for writers in timed.contains(workload) ? [1, 4] : [1] {
                    expected.insert("\(mode) \(workload) \(writers)")
                }
            }
        }
        let seen = rows.map {
            "\($0["mode"] as? String ?? "?") \($0["workload"] as? String ?? "?") \($0["writers"] as? Int ?? 0)"
        }
        #expect(seen.count == expected.count, "one line per row: \(seen)")
        #expect(Set(seen) == expected)

        for row in rows {
            let workload = try #require(row["workload"] as? String)
            let records = try #require(row["records"] as? Int)
            let seconds = try #require(row["seconds"] as? Double)
            let rate = try #require(row["records_per_s"] as? Double)
            #expect(row["size"] as? Int == 128)
            #expect(rate > 0)
            #expect(abs(rate - Double(records) / seconds) <= 0.05 + rate * 1e-9, "\(row)")
            if timed.contains(workload) {
                #expect(records >= 1)
                #expect(seconds >= 0.3, "a timed row runs at least --duration")
            } else {
                #expect(records == 200)
            }
            for key in ["p50_us", "p99_us", "p999_us"] {
                if workload == "bulk" {
                    #expect(row[key] is NSNull, "bulk has one commit, no latency distribution: \(row)")
                } else {
                    let value = try #require(row[key] as? Double, "\(key) in \(row)")
                    #expect(value > 0)
                }
            }
            if workload != "bulk" {
                let (p50, p99, p999) = (row["p50_us"] as! Double, row["p99_us"] as! Double, row["p999_us"] as! Double)
                #expect(p50 <= p99 && p99 <= p999)
            }
        }

        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: scratch.path, isDirectory: &isDirectory)
        #expect(exists && isDirectory.boolValue, "--dir itself stays")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path) == ["keep"])
        #expect(!result.stderr.contains("\r") && !result.stderr.contains("[1/"), "no progress when not on a terminal")
    }

    @Test func zeroByteRecordsAreMeasured() throws {
        let scratch = Scratch()
        let result = try logctl([
            "bench", "--json", "--mode", "msync", "--workload", "durable-serial,bulk", "--size", "0", "--records", "50",
            "--dir", scratch.path,
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let rows = try rows(result.stdout)
        #expect(rows.count == 4)
        #expect(rows.allSatisfy { $0["size"] as? Int == 0 && $0["records"] as? Int == 50 })
    }

    @Test(arguments: [(rounds: 3, records: 10), (rounds: 7, records: 5), (rounds: 1, records: 10)])
    func durableSerialRowsTakingTurnsEachWriteEveryRecord(rounds: Int, records: Int) throws {
        let scratch = Scratch()
        let result = try logctl([
            "bench", "--json", "--mode", "msync,fdatasync", "--workload", "durable-serial", "--records", "\(records)",
            "--rounds", "\(rounds)", "--dir", scratch.path,
        ])
        #expect(result.status == 0, "\(result.stderr)")
        let rows = try rows(result.stdout)
        // Rounds of records/rounds records (the remainder spread, empty rounds when rounds >
        // records) still add up to --records for the baseline and each mode, in the usual order.
        #expect(rows.map { $0["mode"] as? String } == ["raw-fdatasync", "msync", "fdatasync"])
        #expect(rows.allSatisfy { $0["records"] as? Int == records }, "\(rows)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty, "every row's directory is removed")
    }

    @Test(arguments: [(members: 4, rounds: 8, records: 10_003), (members: 2, rounds: 3, records: 2), (members: 3, rounds: 6, records: 6)])
    func eachRowTakesEachPlaceInTheOrderEquallyOftenAndTheRawRangesTileTheFile(
        members: Int, rounds: Int, records: Int
    ) {
        let schedule = LogCtl.Bench.roundSchedule(members: members, rounds: rounds, records: records)
        #expect(schedule.count == rounds)
        var places = [[Int]](repeating: [Int](repeating: 0, count: members), count: members)
        var written = [Int](repeating: 0, count: members)
        var rawEnd = 0
        for turns in schedule {
            #expect(Set(turns.map(\.member)) == Set(0..<members), "every row once a round: \(turns)")
            #expect(Set(turns.map(\.records)).count == 1, "the same records per row in a round")
            for (place, turn) in turns.enumerated() {
                places[turn.member][place] += 1
                written[turn.member] += turn.records.count
                if turn.member == 0 {
                    #expect(turn.records.lowerBound == rawEnd, "the raw rows' ranges follow each other")
                    rawEnd = turn.records.upperBound
                }
            }
        }
        #expect(rawEnd == records)
        #expect(written == [Int](repeating: records, count: members))
        if rounds % members == 0 {
            #expect(places.allSatisfy { $0 == [Int](repeating: rounds / members, count: members) }, "\(places)")
        }
        let sizes = schedule.map { $0[0].records.count }
        #expect(sizes.max()! - sizes.min()! <= 1, "\(sizes)")
    }

    @Test(.enabled(if: scriptAvailable)) func theDefaultIsTwoRoundsPerRow() throws {
        let scratch = Scratch()
        let result = try logctlOnTerminal([
            "bench", "--mode", "msync", "--workload", "durable-serial", "--records", "8", "--dir", scratch.path,
        ])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("durable-serial, round 4/4"), "the baseline and msync: 4 rounds. \(result.stdout)")
        #expect(!result.stdout.contains("round 5/"))
    }

    @Test(.enabled(if: scriptAvailable)) func theProgressLineCountsTheRounds() throws {
        let scratch = Scratch()
        let result = try logctlOnTerminal([
            "bench", "--mode", "msync", "--workload", "durable-serial", "--records", "6", "--rounds", "3",
            "--dir", scratch.path,
        ])
        #expect(result.status == 0, "\(result.stderr)")
        for round in 1...3 { #expect(result.stdout.contains("durable-serial, round \(round)/3"), "\(result.stdout)") }
    }

    @Test func theDefaultDirectoryIsRemovedAndTheTableHasARatioToRaw() throws {
        let result = try logctl(["bench", "--mode", "fdatasync", "--workload", "bulk", "--records", "100"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        let directory = try #require(lines.first?.firstRange(of: "/tmp/logctl-bench-").map { range in
            String(lines[0][range.lowerBound...].prefix { $0 != " " })
        }, "the header names the directory: \(result.stdout)")
        #expect(!FileManager.default.fileExists(atPath: directory))
        #expect(lines.contains { $0.hasPrefix("raw-fdatasync") && $0.hasSuffix("1.00") })
        #expect(lines.contains { $0.hasPrefix("fdatasync") && $0.contains("bulk") })
    }

    @Test(arguments: [
        ["--mode", "bogus"], ["--mode", "none"], ["--writers", "0"], ["--writers", "1,,4"], ["--records", "0"],
        ["--duration", "0"], ["--size=-1"], ["--size", "100000000"], ["--workload", "everything"],
        ["--segment-size", "12345"], ["--rounds", "0"], ["--rounds", "1001"],
    ])
    func badArgumentsExitThreeWithOneLine(arguments: [String]) throws {
        let scratch = Scratch()
        let result = try logctl(
            ["bench", "--json", "--mode", "msync", "--workload", "bulk", "--records", "10", "--dir", scratch.path]
                + arguments)
        #expect(result.status == 3, "\(arguments): \(result.stderr)")
        #expect(result.stdout.isEmpty)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1 && result.stderr.hasPrefix("logctl: "), "\(result.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty)
    }
}
