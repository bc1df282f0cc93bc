import ArgumentParser
import Foundation
import LogStore

extension LogCtl {
    struct Append: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Append records read from stdin, one per line, printing each LSN once it is durable.",
            discussion: """
                The newline is not stored. Records are committed every --batch records and at end of input;
                only after a commit returns are the LSNs it made durable printed, one per line. With
                --sync none nothing becomes durable and nothing is printed.

                --recovery chooses what opening the log does when valid records stop before its end
                (docs/FORMAT.md §8.5): strict refuses any invalid byte; torn-tail (the default) drops a
                torn tail and refuses damage to durable data; point-in-time keeps the records before the
                damage and drops the rest; salvage does the same and also exports every valid record past
                the damage, with its LSN, to a salvaged-*.jsonl file in the log directory. Whatever
                recovery drops is first preserved in dropped-*.bin files there. When recovery changed
                something, one line on stderr says what, and where it went.

                Example:
                  printf 'hello\\nworld\\n' | logctl append /tmp/log --create
                """)

        @OptionGroup var log: LogDirectory

        @Flag(help: "Create the log (and its directory) when missing.")
        var create = false

        @Option(help: "How commits make records durable: msync, uring, fdatasync or none.")
        var sync: Log.SyncMode = .msync

        @Option(help: "Commit after every N records (and at end of input).")
        var batch = 1

        @Option(help: "Segment size for a new log, in bytes (suffixes K, M, G allowed).")
        var segmentSize = "64MiB"

        @Option(help: "Recovery on open: strict, torn-tail, point-in-time or salvage.")
        var recovery: RecoveryMode = .tornTail

        func validate() throws {
            guard batch >= 1 else { throw ValidationError("--batch must be at least 1") }
            guard parseByteCount(segmentSize) != nil else {
                throw ValidationError("--segment-size '\(segmentSize)' is not a byte count")
            }
        }

        func run() throws {
            let options = Log.Options(
                segmentSize: parseByteCount(segmentSize)!, createIfMissing: create, recovery: recovery, sync: sync)
            let log = try Log.open(log.directory, options: options)
            if let note = describeAppliedRecovery(log.recoveryReport) {
                FileHandle.standardError.write(Data(("logctl: " + note + "\n").utf8))
            }
            var pending: [LSN] = []
            var reader = LineReader(descriptor: 0)
            func commitAndPrint() throws {
                guard !pending.isEmpty else { return }
                let durable = try log.commit()
                var output = ""
                while let first = pending.first, first <= durable {
                    output += "\(first)\n"
                    pending.removeFirst()
                }
                if !output.isEmpty { FileHandle.standardOutput.write(Data(output.utf8)) }
                if sync == .none { pending.removeAll() }
            }
            while let line = try reader.next() {
                pending.append(try line.withUnsafeBytes { try log.append($0) })
                if pending.count >= batch { try commitAndPrint() }
            }
            try commitAndPrint()
            try log.close()
        }
    }
}

/// Reads newline-separated byte strings from a file descriptor without decoding them.
struct LineReader {
    let descriptor: Int32
    private var buffer: [UInt8] = []
    private var start = 0
    private var atEnd = false

    init(descriptor: Int32) { self.descriptor = descriptor }

    mutating func next() throws -> [UInt8]? {
        while true {
            if let newline = buffer[start...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[start..<newline])
                start = newline + 1
                return line
            }
            if atEnd {
                guard start < buffer.count else { return nil }
                let line = Array(buffer[start...])
                start = buffer.count
                return line
            }
            if start > 0 {
                buffer.removeFirst(start)
                start = 0
            }
            var chunk = [UInt8](repeating: 0, count: 64 * 1024)
            let count = chunk.withUnsafeMutableBytes { Foundation.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw LogError(.ioError, "cannot read standard input (errno \(errno))")
            }
            if count == 0 { atEnd = true } else { buffer.append(contentsOf: chunk[0..<count]) }
        }
    }
}
