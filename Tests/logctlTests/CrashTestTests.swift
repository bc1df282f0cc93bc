import Foundation
import Testing

/// `logctl crashtest`: a short run's --json contract and cleanup, --keep, and the argument checks.
@Suite struct CrashTestTests {
    static let keys: Set<String> = ["mode", "cycles", "acknowledged", "verified", "lost", "seconds", "seed"]

    @Test func shortRunLosesNothingAndPrintsOneJSONObjectPerMode() throws {
        let scratch = Scratch()
        // Someone else's file in DIR must survive; crashtest's own directories must not.
        try Data("mine".utf8).write(to: URL(fileURLWithPath: scratch.child("keep")))
        let result = try logctl([
            "crashtest", scratch.path, "--cycles", "3", "--mode", "msync,fdatasync", "--json", "--seed", "42",
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
        }
        #expect(modes == ["msync", "fdatasync"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path) == ["keep"])
    }

    @Test func keepLeavesAValidLogAndTheTableNamesTheSeed() throws {
        let scratch = Scratch()
        let result = try logctl(["crashtest", scratch.path, "--cycles", "2", "--mode", "msync", "--seed", "7", "--keep"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("seed 7"))
        let row = try #require(result.stdout.split(separator: "\n").first { $0.hasPrefix("msync ") })
        #expect(row.split(separator: " ").map(String.init)[1] == "2", "cycles column: \(row)")
        #expect(row.split(separator: " ").map(String.init)[4] == "0", "lost column: \(row)")
        let kept = try FileManager.default.contentsOfDirectory(atPath: scratch.path)
        #expect(kept.count == 1 && kept[0].hasPrefix("logctl-crashtest-msync-"), "\(kept)")
        let verify = try logctl(["verify", scratch.child(kept.first ?? "missing")])
        #expect(verify.status == 0, "\(verify.stdout) \(verify.stderr)")
    }

    @Test(arguments: [
        ["--cycles", "0"], ["--cycles", "many"], ["--mode", "bogus"], ["--mode", "none"], ["--mode", "msync,,uring"],
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
