import Foundation
import LogStore
import Testing

/// `dump` ranges and formats, and `tail`, through the built binary.
@Suite struct DumpTailTests {
    @Test func dumpHonoursFromToAndLimit() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, (1...30).map { "r\($0)" })
        func lsns(_ arguments: [String]) throws -> [String] {
            let result = try logctl(["dump", directory] + arguments)
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
            return result.stdout.split(separator: "\n").map { String($0.split(separator: "\t")[0]) }
        }
        #expect(try lsns(["--from", "5", "--to", "8"]) == ["5", "6", "7", "8"])
        #expect(try lsns(["--to", "3"]) == ["1", "2", "3"])
        #expect(try lsns(["--from", "28", "--to", "1000"]) == ["28", "29", "30"])
        #expect(try lsns(["--from", "10", "--to", "20", "--limit", "2"]) == ["10", "11"])
        #expect(try lsns(["--from", "31"]) == [])
        #expect(try lsns(["--limit", "0"]) == [])
    }

    @Test func dumpJSONCarriesTheCoreKeysAndTheHeaderFields() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, ["alpha", "beta"])
        let result = try logctl(["dump", directory, "--json", "--from", "2"])
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
        #expect(Set(object.keys) == ["lsn", "segment", "offset", "length", "data", "crc", "durable_lsn", "type", "flags"])
        let log = try Log.openReadOnly(directory)
        let details = try log.recordDetails(2)
        #expect(object["crc"] as? Int == Int(details.crc))
        #expect(object["durable_lsn"] as? Int == 1, "record 2 was written once record 1 was durable")
        #expect(object["type"] as? Int == 1)
        #expect(Data(base64Encoded: object["data"] as! String) == Data("beta".utf8))
        // The CRC is the one over the salt, header bytes 4..<32 and payload (FORMAT.md).
        #expect(UInt32(littleEndian: details.headerBytes.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
                == details.crc)
    }

    @Test func dumpHexShowsHeaderAndPayloadBytesAtTheirFileOffsets() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, ["hello, hexdump world"])
        let result = try logctl(["dump", directory, "--hex"])
        #expect(result.status == 0)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        let details = try Log.openReadOnly(directory).recordDetails(1)
        #expect(lines[0].hasPrefix("LSN 1  00000000000000000001.seg offset \(details.offset)  length 20"))
        // Eight digits, zero-padded: the CRC (random salt) starts with a zero nibble 1 time in 16.
        #expect(lines[0].contains("crc 0x" + String(format: "%08x", details.crc)))
        #expect(lines[2].hasPrefix("  00001000  " + details.headerBytes[0..<8].map { String(format: "%02x", $0) }.joined(separator: " ")))
        #expect(lines.contains { $0.hasPrefix("  00001020  68 65 6c 6c 6f 2c 20 68") && $0.hasSuffix("|hello, hexdump w|") })
        #expect(lines.contains { $0.hasSuffix("|orld|") })
    }

    @Test func dumpTextShowsBinaryPayloadsAsHex() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        let log = try Log.open(directory, options: .init(segmentSize: 1 << 20, createIfMissing: true))
        _ = try log.appendAndCommit([0x00, 0xFF, 0x10])
        try log.close()
        let result = try logctl(["dump", directory])
        #expect(result.stdout.hasSuffix("\t3\t0x00ff10\n"))
    }

    @Test func tailPrintsTheLastRecordsOldestFirst() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, (1...15).map { "t\($0)" })
        func payloads(_ arguments: [String]) throws -> [String] {
            let result = try logctl(["tail", directory] + arguments)
            #expect(result.status == 0, "\(result.stderr)")
            return result.stdout.split(separator: "\n").map { String($0.split(separator: "\t").last!) }
        }
        #expect(try payloads([]) == (6...15).map { "t\($0)" }, "10 by default")
        #expect(try payloads(["-n", "3"]) == ["t13", "t14", "t15"])
        #expect(try payloads(["--lines", "100"]).count == 15)
        #expect(try payloads(["-n", "0"]) == [])
        let json = try logctl(["tail", directory, "-n", "1", "--json"])
        #expect(json.stdout.contains(#""lsn":15"#))
        #expect(try logctl(["tail", directory, "-n", "1", "--hex"]).stdout.hasPrefix("LSN 15 "))
    }

    @Test func badInputToDumpAndTailIsExitThreeWithOneLine() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        try makeLog(directory, ["x"])
        for command in [
            ["dump", directory, "--from", "5", "--to", "2"], ["dump", directory, "--limit", "-1"],
            ["dump", directory, "--json", "--hex"], ["dump", directory, "--from", "minus"], ["dump"],
            ["tail", directory, "-n", "-1"], ["tail", directory, "-n", "ten"], ["tail", directory, "--json", "--hex"],
            ["tail", scratch.child("missing")], ["tail", scratch.path], ["tail"],
        ] {
            let result = try logctl(command)
            #expect(result.status == 3, "\(command): \(result.stderr)")
            #expect(!result.signalled)
            #expect(result.stderr.hasPrefix("logctl: ") && result.stderr.split(separator: "\n").count == 1, "\(command)")
        }
        let missing = try logctl(["tail", scratch.child("missing")])
        #expect(missing.stderr.contains(scratch.child("missing")) && missing.stderr.contains("check the path"))
    }
}
