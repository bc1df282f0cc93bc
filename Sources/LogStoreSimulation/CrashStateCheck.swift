import Foundation
import LogStore
import Synchronization

/// The invariants checked after every simulated crash: every acknowledged record present and
/// byte-identical, LSNs contiguous from 1, nothing that was not written, no corruption reported
/// for what is only a crash, recovery idempotent (a crash in the middle of recovery, recovered
/// again, gives the same records), and appends go on after recovery without putting what it
/// kept at risk.
extension CrashSimulation {
    /// Recovers one crash state, written into a new directory inside `root`, and checks the
    /// invariants; `deep` also crashes recovery itself, and the first commit after it. Every
    /// crash, those included, follows the disk model `garbage`; recovery opens with the
    /// workload's `alignment`. Returns the violations, each starting with `tag`.
    package func verify(_ files: [PowerLossSimulator.FileState], expected: Expectations, tag: String, root: String,
                        deep: Bool, garbage: PowerLossSimulator.Garbage = .none,
                        alignment: Log.CommitAlignment = .none) -> [String]
    {
        let directory = root + "/state-\(UUID().uuidString)"
        PowerLossSimulator.write(files, into: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var violations: [String] = []
        let (first, nested) = PowerLossSimulator.crashStatesDuringRecovery(
            of: directory, seed: seed, garbage: garbage, enabled: deep
        ) {
            recoverAndCheck(directory, expected: expected, tag: tag, alignment: alignment, garbage: garbage,
                            violations: &violations)
        }
        guard let first else { return violations }
        let recovered = first.written
        for (index, state) in nested.enumerated() {
            let again = root + "/again-\(UUID().uuidString)"
            PowerLossSimulator.write(state, into: again)
            let result = recoverAndCheck(again, expected: expected, tag: tag + ", crashed in recovery step \(index)",
                                         alignment: alignment, garbage: garbage, violations: &violations)?.written
            // On a disk that garbles what it writes, recovery cannot change the sector (or page)
            // the records end in (zeroing a torn tail, padding to a commit boundary) without
            // risking the records in it. With a matching commit alignment none of those was
            // acknowledged (acknowledged records are checked above): losing them is allowed.
            if let result, result != recovered, garbage == .none || result > recovered || result + 1 < first.exposedFrom {
                violations.append("\(tag): recovery is not idempotent: \(recovered) records, then \(result) after a crash in step \(index)")
            }
            try? FileManager.default.removeItem(atPath: again)
        }
        // Recovery that kept records ending inside a commit unit (sector or page) must pad to
        // the boundary before the next commit rewrites that unit (FORMAT.md §8.6 step 7): those
        // states always get the check, not only the sampled ones.
        if deep || first.endsInsideAUnit {
            violations += appendAfterRecovery(
                directory, recovered: recovered, expected: expected, tag: tag, garbage: garbage, alignment: alignment,
                root: root)
        }
        return violations
    }

    /// Appends and commits one record after recovery, and checks that a crash during that
    /// commit loses none of what recovery kept: recovery called all of it durable.
    private func appendAfterRecovery(
        _ directory: String, recovered: LSN, expected: Expectations, tag: String, garbage: PowerLossSimulator.Garbage,
        alignment: Log.CommitAlignment, root: String
    ) -> [String] {
        var violations: [String] = []
        let record = Array("after recovery".utf8)
        var options = Log.Options(segmentSize: segmentSize, sync: .msync)
        options.commitAlignment = alignment
        let states: [[PowerLossSimulator.FileState]]
        do {
            let log = try Log.open(directory, options: options)
            let (committed, crashes) = PowerLossSimulator.crashStatesDuringRecovery(of: directory, seed: seed, garbage: garbage) {
                Result { () throws(LogError) in try log.appendAndCommit(record) }
            }
            states = crashes
            _ = try committed.get()
            try log.close()
            let reopened = try Log.openReadOnly(directory)
            let last = try reopened.read(recovered + 1)
            if reopened.writtenLSN != recovered + 1 || last != record {
                violations.append("\(tag): appending after recovery did not continue at LSN \(recovered + 1)")
            }
            try reopened.close()
        } catch {
            return violations + ["\(tag): appending after recovery failed: \(error)"]
        }
        var afterRecovery = Expectations()
        afterRecovery.appended = Array(expected.appended.prefix(Int(recovered))) + [record]
        afterRecovery.acknowledged = recovered
        for (index, state) in states.enumerated() {
            let again = root + "/after-\(UUID().uuidString)"
            PowerLossSimulator.write(state, into: again)
            _ = recoverAndCheck(again, expected: afterRecovery,
                                tag: tag + ", crashed in the first commit after recovery, state \(index)",
                                alignment: alignment, garbage: garbage, violations: &violations)
            try? FileManager.default.removeItem(atPath: again)
        }
        return violations
    }

    /// Opens (recovering) and checks the records; returns the last LSN kept, the first of the
    /// records a crash inside this recovery may garble (see `firstRecordSharingTheLastUnit`), and
    /// whether, with a commit alignment, the last kept record ends inside a sector (or page).
    package func recoverAndCheck(
        _ directory: String, expected: Expectations, tag: String, alignment: Log.CommitAlignment = .none,
        garbage: PowerLossSimulator.Garbage = .none, violations: inout [String]
    ) -> (written: LSN, exposedFrom: LSN, endsInsideAUnit: Bool)? {
        do {
            var options = Log.Options(segmentSize: segmentSize, sync: .none)
            options.commitAlignment = alignment
            let log = try Log.open(directory, options: options)
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
            let unit = garbage == .anySectorOfAWrittenPage ? Format.pageSize : Format.sectorSize
            return (written, garbage == .none ? written + 1 : Self.firstRecordSharingTheLastUnit(log, unit: unit),
                    Self.lastRecordEndsInsideAUnit(log, alignment: alignment))
        } catch {
            violations.append("\(tag): recovery failed: \(error)")
            return nil
        }
    }

    private static func end(_ record: Log.Record) -> Int {
        record.offset + Format.recordFootprint(payloadLength: record.payload.count)
    }

    /// The last record, when it is in the last segment.
    private static func lastRecordOfTheLastSegment(_ log: Log) -> Log.Record? {
        guard log.writtenLSN >= log.firstLSN, let last = try? log.record(log.writtenLSN),
            last.segment == log.segments.last?.name
        else { return nil }
        return last
    }

    /// Whether the last record of the last segment ends off an `alignment` boundary (false
    /// without alignment, or when the last segment holds no record).
    private static func lastRecordEndsInsideAUnit(_ log: Log, alignment: Log.CommitAlignment) -> Bool {
        guard alignment != .none, let last = lastRecordOfTheLastSegment(log) else { return false }
        return end(last) % alignment.bytes != 0
    }

    /// The first of the records whose bytes reach into the `unit` (sector or page) in which the
    /// last record of the last segment ends: the unit recovery changes when it zeroes a torn
    /// tail or pads to a commit boundary. `writtenLSN + 1` when the last segment holds none.
    private static func firstRecordSharingTheLastUnit(_ log: Log, unit: Int) -> LSN {
        let written = log.writtenLSN
        guard let last = lastRecordOfTheLastSegment(log) else { return written + 1 }
        let unitStart = end(last) / unit * unit
        var first = written
        while first > log.firstLSN, let previous = try? log.record(first - 1), previous.segment == last.segment,
            end(previous) > unitStart
        {
            first -= 1
        }
        return first
    }
}
