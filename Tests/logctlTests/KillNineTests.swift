import Foundation
import LogStore
import Testing

/// The real thing, through the harness users run: `logctl crashtest`, which feeds a
/// `logctl append` child, SIGKILLs it at random moments and checks the log after every kill,
/// in every durable sync mode, with 1 MiB segments so that the log rolls. (`--states 0`: the
/// power-loss simulator runs in CrashSimulationTests.)
///
/// Environment: LOGSTORE_KILL9_SEED=S replays seed S (it is printed in the summary lines and
/// with every violation); LOGSTORE_CRASH_SCALE=K runs K times as many cycles (default 1).
@Suite struct KillNineTests {
    static let modes = ["msync", "uring", "fdatasync"]
    /// Per mode and per unit of LOGSTORE_CRASH_SCALE; 3 modes x 70 = 210 kills per run.
    static let cyclesPerMode = 70

    static var scale: Int {
        guard let text = ProcessInfo.processInfo.environment["LOGSTORE_CRASH_SCALE"] else { return 1 }
        guard let value = Int(text), value >= 1 else {
            Issue.record("LOGSTORE_CRASH_SCALE='\(text)' is not a positive integer; using 1")
            return 1
        }
        return value
    }

    static var seed: UInt64 {
        if let text = ProcessInfo.processInfo.environment["LOGSTORE_KILL9_SEED"] {
            guard let value = UInt64(text) else {
                Issue.record("LOGSTORE_KILL9_SEED='\(text)' is not an unsigned integer; using a random seed")
                return UInt64.random(in: 1...UInt64(UInt32.max))
            }
            return value
        }
        return UInt64.random(in: 1...UInt64(UInt32.max))
    }

    struct ModeResult: Decodable {
        var mode: String
        var cycles: Int
        var acknowledged: Int
        var verified: Int
        var lost: Int
        var seconds: Double
        var seed: UInt64
    }

    /// One `logctl crashtest` per mode, at once (the cycles mostly wait for the disk and the
    /// children), each on a thread of its own so that the cooperative pool is not blocked.
    @Test func everyAcknowledgedRecordSurvivesKillNineInEveryMode() async throws {
        let seed = Self.seed
        let cycles = Self.cyclesPerMode * Self.scale
        let scratch = Scratch()
        let started = Date()
        let outcomes = await withTaskGroup(of: (String, Result<Outcome, Error>).self) { group in
            for mode in Self.modes {
                try? FileManager.default.createDirectory(atPath: scratch.child(mode), withIntermediateDirectories: true)
                group.addTask {
                    await withCheckedContinuation { continuation in
                        Thread {
                            continuation.resume(returning: (mode, Result {
                                try logctl([
                                    "crashtest", scratch.child(mode), "--mode", mode, "--cycles", "\(cycles)",
                                    "--seed", "\(seed)", "--segment-size", "1MiB", "--states", "0", "--keep", "--json",
                                ])
                            }))
                        }.start()
                    }
                }
            }
            var outcomes: [String: Result<Outcome, Error>] = [:]
            for await (mode, outcome) in group { outcomes[mode] = outcome }
            return outcomes
        }
        var total = 0
        var acknowledged = 0
        var lost = 0
        for mode in Self.modes {
            let outcome = try outcomes[mode]!.get()
            #expect(outcome.status == 0, "seed \(seed), mode \(mode): crashtest exited \(outcome.status): \(outcome.stderr)")
            let line = try #require(outcome.stdout.split(separator: "\n").first, "seed \(seed), mode \(mode): no summary")
            let result = try JSONDecoder().decode(ModeResult.self, from: Data(line.utf8))
            print("kill-9 cycles: \(result.cycles) (mode \(mode)), acknowledged \(result.acknowledged), "
                  + "verified \(result.verified), lost \(result.lost), segments \(segmentCount(scratch.child(mode))), "
                  + "seed \(result.seed)")
            fflush(nil)
            #expect(result.seed == seed)
            #expect(result.lost == 0, "seed \(seed), mode \(mode): \(result.lost) acknowledged records lost")
            #expect(result.cycles == cycles, "seed \(seed), mode \(mode): stopped after \(result.cycles) cycles")
            #expect(result.acknowledged > 0, "seed \(seed), mode \(mode): nothing acknowledged")
            #expect(result.verified == result.acknowledged, "seed \(seed), mode \(mode)")
            #expect(segmentCount(scratch.child(mode)) >= 2, "seed \(seed), mode \(mode): the run rolls segments")
            total += result.cycles
            acknowledged += result.acknowledged
            lost += result.lost
        }
        print(String(
            format: "kill-9 total: %d cycles across %d sync modes, acknowledged %d, lost %d, seed %llu, %.1f s",
            total, Self.modes.count, acknowledged, lost, seed, Date().timeIntervalSince(started)))
        fflush(nil)
        #expect(total >= 200, "seed \(seed): at least 200 kill -9 cycles per run")
    }

    /// Segment files of the log crashtest kept (--keep) inside `directory`.
    func segmentCount(_ directory: String) -> Int {
        let logs = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return logs.reduce(0) { count, log in
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory + "/" + log)) ?? []
            return count + names.filter { $0.hasSuffix(".seg") }.count
        }
    }
}
