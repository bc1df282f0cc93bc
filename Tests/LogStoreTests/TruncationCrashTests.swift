import Dispatch
import Foundation
@testable import LogStore
import LogStoreSimulation
import Synchronization
import Testing

/// `removeBefore` and `removeAfter` under the power-loss simulator (PowerLossSimulator.swift).
/// A real log is truncated in the middle of a workload; at every crash point (each step of the
/// truncation, each append and sync around it, and, for some states, each step of the recovery
/// that completes a leftover intent) crash states are built and recovered, and the recovered
/// log must be one of the logs the moment allows: before the truncation or after it, never in
/// between. Checked for each: the first LSN is the one before or after, every acknowledged
/// record kept by the truncation is present and byte-identical, LSNs are contiguous, nothing
/// past a suffix cut reappears (records appended later under the same LSNs read back as the new
/// bytes, never the old), and recovery crashed in its own steps recovers to the same log.
///
/// `LOGSTORE_CRASH_SEED` replays a seed.
@Suite(.serialized) struct TruncationCrashTests {
    // Shared with CrashSimulationTests: one seed replays both.
    static var seed: UInt64 { CrashSimulationTests.seed }
    static var scratchRoot: String { CrashSimulationTests.scratchRoot }
    static let segmentSize = 1 << 20

    /// A log a crash may legitimately recover to: `firstLSN`, every record from there through
    /// `acknowledged`, possibly more up to `lastLSN`, each with the bytes in `payloads`
    /// (index LSN - 1).
    struct Image: Sendable {
        var name: String
        var firstLSN: LSN
        var payloads: [[UInt8]]
        var acknowledged: LSN
        var lastLSN: LSN { LSN(payloads.count) }

        func admits(first: LSN, written: LSN, read: (LSN) -> [UInt8]?) -> Bool {
            guard first == firstLSN, written >= max(acknowledged, first - 1), written <= lastLSN else { return false }
            guard written >= first else { return true }
            return (first...written).allSatisfy { read($0) == payloads[Int($0 - 1)] }
        }
    }

    struct Outcome: Sendable {
        var states = 0
        var crashPoints = 0
        var truncationPoints = 0
        var nestedStates = 0
        var violations: [String] = []
    }

    /// Runs a workload with truncations in `directory`, checking crash states at every crash
    /// point while `images` (what a crash may recover to right now) is set.
    final class Harness: @unchecked Sendable {
        // Unchecked: the mutable state is in Mutexes; `simulator` is set once before use.
        let root: String
        let directory: String
        let garbage: PowerLossSimulator.Garbage
        let images = Mutex<[Image]?>(nil)
        let outcome = Mutex(Outcome())
        private let group = DispatchGroup()
        private let inFlight = DispatchSemaphore(value: 4)
        private let queue = DispatchQueue(label: "truncation-crash-verify", attributes: .concurrent)
        private let point = Atomic<Int>(0)
        private var simulator: PowerLossSimulator!

        init(garbage: PowerLossSimulator.Garbage) throws {
            root = TruncationCrashTests.scratchRoot + "/logstore-truncation-crash-\(UUID().uuidString)"
            directory = root + "/log"
            self.garbage = garbage
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            simulator = PowerLossSimulator(directory: directory) { [unowned self] name in crashed(at: name) }
        }

        deinit {
            simulator.stop()
            try? FileManager.default.removeItem(atPath: root)
        }

        private func crashed(at name: String) {
            guard let images = images.withLock({ $0 }) else { return }
            let number = point.add(1, ordering: .relaxed).newValue
            let snapshot = simulator.snapshot()
            let truncating = name.hasPrefix("truncation")
            outcome.withLock {
                $0.crashPoints += 1
                if truncating { $0.truncationPoints += 1 }
            }
            // Each state is built where it is checked, from the shared snapshot: a few states
            // in memory at a time, not all of a crash point's (segment images are megabytes).
            for index in 0..<(truncating ? 64 : 8) {
                let tag = "seed \(TruncationCrashTests.seed), crash point #\(number) (\(name)), state \(index)"
                // A sample of the states of every truncation point (those with a leftover intent
                // among them) is also crashed inside its recovery; other points now and then.
                let deep = (truncating && index % 4 == 0) || (number &* 31 &+ index) % 64 == 0
                inFlight.wait()
                group.enter()
                queue.async { [self] in
                    var random = SplitMix64(seed: TruncationCrashTests.seed ^ UInt64(number) &* 0x9E37_79B9 ^ UInt64(index))
                    let state = PowerLossSimulator.crashState(snapshot, random: &random, garbage: garbage)
                    let (found, nested) = TruncationCrashTests.verify(state, images: images, tag: tag, root: root, deep: deep)
                    outcome.withLock {
                        $0.states += 1
                        $0.nestedStates += nested
                        $0.violations += found
                    }
                    inFlight.signal()
                    group.leave()
                }
            }
        }

