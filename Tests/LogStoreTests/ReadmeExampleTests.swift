import Foundation
import LogStore
import Testing

/// The embedding example from README.md, compiled and run (keep the two in step).
@Suite struct ReadmeExampleTests {
    @Test func readmeEmbeddingExampleWorks() throws {
        let directory = TemporaryDirectory("readme")
        let path = directory.child("wal")
        // --- README example, with the path replaced ---
        let log = try Log.open(path, options: .init(createIfMissing: true))
        let lsn = try log.append(Array("set x = 1".utf8))   // written, not yet durable
        try log.commit()                                     // now durable: log.durableLSN >= lsn
        var records = log.records(from: 1)
        while let record = try records.next() {
            print(record.lsn, String(decoding: record.payload, as: UTF8.self))
        }
        print(log.recoveryReport.outcome)                    // .clean, .tornTail or .corruption
        try log.close()
        // --- end of example ---
        #expect(lsn == 1)
        #expect(try Log.openReadOnly(path).read(1) == Array("set x = 1".utf8))
    }

    /// The example above is the README's, line for line (only the path differs), and the
    /// DocC overview shows the same code: a change to one without the others fails here.
    @Test func readmeAndDocCShowTheExampleThisTestRuns() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        func example(in relativePath: String) throws -> [String] {
            let text = try String(contentsOf: root.appendingPathComponent(relativePath), encoding: .utf8)
            let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let start = try #require(lines.firstIndex(of: "let log = try Log.open(\"/var/lib/myservice/wal\", options: .init(createIfMissing: true))"))
            let end = try #require(lines[start...].firstIndex(of: "```"))
            return lines[start..<end].map { $0.trimmingCharacters(in: .whitespaces) }
        }
        let source = try String(contentsOfFile: #filePath, encoding: .utf8)
            .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        let start = try #require(source.firstIndex(of: "// --- README example, with the path replaced ---")) + 1
        let end = try #require(source.firstIndex(of: "// --- end of example ---"))
        let tested = source[start..<end].map {
            $0.replacingOccurrences(of: "Log.open(path,", with: "Log.open(\"/var/lib/myservice/wal\",")
        }
        #expect(try example(in: "README.md") == Array(tested))
        #expect(try example(in: "Sources/LogStore/LogStore.docc/LogStore.md") == Array(tested))
    }
}
