import Foundation
import Testing

/// `logctl crashtest`: a short run's --json contract and cleanup, --keep, the power-loss
/// simulator's verdicts under each disk model, and the argument checks.
@Suite struct CrashTestTests {
    static let keys: Set<String> = [
        "mode", "cycles", "acknowledged", "verified", "lost", "seconds", "seed", "simulated_states",
        "simulated_crash_points", "simulated_violations",
    ]

    @Test func shortRunLosesNothingAndPrintsOneJSONObjectPerMode() throws {
        let scratch = Scratch()
        // Someone else's file in DIR must survive; crashtest's own directories must not.
        try Data("mine".utf8).write(to: URL(fileURLWithPath: scratch.child("keep")))
        let result = try logctl([
            "crashtest", scratch.path, "--cycles", "3", "--states", "150", "--mode", "msync,fdatasync", "--json",
            "--seed", "42",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.isEmpty, "no progress when stderr is not a terminal: \(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == 2, "\(result.stdout)")
        var modes: [String] = []
        for line in lines {
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not an object: \(line)")
            #expect(Set(object.keys) == Self.keys, "\(object)")
            modes.append(object["mode"] as? String ?? "?")
            #expect(object["cycles"] as? Int == 3)
            #expect(object["lost"] as? Int == 0, "\(object)")
            #expect(object["seed"] as? Int == 42)
            let acknowledged = try #require(object["acknowledged"] as? Int)
            #expect(acknowledged > 0)
            #expect(object["verified"] as? Int == acknowledged)
            #expect((object["seconds"] as? Double ?? -1) > 0)
            #expect(object["simulated_states"] as? Int == 150, "\(object)")
            #expect((object["simulated_crash_points"] as? Int ?? 0) > 0, "\(object)")
            #expect(object["simulated_violations"] as? Int == 0, "\(object)")
        }
        #expect(modes == ["msync", "fdatasync"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path) == ["keep"])
    }

    @Test func keepLeavesValidLogsAndTheTableNamesTheSeed() throws {
        let scratch = Scratch()
        let result = try logctl([
            "crashtest", scratch.path, "--cycles", "2", "--states", "60", "--mode", "msync", "--seed", "7", "--keep",
        ])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("seed 7"))
        let row = try #require(result.stdout.split(separator: "\n").first { $0.hasPrefix("msync ") })
        let cells = row.split(separator: " ").map(String.init)
        #expect(cells[1] == "2", "cycles column: \(row)")
        #expect(cells[4] == "0", "lost column: \(row)")
        #expect(cells[5] == "60", "states column: \(row)")
        #expect(cells[6] == "0", "violations column: \(row)")
        let kept = try FileManager.default.contentsOfDirectory(atPath: scratch.path).sorted()
        #expect(kept.count == 2, "\(kept)")
        #expect(kept.first?.hasPrefix("logctl-crashsim-msync-") == true, "\(kept)")
        #expect(kept.last?.hasPrefix("logctl-crashtest-msync-") == true, "\(kept)")
        // The kill -9 log, and the simulator's workload log (its crash states are gone).
        for log in [scratch.child(kept.last ?? "missing"), scratch.child(kept.first ?? "missing") + "/log"] {
            let verify = try logctl(["verify", log])
            #expect(verify.status == 0, "\(log): \(verify.stdout) \(verify.stderr)")
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.child(kept.first ?? "missing")) == ["log"])
    }

