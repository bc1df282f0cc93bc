import ArgumentParser
import Foundation
import LogStore

extension LogCtl {
    struct Demo: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The main job: write a log, kill -9 the writer mid-stream, recover, verify, show stat.",
            discussion: """
                Runs `logctl append` as a child process, streams records into it, and SIGKILLs it at a random
                moment, several times. Each restart recovers the log. At the end the log is recovered once
                more, every record the writer acknowledged is checked byte for byte, and `stat` is shown.
                Exits 2 if any acknowledged record is missing or different.

                Example:
                  logctl demo --dir /tmp/demo-log --rounds 5
                """)

        @Option(help: "Log directory (emptied of a previous demo log first).")
        var dir = "logstore-demo"

        @Option(help: "How many times to kill the writer.")
        var rounds = 3

        @Option(help: "Segment size (small, so that the demo rolls segments).")
        var segmentSize = "1MiB"

        @Option(help: "Sync mode of the writer: msync or fdatasync.")
        var sync: Log.SyncMode = .msync

        @Option(help: "Random seed (printed, so a run can be repeated).")
        var seed: UInt64?

        func validate() throws {
            guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
            guard sync != .none else { throw ValidationError("--sync none acknowledges nothing; use msync or fdatasync") }
            guard parseByteCount(segmentSize) != nil else { throw ValidationError("--segment-size is not a byte count") }
        }

        func run() throws {
            let seed = seed ?? UInt64.random(in: 1...UInt64(UInt32.max))
            var random = SplitMix64(seed: seed)
            try Demo.prepare(dir)
            print("LogStore demo: \(dir), \(segmentSize) segments, \(sync.rawValue) commits, seed \(seed)\n")

            var rounds: [(firstLSN: LSN?, sent: [[UInt8]], acknowledged: [LSN])] = []
            for round in 1...self.rounds {
                let child = try ChildWriter(arguments: [
                    dir, "--create", "--segment-size", segmentSize, "--sync", sync.rawValue,
                ])
                var sent: [[UInt8]] = []
                let started = Date()
                let killAfter = 0.2 + Double(random.next() % 400) / 1000
                while Date().timeIntervalSince(started) < killAfter || child.acknowledgedLSNs.count < 20 {
                    let line = Demo.record(round: round, index: sent.count, random: &random)
                    guard child.send(line) else { break }
                    sent.append(line)
                    if Date().timeIntervalSince(started) > 10 { break }
                }
                child.kill()
                let acknowledged = child.acknowledgedLSNs
                rounds.append((acknowledged.first, sent, acknowledged))
                let range = acknowledged.isEmpty ? "none" : "LSN \(acknowledged.first!)...\(acknowledged.last!)"
                print("round \(round): kill -9 of writer \(child.pid) after \(Int(killAfter * 1000)) ms; "
                      + "\(acknowledged.count) records acknowledged (\(range)), \(sent.count) sent")
                let plan = try Log.openReadOnly(dir).recoveryReport
                print("         recovery will find: " + Demo.describe(plan))
            }

            let log = try Log.open(dir, options: Log.Options(sync: sync))
            let report = log.recoveryReport
            print("\nrecovery on reopen: " + Demo.describe(report))
            let problems = Demo.check(log: log, rounds: rounds)
            let acknowledgedCount = rounds.reduce(0) { $0 + $1.acknowledged.count }
            if problems.isEmpty {
                print("verified: all \(acknowledgedCount) acknowledged records present and byte-identical; "
                      + "LSNs \(log.firstLSN)...\(log.writtenLSN) contiguous; "
                      + "\(Int(log.writtenLSN) - acknowledgedCount) unacknowledged records survived the kills "
                      + "(allowed: each is exactly what was sent)")
            }
            let next = try log.appendAndCommit(Array("appended after recovery".utf8))
            print("appends continue: LSN \(next) durable")
            try log.close()
            print("")
            try Stat.parse([dir]).run()
            if !problems.isEmpty {
                for problem in problems.prefix(20) { print("VIOLATION: \(problem)") }
                throw LogError(.corruption, "\(problems.count) acknowledged records missing or wrong (seed \(seed))")
            }
        }

        /// Every acknowledged LSN holds exactly the line that was sent for it, and the records
        /// between two rounds are exactly the earlier round's unacknowledged lines, in order.
        static func check(log: Log, rounds: [(firstLSN: LSN?, sent: [[UInt8]], acknowledged: [LSN])]) -> [String] {
            var problems: [String] = []
            for (index, round) in rounds.enumerated() {
                guard let first = round.firstLSN else { continue }
                for (offset, lsn) in round.acknowledged.enumerated() where lsn != first + LSN(offset) {
                    problems.append("round \(index + 1): acknowledged LSNs not consecutive at \(lsn)")
                }
                let nextFirst = rounds[(index + 1)...].compactMap(\.firstLSN).first ?? (log.writtenLSN + 1)
                for lsn in first..<nextFirst {
                    let line = Int(lsn - first)
                    guard line < round.sent.count else {
                        problems.append("LSN \(lsn) exists but round \(index + 1) never sent a record for it")
                        break
                    }
                    guard let stored = try? log.read(lsn) else {
                        problems.append("LSN \(lsn) missing")
                        continue
                    }
                    if stored != round.sent[line] { problems.append("LSN \(lsn) differs from what was sent") }
                }
                if let last = round.acknowledged.last, last >= nextFirst {
                    problems.append("acknowledged LSN \(last) was overwritten by the next round")
                }
            }
            return problems
        }

        static func describe(_ report: RecoveryReport) -> String {
            var text = "\(report.outcome.rawValue), \(report.recordsKept) records"
            if report.recordsKept > 0 { text += " (LSN \(report.firstLSN)...\(report.lastLSN))" }
            text += ", drops \(humanBytes(Int(report.droppedBytes)))"
            if let damage = report.damage { text += " at \(damage)" }
            return text
        }

        static func record(round: Int, index: Int, random: inout SplitMix64) -> [UInt8] {
            let length = Int(random.next() % 6000)
            let filler = (0..<length).map { _ in UInt8(ascii: "a") + UInt8(random.next() % 26) }
            return Array("round \(round) record \(index) ".utf8) + filler
        }

        /// Empties a previous demo log; refuses to touch a directory holding anything else.
        static func prepare(_ directory: String) throws {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            let foreign = names.filter {
                !$0.hasSuffix(".seg") && !$0.hasSuffix(".seg.tmp") && $0 != "LOCK" && $0 != Log.watermarkFileName && !Log.isSideFileName($0)
                    && !($0.hasSuffix(".partial") && Log.isSideFileName(String($0.dropLast(".partial".count))))
            }
            guard foreign.isEmpty else {
                throw LogError(.invalidArgument, "holds files that are not a LogStore log; choose another --dir",
                               path: directory)
            }
            if Log.lockHolder(directory) != nil {
                throw LogError(.locked, "a writer is using this log; choose another --dir", path: directory)
            }
            for name in names { try FileManager.default.removeItem(atPath: directory + "/" + name) }
        }
    }
}

