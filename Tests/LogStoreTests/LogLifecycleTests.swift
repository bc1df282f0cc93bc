import Foundation
@testable import LogStore
import LogStoreSimulation
import Synchronization
import Testing

/// The end of a writer's life: `close` leaves nothing a power loss could take, and a writer
/// dropped without `close` (a crash, as far as the log is concerned) has already made
/// everything it acknowledged durable. Both are checked against the power-loss simulator's
/// durable image, not just by reopening (which would also see pages no sync covered).
@Suite struct LogLifecycleTests {
    /// A fresh directory watched by the power-loss simulator until this goes away, named by its
    /// canonical path, since sync events carry canonical paths (from /proc/self/fd).
    final class WatchedDirectory {
        let scratch: TemporaryDirectory
        let path: String
        let simulator: PowerLossSimulator

        init(_ label: String) {
            scratch = TemporaryDirectory(label)
            path = URL(fileURLWithPath: scratch.path).resolvingSymlinksInPath().path
            simulator = PowerLossSimulator(directory: path)
        }

        deinit { simulator.stop() }
    }

    @Test(arguments: GroupCommitTests.durableModes)
    func closeLeavesEverySegmentAndItsNameDurable(mode: Log.SyncMode) throws {
        let watched = WatchedDirectory("closed")
        let directory = watched.path
        let log = try Log.open(directory, options: options(sync: mode))
        var index = 0
        while log.segments.count < 3 {
            try log.append(payload(index, maxLength: 8_000))
            index += 1
            if index % 50 == 0 { try log.commit() }
        }
        // Appended after the last commit: only close makes these durable.
        for _ in 0..<10 {
            try log.append(payload(index, maxLength: 8_000))
            index += 1
        }
        try log.close()
        let segments = watched.simulator.snapshot().current.filter { Format.segmentID(fromFileName: $0.name) != nil }
        #expect(segments.count == 3)
        for file in segments {
            #expect(file.nameIsDurable, "\(file.name): its name is not durable")
            let durable = file.durable ?? []
            let firstUnsynced = zip(durable, file.memory).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                ?? (durable.count == file.memory.count ? nil : min(durable.count, file.memory.count))
            #expect(firstUnsynced == nil, "\(file.name) holds bytes no sync covered, from offset \(firstUnsynced ?? 0)")
        }
        // The close marker lets recovery prove every record durable.
        let reader = try Log.openReadOnly(watched.path)
        #expect(reader.recoveryReport.outcome == .clean)
        #expect(reader.recoveryReport.provenDurableLSN == LSN(index))
        for lsn in [1, LSN(index / 2), LSN(index)] { #expect(try reader.read(lsn) == payload(Int(lsn) - 1, maxLength: 8_000)) }
        try reader.close()
    }

    @Test(arguments: GroupCommitTests.durableModes)
    func droppedWriterKeepsEveryAcknowledgedRecordThroughAPowerLossRightAfter(mode: Log.SyncMode) throws {
        let watched = WatchedDirectory("dropped")
        let directory = watched.path
        let acknowledged = Mutex<[LSN: [UInt8]]>([:])
        weak var dropped: Log?
        do {
            let log = try Log.open(directory, options: options(sync: mode))
            // 4 threads committing records of up to 8,000 bytes into 1 MiB segments: rolls included.
            GroupCommitTests.onThreads(4, 100) { writer, index in
                let bytes = payload(writer * 1_000 + index, seed: 3, maxLength: 8_000)
                if let lsn = try? log.appendAndCommit(bytes) { acknowledged.withLock { $0[lsn] = bytes } }
            }
            // Appended, never committed: these may or may not survive.
            for index in 0..<20 { try log.append(payload(10_000 + index, maxLength: 4_000)) }
            #expect(log.segments.count > 1)
            dropped = log
        }
        // The syncer or waker thread may hold the last reference for one more round.
        for _ in 0..<2_000 where dropped != nil { usleep(1_000) }
        #expect(dropped == nil, "the log was not deinitialized")
        let snapshot = watched.simulator.snapshot()
        watched.simulator.stop()
        let acked = acknowledged.withLock { $0 }
        #expect(acked.count == 400)
        var random = SplitMix64(seed: 17)
        for state in 0..<6 {
            let crashed = TemporaryDirectory("after-drop")
            PowerLossSimulator.write(PowerLossSimulator.crashState(snapshot, random: &random, garbage: .none),
                                     into: crashed.path)
            let log = try Log.open(crashed.path, options: options(sync: mode))
            #expect(log.writtenLSN >= 400, "state \(state)")
            for (lsn, bytes) in acked {
                #expect(try log.read(lsn) == bytes, "state \(state): acknowledged LSN \(lsn) lost after a drop and a power loss")
            }
            try log.close()
        }
        // Without a power loss, the directory reopens at once with every record appended.
        let log = try Log.open(watched.path, options: options(sync: mode))
        #expect(log.writtenLSN == 420)
        try log.close()
    }
}