        func finish() -> Outcome {
            images.withLock { $0 = nil }
            group.wait()
            return outcome.withLock { $0 }
        }
    }

    /// Recovers one crash state and checks it against `images`; with `deep`, also crashes the
    /// recovery at each of its crash points and recovers again (it must reach the same log),
    /// then appends. Returns the violations and the number of nested states checked.
    static func verify(_ files: [PowerLossSimulator.FileState], images: [Image], tag: String, root: String, deep: Bool)
        -> ([String], Int)
    {
        let directory = root + "/state-\(UUID().uuidString)"
        PowerLossSimulator.write(files, into: directory)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var violations: [String] = []
        let (recovered, nested) = PowerLossSimulator.crashStatesDuringRecovery(
            of: directory, seed: seed, garbage: .none, enabled: deep
        ) { recoverAndMatch(directory, images: images, tag: tag, violations: &violations) }
        guard let recovered else { return (violations, 0) }
        for (index, state) in nested.enumerated() {
            let again = root + "/again-\(UUID().uuidString)"
            PowerLossSimulator.write(state, into: again)
            let result = recoverAndMatch(again, images: images, tag: tag + ", crashed in recovery step \(index)",
                                         violations: &violations)
            if let result, result != recovered {
                violations.append("\(tag): recovery is not idempotent: first/written \(recovered), then \(result) "
                                  + "after a crash in its step \(index)")
            }
            try? FileManager.default.removeItem(atPath: again)
        }
        if deep {
            do {
                let log = try Log.open(directory, options: Log.Options(segmentSize: segmentSize, sync: .msync))
                let lsn = try log.appendAndCommit(Array("after recovery".utf8))
                try log.close()
                let reopened = try Log.openReadOnly(directory)
                if lsn != recovered.written + 1 || (try? reopened.read(lsn)) != Array("after recovery".utf8) {
                    violations.append("\(tag): appending after recovery did not continue at LSN \(recovered.written + 1)")
                }
                try reopened.close()
            } catch {
                violations.append("\(tag): appending after recovery failed: \(error)")
            }
        }
        return (violations, nested.count)
    }

    struct Recovered: Equatable, CustomStringConvertible {
        var first: LSN
        var written: LSN
        var description: String { "\(first)/\(written)" }
    }

    /// Opens (recovering) and checks the log against the images.
    static func recoverAndMatch(_ directory: String, images: [Image], tag: String, violations: inout [String])
        -> Recovered?
    {
        do {
            let log = try Log.open(directory, options: Log.Options(segmentSize: segmentSize, sync: .none))
            defer { try? log.close() }
            if log.recoveryReport.outcome == .corruption {
                violations.append("\(tag): a crash was reported as corruption: \(log.recoveryReport)")
            }
            if FileManager.default.fileExists(atPath: directory + "/" + Format.truncationIntentFileName) {
                violations.append("\(tag): a writer's open left the truncation intent in place")
            }
            let recovered = Recovered(first: log.firstLSN, written: log.writtenLSN)
            let admitted = images.contains { image in
                image.admits(first: recovered.first, written: recovered.written, read: { try? log.read($0) })
            }
            if !admitted {
                let allowed = images.map { "\($0.name): first \($0.firstLSN), \($0.acknowledged)...\($0.lastLSN)" }
                violations.append("\(tag): recovered first/written \(recovered) with these bytes matches none of "
                                  + allowed.joined(separator: "; "))
            }
            return recovered
        } catch {
            violations.append("\(tag): recovery failed: \(error)")
            return nil
        }
    }

    static func report(_ outcome: Outcome, _ label: String) {
        print("truncation crash simulation [\(label)]: \(outcome.states) crash states (+\(outcome.nestedStates) inside "
              + "recovery) at \(outcome.crashPoints) crash points (\(outcome.truncationPoints) inside truncations), "
              + "\(outcome.violations.count) invariant violations (seed \(seed); replay with LOGSTORE_CRASH_SEED=\(seed))")
        for violation in outcome.violations.prefix(5) { print("  " + violation) }
    }