    /// FORMAT.md §6: with the default commit layout, a disk that can garble the sectors a write
    /// changes loses acknowledged records. The simulator must say so (exit 2, with the seed and
    /// a replay command that finds the same violations), or its verdicts mean nothing.
    @Test func unalignedCommitsUnderGarbageInChangedSectorsExitTwoWithAReplayableSeed() throws {
        let scratch = Scratch()
        let seed = UInt64.random(in: 1...UInt64(UInt32.max))
        let arguments = [
            "crashtest", scratch.path, "--mode", "msync", "--cycles", "0", "--states", "300", "--garbage",
            "changed-sectors", "--commit-alignment", "none", "--seed", "\(seed)",
        ]
        let result = try logctl(arguments + ["--json"])
        #expect(result.status == 2, "seed \(seed): \(result.stdout) \(result.stderr)")
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
        let violations = try #require(object["simulated_violations"] as? Int)
        #expect(violations > 0, "seed \(seed)")
        #expect(result.stderr.contains("VIOLATION in mode msync, power-loss simulator"), "\(result.stderr)")
        #expect(result.stderr.contains("acknowledged LSN"), "\(result.stderr)")
        // "(logctl crashtest DIR ...)": the arguments that replay the run.
        let replay = try #require(
            result.stderr.firstRange(of: "(logctl ").map { result.stderr[$0.upperBound...].prefix { $0 != ")" } },
            "no replay command: \(result.stderr)")
        #expect(replay == "crashtest \(scratch.path) --mode msync --cycles 0 --states 300 --garbage changed-sectors --seed \(seed)")
        // One violating crash state is kept, as it was before recovery; nothing else.
        let kept = try FileManager.default.contentsOfDirectory(atPath: scratch.path)
        #expect(kept.count == 1, "\(kept)")
        let inside = try FileManager.default.contentsOfDirectory(atPath: scratch.child(kept.first ?? "missing"))
        #expect(inside.filter { $0.hasPrefix("violating-state-") }.count == 1, "\(inside)")
        #expect(inside.filter { $0.hasPrefix("state-") || $0.hasPrefix("again-") }.isEmpty, "\(inside)")

        let again = try logctl(replay.split(separator: " ").map(String.init) + ["--json"])
        #expect(again.status == 2, "replay of seed \(seed) (\(replay)): \(again.stderr)")
        let replayed = try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any]
        #expect(replayed?["simulated_violations"] as? Int == violations, "replay of seed \(seed): \(again.stdout)")
    }

    /// The other side: aligned commits survive the disk models they are meant for.
    @Test(arguments: [("sector", "changed-sectors"), ("page", "any-sector")])
    func alignedCommitsSurviveTheirDiskModel(alignment: String, garbage: String) throws {
        let scratch = Scratch()
        let seed = UInt64.random(in: 1...UInt64(UInt32.max))
        let result = try logctl([
            "crashtest", scratch.path, "--mode", "msync", "--cycles", "0", "--states", "300", "--garbage", garbage,
            "--commit-alignment", alignment, "--seed", "\(seed)",
        ])
        #expect(result.status == 0, "seed \(seed): \(result.stdout) \(result.stderr)")
        #expect(result.stdout.contains("300 simulated crash states, 0 invariant violations"), "\(result.stdout)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty)
    }

    @Test(arguments: [
        ["--cycles", "-1"], ["--cycles", "many"], ["--cycles", "0", "--states", "0"], ["--states", "-5"],
        ["--garbage", "some"], ["--commit-alignment", "word"], ["--mode", "bogus"], ["--mode", "none"], ["--mode", "msync,,uring"],
        ["--segment-size", "lots"], ["--segment-size", "4096"], ["--seed", "-1"], ["--no-such-option"],
    ])
    func badArgumentsExitThree(arguments: [String]) throws {
        let scratch = Scratch()
        let result = try logctl(["crashtest", scratch.path] + arguments)
        #expect(result.status == 3, "\(arguments): \(result.stderr)")
        #expect(result.stderr.hasPrefix("logctl: "))
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty, "nothing created")
    }

    @Test func missingOrNonDirectoryDIRExitsThree() throws {
        let scratch = Scratch()
        try Data("x".utf8).write(to: URL(fileURLWithPath: scratch.child("plain")))
        for target in [scratch.child("missing"), scratch.child("plain")] {
            let result = try logctl(["crashtest", target, "--cycles", "1"])
            #expect(result.status == 3, "\(target): \(result.stderr)")
            #expect(result.stderr.hasPrefix("logctl: "))
            #expect(result.stdout.isEmpty)
        }
        #expect(try logctl(["crashtest"]).status == 3, "DIR is required")
        #expect(!FileManager.default.fileExists(atPath: scratch.child("missing")), "DIR is never created")
    }
}
