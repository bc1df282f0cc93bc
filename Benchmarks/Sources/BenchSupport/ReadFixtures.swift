#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import LogStore

/// The closed logs the read, scan and open benchmarks work on.
public enum ReadFixtures {
    /// Appends `records` copies of `payload` to a new log in `directory` (64 MiB segments),
    /// committing every 64 MiB, and closes it cleanly.
    public static func writeClosedLog(_ directory: String, records: Int, payload: [UInt8]) throws {
        let log = try Log.open(directory, options: Log.Options(createIfMissing: true))
        let perCommit = max(1, (64 << 20) / (payload.count + 32))
        try payload.withUnsafeBytes { bytes in
            for index in 0..<records {
                try log.append(bytes)
                if index % perCommit == perCommit - 1 { try log.commit() }
            }
        }
        try log.close()
    }

    /// A log of about `bytes` bytes in 64 MiB segments in `directory`, closed cleanly: 64 KiB
    /// records up to the last segment, which is filled with 128-byte records (the most an open
    /// after a clean close parses: the last segment, full of the smallest usual records).
    /// Reused when `directory` already holds one that size. Returns its number of segments.
    @discardableResult
    public static func makeLargeClosedLog(_ directory: String, bytes: Int) throws -> Int {
        let segmentSize = 64 << 20
        let segments = max(2, bytes / segmentSize)
        if let existing = try? Log.openReadOnly(directory) {
            defer { try? existing.close() }
            if existing.recoveryReport.outcome == .clean, existing.recoveryReport.segmentsKept == segments {
                return segments
            }
        }
        Bench.removeDirectory(directory)
        let log = try Log.open(directory, options: Log.Options(segmentSize: segmentSize, createIfMissing: true))
        let large = Bench.payload(64 << 10)
        let largePerSegment = (segmentSize - 4096) / (32 + large.count)
        try large.withUnsafeBytes { record in
            for index in 1...((segments - 1) * largePerSegment) {
                try log.append(record)
                if index % 512 == 0 { try log.commit() }
            }
        }
        // Then 128-byte records: the rest of the last large segment, then all of the last one
        // but the room for the close marker.
        let small = Bench.payload(128)
        let smallFootprint = 32 + small.count
        try small.withUnsafeBytes { record in
            while log.segments.count < segments {
                for _ in 0..<4096 { try log.append(record) }
            }
            let room = (segmentSize - log.segments.last!.bytesUsed) / smallFootprint
            for index in 0..<(room - 1) {
                try log.append(record)
                if index % 65_536 == 0 { try log.commit() }
            }
        }
        try log.close()
        return segments
    }

    /// Bytes of records (headers, payloads, padding) in the log.
    public static func recordBytes(_ log: Log) -> Int {
        log.segments.reduce(0) { $0 + $1.bytesUsed - 4096 }
    }

    /// Drops the page cache of every file in `directory` (POSIX_FADV_DONTNEED; clean pages only).
    public static func dropPageCache(_ directory: String) {
        for name in Bench.fileNames(in: directory) {
            let fd = open(directory + "/" + name, O_RDONLY)
            guard fd >= 0 else { continue }
            _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
            close(fd)
        }
    }

    /// `count` LSNs in `1...last`, pseudo-random (xorshift), the same every run.
    public static func randomLSNs(_ count: Int, last: LSN) -> [LSN] {
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        return (0..<count).map { _ in
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return 1 + state % last
        }
    }
}
