import Foundation
import LogStore
import Testing

/// Help, completion scripts, colours and exit codes as a person at a terminal meets them.
@Suite struct TerminalOutputTests {
    static let subcommands = ["append", "dump", "tail", "stat", "verify", "recover", "demo", "bench", "crashtest"]

    @Test func everySubcommandsHelpHasAnExample() throws {
        for subcommand in Self.subcommands {
            let help = try logctl(["help", subcommand])
            #expect(help.status == 0, "\(subcommand)")
            #expect(help.stdout.contains("Example"), "\(subcommand) help has no example")
            #expect(help.stdout.contains("logctl \(subcommand) "), "\(subcommand) example does not run it")
        }
        let root = try logctl(["help"])
        #expect(root.status == 0)
        for code in ["0  success", "1  verify: only a torn tail", "2  corruption", "3  not a log", "4  the log is locked",
                     "5  any other I/O failure"] {
            #expect(root.stdout.contains(code), "logctl help does not document exit \(code)")
        }
        #expect(root.stdout.contains("--generate-completion-script"))
    }

    @Test(arguments: ["bash", "zsh", "fish"])
    func completionScriptsAreGenerated(shell: String) throws {
        let result = try logctl(["--generate-completion-script", shell])
        #expect(result.status == 0)
        for subcommand in ["recover", "tail", "verify"] { #expect(result.stdout.contains(subcommand), "\(shell)") }
        #expect(result.stdout.contains("remove-side-files"))
        if shell == "bash" { #expect(result.stdout.hasPrefix("#!/bin/bash")) }
        if shell == "zsh" { #expect(result.stdout.hasPrefix("#compdef logctl")) }
        #expect(try logctl(["--generate-completion-script", "tcsh"]).status == 3)
    }

    func damagedLog(_ scratch: Scratch) throws -> String {
        let directory = scratch.child("log")
        let records = try makeLog(directory, (1...20).map { "c\($0)" })
        try damage(directory, records[5], at: 33, mask: 2)
        return directory
    }

    @Test(.enabled(if: scriptAvailable))
    func coloursOnlyOnATerminalAndNeverWithNoColor() throws {
        let scratch = Scratch()
        let directory = try damagedLog(scratch)
        let escape = "\u{1B}["
        for command in [["verify", directory], ["recover", directory, "--mode", "salvage"], ["stat", directory]] {
            let terminal = try logctlOnTerminal(command)
            #expect(terminal.stdout.contains(escape + "31m"), "\(command[0]) on a terminal has no red: \(terminal.stdout)")
            let noColor = try logctlOnTerminal(command, environment: ["NO_COLOR": "1"])
            #expect(!noColor.stdout.contains(escape), "\(command[0]) with NO_COLOR")
            #expect(noColor.status == terminal.status)
            let piped = try logctl(command)
            #expect(!piped.stdout.contains(escape), "\(command[0]) into a pipe")
        }
    }

    @Test func statShowsSegmentsAlignedWithHumanSizes() throws {
        let scratch = Scratch()
        let directory = try damagedLog(scratch)
        try Data("x".utf8).write(to: URL(fileURLWithPath: directory + "/dropped-x-0-20250101T000000Z.bin"))
        let stat = try logctl(["stat", directory])
        #expect(stat.status == 0)
        let lines = stat.stdout.split(separator: "\n").map(String.init)
        #expect(lines.contains("state      corruption; no valid record for LSN 6; salvageable past the damage: LSN 7...20"))
        #expect(lines.contains("side files 1: dropped-x-0-20250101T000000Z.bin"))
        let header = try #require(lines.first { $0.hasPrefix("segment ") })
        let row = try #require(lines.first { $0.hasPrefix("00000000000000000001.seg") })
        #expect(header.count == row.count, "columns aligned")
        #expect(row.hasSuffix("1.0 MiB"))
    }

    /// Every exit code through the binary (2 and 4 in their own tests too).
    @Test func everyExitCodeIsReachable() throws {
        let scratch = Scratch()
        let clean = scratch.child("clean")
        #expect(try logctl(["append", clean, "--create", "--segment-size", "1M"], input: "a\n").status == 0)
        #expect(try logctl(["verify", clean]).status == 0)
        let torn = scratch.child("torn")
        try tornLog(torn, records: 2)
        #expect(try logctl(["verify", torn]).status == 1)
        #expect(try logctl(["verify", try damagedLog(scratch)]).status == 2)
        #expect(try logctl(["stat", scratch.child("nothing")]).status == 3)
        let holder = try Log.open(clean)
        #expect(try logctl(["recover", clean, "--apply"]).status == 4)
        try holder.close()
        // 5: a record larger than a segment can hold.
        let huge = try logctl(["append", clean], input: String(repeating: "h", count: 1 << 20) + "\n")
        #expect(huge.status == 5, "\(huge.stderr)")
        #expect(huge.stderr.split(separator: "\n").count == 1)
    }
}
