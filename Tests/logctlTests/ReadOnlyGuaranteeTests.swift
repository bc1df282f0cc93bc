import Foundation
import LogStore
import Testing

/// Read-only subcommands take no lock and change no byte, size or time, on a damaged log and
/// on one whose writer is alive and holds the lock; mutating subcommands refuse with exit 4
/// while another writer holds it.
@Suite struct ReadOnlyGuaranteeTests {
    static func readOnlyCommands(_ directory: String) -> [[String]] {
        var commands: [[String]] = [
            ["dump", directory], ["dump", directory, "--json"], ["dump", directory, "--hex", "--from", "2", "--to", "4"],
            ["tail", directory], ["tail", directory, "-n", "3", "--json"], ["stat", directory],
            ["stat", directory, "--json"], ["verify", directory], ["verify", directory, "--json"],
            ["recover", directory, "--remove-side-files"], ["recover", directory, "--json"],
        ]
        for mode in RecoveryMode.allCases { commands.append(["recover", directory, "--mode", mode.rawValue]) }
        return commands
    }

    @Test func readOnlySubcommandsChangeNothingOnADamagedLog() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        let records = try makeLog(directory, (1...40).map { "record \($0)" })
        try damage(directory, records[10], at: 33, mask: 0x40)
        // A side file from an earlier recovery, so that the listing has something to list.
        try Data("kept".utf8).write(to: URL(fileURLWithPath: directory + "/dropped-x-0-20250101T000000Z.bin"))
        let before = try fingerprint(directory)
        for command in Self.readOnlyCommands(directory) {
            let result = try logctl(command)
            #expect(!result.signalled)
            #expect([0, 1, 2].contains(result.status), "\(command): \(result.stderr)")
            #expect(try fingerprint(directory) == before, "\(command) changed the directory")
        }
    }

    @Test func readOnlySubcommandsChangeNothingWhileAWriterHoldsTheLock() throws {
        let scratch = Scratch()
        let directory = scratch.child("log")
        let writer = try LiveWriter(directory)
        writer.write((1...25).map { "live \($0)" }, through: 25)
        #expect(Log.lockHolder(directory) == writer.pid)
        let before = try fingerprint(directory)
        for command in Self.readOnlyCommands(directory) {
            let result = try logctl(command)
            #expect(result.status == 0, "\(command): \(result.stderr)")
            #expect(try fingerprint(directory) == before, "\(command) changed the directory")
        }
        let stat = try logctl(["stat", directory])
        #expect(stat.stdout.contains("process \(writer.pid) holds the lock"))
        let tail = try logctl(["tail", directory, "-n", "2"])
        #expect(tail.stdout.split(separator: "\n").map { $0.split(separator: "\t").last! } == ["live 24", "live 25"])
        let plan = try logctl(["recover", directory])
        #expect(plan.stdout.contains("process \(writer.pid) holds the lock: --apply would be refused (exit 4)"))

        // Every mutating subcommand refuses, with one line naming the holder and what to do.
        for command in [
            ["append", directory], ["recover", directory, "--apply"],
            ["recover", directory, "--mode", "salvage", "--apply"], ["recover", directory, "--remove-side-files", "--apply"],
        ] {
            let refused = try logctl(command, input: "not written\n")
            #expect(refused.status == 4, "\(command): \(refused.stderr)")
            #expect(refused.stderr.split(separator: "\n").count == 1)
            #expect(refused.stderr.contains("locked") && refused.stderr.contains("process \(writer.pid)"))
            #expect(refused.stderr.contains("wait for that writer to exit"))
        }
        #expect(try fingerprint(directory) == before, "a refused writer changed the directory")
        #expect(writer.finish() == 0)
        #expect(try logctl(["recover", directory, "--apply"]).status == 0, "once the writer is gone")
    }
}