    /// The workload: fill four segments (commits now and then, the last records unacknowledged),
    /// cut the suffix back into segment 2 (removing acknowledged records and segments 3 and 4),
    /// append new records under the freed LSNs with commits, cut a few records in the active
    /// segment (some of them never durable), append again, then remove the first segment from
    /// the front, append and close.
    ///
    /// With `reopenCleanlyBeforeCutting`, the log is closed after phase A and opened again, so
    /// that the sealed segments the cuts land in were not checked at open (FORMAT.md §8.7) and
    /// are indexed by the truncation itself.
    static func run(
        garbage: PowerLossSimulator.Garbage, alignment: Log.CommitAlignment, reopenCleanlyBeforeCutting: Bool = false
    ) throws -> Outcome {
        let harness = try Harness(garbage: garbage)
        var options = Log.Options(segmentSize: segmentSize, createIfMissing: true, sync: .msync)
        options.commitAlignment = alignment
        var log = try Log.open(harness.directory, options: options)
        var random = SplitMix64(seed: seed)
        var payloads: [[UInt8]] = []
        var acknowledged: LSN = 0
        var first: LSN = 1
        func current(_ name: String) -> Image {
            Image(name: name, firstLSN: first, payloads: payloads, acknowledged: acknowledged)
        }
        func append(_ count: Int, tag: String, commitAtEnd: Bool, commits: Bool = true) throws {
            var sinceCommit = 0
            for index in 0..<count {
                let length = Int(random.next() % 20_000)
                payloads.append((0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) } + Array("\(tag)#\(index)".utf8))
                // Known before the append, whose crash point fires inside it.
                harness.images.withLock { if $0 != nil { $0 = [current("appending")] } }
                try log.append(payloads[payloads.count - 1])
                sinceCommit += 1
                if (commits && sinceCommit >= 1 + Int(random.next() % 5)) || (commitAtEnd && index == count - 1) {
                    acknowledged = try log.commit()
                    harness.images.withLock { if $0 != nil { $0 = [current("committed")] } }
                    sinceCommit = 0
                }
            }
        }
        // Phase A, not crashed: CrashSimulationTests covers plain appends.
        while log.segments.count < 4 || log.segments[3].recordCount < 5 { try append(1, tag: "a", commitAtEnd: false) }
        acknowledged = try log.commit()
        try append(4, tag: "a-tail", commitAtEnd: false, commits: false)
        #expect(acknowledged < LSN(payloads.count), "the workload must leave records unacknowledged")
        harness.images.withLock { $0 = [current("initial")] }
        if reopenCleanlyBeforeCutting {
            // Crashes during the close may keep or lose the unacknowledged tail ("initial").
            try log.close()
            acknowledged = LSN(payloads.count)
            harness.images.withLock { $0 = [current("closed")] }
            log = try Log.open(harness.directory, options: options)
            #expect(log.recoveryReport.deferredSegments >= 2, "the cut must land in a segment not checked at open")
        }

        // Phase B: a suffix cut into segment 2, below acknowledged records.
        let cut = log.segments[1].baseLSN + 3
        var after = current("after removeAfter(\(cut))")
        after.payloads = Array(payloads[0..<Int(cut)])
        after.acknowledged = min(acknowledged, cut)
        harness.images.withLock { $0 = [current("before removeAfter(\(cut))"), after] }
        try log.removeAfter(cut)
        (payloads, acknowledged) = (after.payloads, after.acknowledged)
        harness.images.withLock { $0 = [current("after removeAfter(\(cut))")] }

        // Phase C: new records under the removed LSNs, then a cut inside the active segment
        // that removes acknowledged records and records never made durable.
        try append(24, tag: "c", commitAtEnd: true)
        try append(5, tag: "c-tail", commitAtEnd: false, commits: false)
        let secondCut = acknowledged - 2
        after = current("after removeAfter(\(secondCut))")
        after.payloads = Array(payloads[0..<Int(secondCut)])
        after.acknowledged = secondCut
        harness.images.withLock { $0 = [current("before removeAfter(\(secondCut))"), after] }
        try log.removeAfter(secondCut)
        (payloads, acknowledged) = (after.payloads, after.acknowledged)
        harness.images.withLock { $0 = [current("after removeAfter(\(secondCut))")] }
        try append(8, tag: "d", commitAtEnd: true)

