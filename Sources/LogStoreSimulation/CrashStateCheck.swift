import Foundation
import LogStore
import Synchronization

/// The invariants checked after every simulated crash: every acknowledged record present and
/// byte-identical, LSNs contiguous from 1, nothing that was not written, no corruption reported
/// for what is only a crash, recovery idempotent (a crash in the middle of recovery, recovered
/// again, gives the same records), and appends go on after recovery.
extension CrashSimulation {
    /// Recovers one crash state, written into a new directory inside `root`, and checks the
    /// invariants; `deep` also crashes recovery itself and appends afterwards. Returns the
    /// violations, each starting with `tag`.
    package func verify(_ files: [PowerLossSimulator.FileState], expected: Expectations, tag: String, root: String,
                        deep: Bool) -> [String]
    {
        let directory = root + "/state-\(UUID().uuidString)"
        PowerLossSimulator.write(files, into: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var violations: [String] = []
        let box = Mutex<[[PowerLossSimulator.FileState]]>([])
        var nestedSimulator: PowerLossSimulator?
        // The simulator's crash-point handler reaches it through `holder`: a cycle, broken
        // below, or every deep check would keep its simulator's images for good.
        let holder = Mutex<PowerLossSimulator?>(nil)
        if deep {
            let seed = seed
            nestedSimulator = PowerLossSimulator(directory: directory) { _ in
                guard let simulator = holder.withLock({ $0 }) else { return }
                var random = SplitMix64(seed: seed ^ UInt64(box.withLock { $0.count }) &+ 7)
                let state = PowerLossSimulator.crashState(simulator.snapshot(), random: &random, garbage: .changedSectors)
                box.withLock { $0.append(state) }
            }
            holder.withLock { $0 = nestedSimulator }
        }
        let recovered = recoverAndCheck(directory, expected: expected, tag: tag, violations: &violations)
        nestedSimulator?.stop()
        holder.withLock { $0 = nil }
        let nested = box.withLock { $0 }
        guard let recovered else { return violations }
        for (index, state) in nested.enumerated() {
            let again = root + "/again-\(UUID().uuidString)"
            PowerLossSimulator.write(state, into: again)
            let result = recoverAndCheck(again, expected: expected, tag: tag + ", crashed in recovery step \(index)",
                                         violations: &violations)
            if let result, result != recovered {
                violations.append("\(tag): recovery is not idempotent: \(recovered) records, then \(result) after a crash in step \(index)")
            }
            try? FileManager.default.removeItem(atPath: again)
        }
        if deep {
            do {
                let log = try Log.open(directory, options: Log.Options(segmentSize: segmentSize, sync: .msync))
                try log.appendAndCommit(Array("after recovery".utf8))
                try log.close()
                let reopened = try Log.openReadOnly(directory)
                let last = try reopened.read(recovered + 1)
                if reopened.writtenLSN != recovered + 1 || last != Array("after recovery".utf8) {
                    violations.append("\(tag): appending after recovery did not continue at LSN \(recovered + 1)")
                }
                try reopened.close()
            } catch {
                violations.append("\(tag): appending after recovery failed: \(error)")
            }
        }
        return violations
    }

    /// Opens (recovering) and checks the records; returns the last LSN kept.
    package func recoverAndCheck(_ directory: String, expected: Expectations, tag: String, violations: inout [String])
        -> LSN?
    {
        do {
            let log = try Log.open(directory, options: Log.Options(segmentSize: segmentSize, sync: .none))
            defer { try? log.close() }
            let written = log.writtenLSN
            if log.recoveryReport.outcome == .corruption {
                violations.append("\(tag): a crash was reported as corruption: \(log.recoveryReport)")
            }
            if written < expected.acknowledged {
                violations.append("\(tag): acknowledged LSN \(expected.acknowledged) lost, only \(written) recovered")
            }
            if written > LSN(expected.appended.count) {
                violations.append("\(tag): recovered LSN \(written), but only \(expected.appended.count) were appended")
                return nil
            }
            if log.firstLSN != 1 { violations.append("\(tag): first LSN is \(log.firstLSN)") }
            if written >= 1 {
                for lsn in 1...written {
                    let stored = (try? log.read(lsn)) ?? []
                    let matches = stored.withUnsafeBytes { a in expected.appended[Int(lsn - 1)].withUnsafeBytes { b in same(a, b) } }
                    if !matches {
                        violations.append("\(tag): LSN \(lsn) recovered with other bytes than were appended")
                        break
                    }
                }
            }
            return written
        } catch {
            violations.append("\(tag): recovery failed: \(error)")
            return nil
        }
    }
}
