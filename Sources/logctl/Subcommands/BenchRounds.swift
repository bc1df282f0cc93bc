import Foundation
import LogStore

extension LogCtl.Bench {
    /// Measures `group` (the durable-serial baseline, then one row per mode) taking turns in
    /// `--rounds` rounds (default: twice the rows), as `roundSchedule` lays them out, each row's
    /// log or file open throughout and each row's rounds summed. A mode that fails is warned
    /// about, added to `failedModes` and left out (nil); the baseline failing fails the run.
    func measureInRounds(
        _ group: [BenchRow], place: BenchDirectory, runner: BenchRunner, plan: Plan, output: BenchOutput,
        failedModes: inout Set<String>, progress: (_ round: Int, _ of: Int) -> Void
    ) throws -> [BenchMeasurement?] {
        precondition(group.first?.sync == nil, "the baseline leads its workload's rows")
        let records = group[0].records
        let schedule = Self.roundSchedule(members: group.count, rounds: rounds ?? 2 * group.count, records: records)
        return try place.withRowDirectories(group.map(\.directoryName)) { directories in
            let file = try RawFile(path: directories[0] + "/raw", capacity: records * runner.size)
            var logs: [Log?] = [nil]
            var failed = failedModes
            func fail(_ member: Int, _ error: LogError) {
                if let log = logs[member] { try? log.close() }
                logs[member] = nil
                output.clearProgress()
                warn("bench: mode \(group[member].mode) failed, skipping its rows: \(error)")
                failed.insert(group[member].mode)
            }
            // Every log opens before any timing, as a row's log does in `measure`.
            for (member, row) in group.enumerated().dropFirst() {
                logs.append(nil)
                guard let sync = row.sync, !failed.contains(row.mode) else { continue }
                do {
                    logs[member] = try Log.open(
                        directories[member],
                        options: Log.Options(segmentSize: plan.segmentSize, createIfMissing: true, sync: sync))
                } catch let error as LogError { fail(member, error) }
            }
            defer { for log in logs { try? log?.close() } }

            var measured = group.map { _ in BenchMeasurement.empty() }
            for (round, turns) in schedule.enumerated() {
                progress(round + 1, schedule.count)
                for (member, range) in turns {
                    if member == 0 {
                        measured[0].add(try runner.rawSerial(into: file, records: range))
                        continue
                    }
                    guard let log = logs[member] else { continue }
                    do { measured[member].add(try runner.durableSerial(log, records: range.count)) } catch let error as LogError {
                        fail(member, error)
                    }
                }
            }
            // A close that fails (its last sync, say) fails the row, as in `measure`.
            for member in logs.indices {
                guard let log = logs[member] else { continue }
                logs[member] = nil
                do { try log.close() } catch let error as LogError { fail(member, error) }
            }
            failedModes = failed
            return group.indices.map { member in
                member == 0 || !failed.contains(group[member].mode) ? measured[member] : nil
            }
        }
    }

    /// Who writes which records when: `rounds` rounds of about records/rounds records each (the
    /// remainder spread over the first rounds), every member once a round, the order rotated by
    /// one each round, so that with rounds a multiple of `members` each member takes each place
    /// in the order equally often. Member 0's ranges (the raw file's records) tile 0..<records.
    static func roundSchedule(members: Int, rounds: Int, records: Int) -> [[(member: Int, records: Range<Int>)]] {
        var done = 0
        return (0..<rounds).map { round in
            let count = records / rounds + (round < records % rounds ? 1 : 0)
            defer { done += count }
            return (0..<members).map { step in ((round + step) % members, done..<(done + count)) }
        }
    }
}