        // Phase D: front truncation of segment 1 (the argument lies inside segment 2).
        let frontArgument = log.segments[1].baseLSN + 1
        let newFirst = log.segments[1].baseLSN
        after = current("after removeBefore(\(frontArgument))")
        after.firstLSN = newFirst
        harness.images.withLock { $0 = [current("before removeBefore(\(frontArgument))"), after] }
        try log.removeBefore(frontArgument)
        first = newFirst
        harness.images.withLock { $0 = [current("after removeBefore(\(frontArgument))")] }
        try append(6, tag: "e", commitAtEnd: true)
        try log.close()
        return harness.finish()
    }

    @Test func everyCrashDuringTruncationRecoversToBeforeOrAfter() throws {
        let outcome = try Self.run(garbage: .none, alignment: .none)
        Self.report(outcome, "msync, sector-atomic writes")
        #expect(outcome.violations.isEmpty, "\(outcome.violations.prefix(3))")
        #expect(outcome.truncationPoints >= 12)
        #expect(outcome.nestedStates > 0, "recovery completing an intent must itself be crashed")
        #expect(outcome.states >= 1_500)
    }

    @Test func truncationIntoSealedSegmentsNotCheckedAtOpenRecoversToBeforeOrAfter() throws {
        let outcome = try Self.run(garbage: .none, alignment: .none, reopenCleanlyBeforeCutting: true)
        Self.report(outcome, "msync, sector-atomic writes, cuts into segments not checked at open")
        #expect(outcome.violations.isEmpty, "\(outcome.violations.prefix(3))")
        #expect(outcome.truncationPoints >= 12)
        #expect(outcome.states >= 1_500)
    }

    @Test func sectorAlignedCommitsSurviveTruncationWithGarbageInChangedSectors() throws {
        let outcome = try Self.run(garbage: .changedSectors, alignment: .sector)
        Self.report(outcome, "msync, sector-aligned commits, garbage in changed sectors")
        #expect(outcome.violations.isEmpty, "\(outcome.violations.prefix(3))")
        #expect(outcome.truncationPoints >= 12)
    }

    @Test func pageAlignedCommitsSurviveTruncationWithGarbageInAnySectorOfAWrittenPage() throws {
        let outcome = try Self.run(garbage: .anySectorOfAWrittenPage, alignment: .page)
        Self.report(outcome, "msync, page-aligned commits, garbage in any sector of a written page")
        #expect(outcome.violations.isEmpty, "\(outcome.violations.prefix(3))")
        #expect(outcome.truncationPoints >= 12)
    }

    /// The checker can fail: a suffix cut done without an intent, zeroing and unlinking without
    /// syncing, leaves crash states in which the removed records come back (the images admit
    /// only the log after the cut).
    @Test func aCutWithoutIntentOrSyncsIsCaughtResurrectingRemovedRecords() throws {
        let harness = try Harness(garbage: .none)
        let log = try Log.open(harness.directory, options: Log.Options(segmentSize: Self.segmentSize, createIfMissing: true))
        var payloads: [[UInt8]] = []
        while log.segments.count < 2 || log.segments[1].recordCount < 3 {
            payloads.append(payload(payloads.count, seed: 3, maxLength: 20_000))
            try log.append(payloads[payloads.count - 1])
        }
        try log.commit()
        let cut = log.segments[1].baseLSN - 2
        let offset = try log.record(cut + 1).offset
        try log.close()
        // The naive cut: zeros written and segment 2 unlinked, nothing synced.
        let file = try FileHandle(forWritingTo: URL(fileURLWithPath: segmentPath(harness.directory)))
        try file.seek(toOffset: UInt64(offset))
        file.write(Data(count: (1 << 20) - offset))
        try file.close()
        try FileManager.default.removeItem(atPath: segmentPath(harness.directory, id: 2))
        harness.images.withLock {
            $0 = [Image(name: "after the cut", firstLSN: 1, payloads: Array(payloads[0..<Int(cut)]), acknowledged: cut)]
        }
        FaultInjection.crashPoint("naive cut done", directory: harness.directory)
        let outcome = harness.finish()
        #expect(!outcome.violations.isEmpty, "an unsynced cut must be seen to lose or resurrect records")
    }
}
