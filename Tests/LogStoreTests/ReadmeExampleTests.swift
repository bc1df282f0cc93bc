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
}
