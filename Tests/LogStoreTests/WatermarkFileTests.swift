import Foundation
@testable import LogStore
import Testing

/// The `DURABLE` file (FORMAT.md §11): the writer publishes its durable LSN there after every
/// sync; it is a hint that never has to be trusted, and a bad one is ignored or rewritten.
@Suite struct WatermarkFileTests {
    /// The header fields, decoded from the file's bytes as an independent reader would.
    static func fields(_ directory: String) throws -> (magic: UInt64, version: UInt32, epoch: UInt32, durable: UInt64, size: Int) {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: directory + "/" + Format.watermarkFileName)))
        func load<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            bytes[offset..<(offset + MemoryLayout<T>.size)].reversed().reduce(T(0)) { $0 << 8 | T($1) }
        }
        return (load(0, UInt64.self), load(8, UInt32.self), load(12, UInt32.self), load(16, UInt64.self), bytes.count)
    }

    @Test func writerPublishesItsDurableLSNAfterEverySync() throws {
        let directory = TemporaryDirectory("watermark")
        let log = try Log.open(directory.path, options: options())
        var previousEpoch = try Self.fields(directory.path).epoch
        for round in 1...5 {
            try log.append(payload(round))
            #expect(try Self.fields(directory.path).durable == LSN(round - 1), "published before the sync")
            try log.commit()
            let fields = try Self.fields(directory.path)
            #expect(fields.magic == 0x5255_4454_5347_4F4C)  // "LOGSTDUR"
            #expect(fields.version == 1)
            #expect(fields.size == 4096)
            #expect(fields.durable == LSN(round))
            #expect(fields.epoch != previousEpoch, "followers were not woken")
            previousEpoch = fields.epoch
        }
        try log.close()
    }

    /// Recovery never reads the file: garbage, a short file, or none at all changes nothing
    /// about opening; the writer grows and rewrites it.
    @Test(arguments: [[UInt8](), [UInt8](repeating: 0xFF, count: 100), [UInt8](repeating: 0xAB, count: 8192)])
    func aDamagedWatermarkFileIsRewrittenByTheWriterAndIgnoredByFollowers(garbage: [UInt8]) throws {
        let directory = TemporaryDirectory("watermark-garbage")
        let log = try Log.open(directory.path, options: options())
        try log.appendAndCommit([1, 2, 3])
        try log.close()
        let path = directory.child(Format.watermarkFileName)
        try Data(garbage).write(to: URL(fileURLWithPath: path))
        let follower = try LogFollower(directory.path)
        #expect(!follower.isFollowingWatermark)
        #expect(try follower.nextIfAvailable()?.payload == [1, 2, 3], "the close marker proves the record durable")
        let reopened = try Log.open(directory.path, options: options())
        #expect(reopened.recoveryReport.outcome == .clean)
        let fields = try Self.fields(directory.path)
        #expect(fields.durable == 1)
        #expect(fields.size == max(4096, garbage.count), "the file is grown, never shrunk")
        #expect(try LogFollower(directory.path).isFollowingWatermark)
        try reopened.close()
    }

    @Test func aReadOnlyOpenNeitherCreatesNorChangesIt() throws {
        let directory = TemporaryDirectory("watermark-readonly")
        let log = try Log.open(directory.path, options: options())
        try log.appendAndCommit([1])
        try log.close()
        try FileSystem.unlink(directory.child(Format.watermarkFileName))
        let before = try snapshot(directory.path)
        let reader = try Log.openReadOnly(directory.path)
        try reader.close()
        _ = try LogFollower(directory.path).nextIfAvailable()
        #expect(try snapshot(directory.path) == before)
    }
}
