import Foundation
@testable import LogStore
import Testing

/// Seeded random-bytes fuzzing of everything that parses segment files: random, garbled and
/// truncated segment files and headers (some with their checksums recomputed, so that the
/// field checks behind them are reached) go through `Log.openReadOnly` (and reading every
/// record), `Log.verify`, and for a share of them a writer's `Log.open` with point-in-time or
/// salvage recovery. None may crash; each either opens or throws a `LogError`, and what opens
/// must be consistent.
///
/// Knobs: `LOGSTORE_FUZZ_SCALE=<n>` runs n × 1,000 inputs (`=1000`: one million; about 10 ms
/// an input in a debug build), `LOGSTORE_FUZZ_COUNT=<n>` exactly n;
/// `LOGSTORE_FUZZ_SEED=<seed>` replays a run, `LOGSTORE_FUZZ_INPUT=<i>` only its input i.
@Suite struct SegmentParserFuzzTests {
    static let inputsPerScale = 1_000

    /// Templates: a one-segment log (close marker at the end) and a two-segment log whose
    /// second segment was rolled into and left without a clean close.
    static func templates() throws -> [[FileImage]] {
        let work = ScratchDirectory("fuzz-template")
        var result: [[FileImage]] = []
        for (index, count) in [120, 900].enumerated() {
            let directory = work.child("log\(index)")
            let log = try Log.open(directory, options: .init(segmentSize: 1 << 20, createIfMissing: true))
            var generator = SplitMix64(seed: UInt64(index + 1))
            for record in 0..<count {
                let length = record % 7 == 0 || index == 1 ? Int(generator.next() % 3000) : Int(generator.next() % 200)
                _ = try log.append(seededBytes(length, seed: generator.next()))
                if record % 5 == 0 { _ = try log.commit() }
            }
            _ = try log.commit()
            if index == 0 { try log.close() }
            let names = try FileManager.default.contentsOfDirectory(atPath: directory)
                .filter { $0.hasSuffix(".seg") }.sorted()
            result.append(try names.map { try FileImage(contentsOf: directory + "/" + $0) })
            if index != 0 { try log.close() }
        }
        #expect(result[1].count == 2, "the second template rolls into a second segment")
        return result
    }

    @Test func randomSegmentFilesNeverCrashAndOpenConsistently() throws {
        let environment = ProcessInfo.processInfo.environment
        let scale = environment["LOGSTORE_FUZZ_SCALE"].flatMap { Int($0) } ?? 1
        var system = SystemRandomNumberGenerator()
        var seed: UInt64 = system.next()
        if let text = environment["LOGSTORE_FUZZ_SEED"] {
            let parsed = text.lowercased().hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
            guard let parsed else {
                Issue.record("LOGSTORE_FUZZ_SEED=\(text) is not a number")
                return
            }
            seed = parsed
        }
        let only = environment["LOGSTORE_FUZZ_INPUT"].flatMap { Int($0) }
        let count = environment["LOGSTORE_FUZZ_COUNT"].flatMap { Int($0) } ?? scale * Self.inputsPerScale
        print("segment parser fuzz: \(count) inputs, seed 0x\(String(seed, radix: 16)) "
              + "(replay with LOGSTORE_FUZZ_SEED=0x\(String(seed, radix: 16)), one input with LOGSTORE_FUZZ_INPUT=i)")
        let templates = try Self.templates()
        let work = ScratchDirectory("fuzz")
        let directory = work.child("log")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var tally = Tally()
        let started = ContinuousClock.now
        for index in 0..<count where only == nil || only == index {
            var random = SplitMix64(seed: seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15))
            var files = templates[Int(random.next() % 2)]
            let kind = Self.mutate(&files, random: &random)
            for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
                try FileManager.default.removeItem(atPath: directory + "/" + name)
            }
            for (position, image) in files.enumerated() {
                try writeSparse(image, to: directory + "/" + Format.segmentFileName(id: UInt64(position + 1)))
            }
            let failures = Self.check(directory, writer: index % 8 == 0, random: &random, tally: &tally)
            for failure in failures {
                Issue.record("input \(index) (mutation \(kind), seed 0x\(String(seed, radix: 16))): \(failure)")
            }
            if !failures.isEmpty { break }
        }
        print("segment parser fuzz: \(tally.inputs) inputs in \(ContinuousClock.now - started): \(tally.opened) opened "
              + "read-only (\(tally.clean) clean, \(tally.torn) torn, \(tally.corrupt) corrupt), \(tally.refused) refused, "
              + "\(tally.problems) problems listed by verify, \(tally.writers) writer opens; \(tally.readTime) \(tally.verifyTime) \(tally.writerTime)")
    }

    struct Tally {
        var inputs = 0, opened = 0, clean = 0, torn = 0, corrupt = 0, refused = 0, problems = 0, writers = 0
        var readTime = Duration.zero, verifyTime = Duration.zero, writerTime = Duration.zero
    }

    /// Damages `files` in one of several ways; returns which.
    static func mutate(_ files: inout [FileImage], random: inout SplitMix64) -> String {
        func pick(_ bound: Int) -> Int { Int(random.next() % UInt64(max(bound, 1))) }
        let target = pick(files.count)
        var bytes = files[target].bytes
        let used = max(files[target].nonzeroEnd, Format.segmentHeaderSize + 64)
        let kind: String
        switch pick(9) {
        case 0:
            kind = "random file"
            bytes = seededBytes(pick(2 * Format.segmentHeaderSize), seed: random.next())
            if pick(2) == 0, bytes.count >= 8 {  // past the magic check
                withUnsafeBytes(of: Format.magic.littleEndian) { bytes.replaceSubrange(0..<8, with: $0) }
            }
        case 1:
            kind = "truncated"
            bytes = Array(bytes.prefix(pick(used + 64)))
        case 2:
            kind = "flipped bytes"
            for _ in 0...pick(40) { bytes[pick(used)] ^= UInt8(1 + pick(255)) }
        case 3:
            kind = "random span"
            let start = pick(used)
            let span = seededBytes(min(1 + pick(600), bytes.count - start), seed: random.next())
            bytes.replaceSubrange(start..<(start + span.count), with: span)
        case 4:
            kind = "header field, checksum fixed"
            let field = [8, 12, 16, 24, 32, 40, 48, 56, 64, 72][pick(10)]
            let value: UInt64 = [0, 1, 2, UInt64.max, UInt64(Int64.max), random.next(), UInt64(1 << 20), UInt64(1 << 32)][pick(8)]
            withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange(field..<(field + 8), with: $0) }
            fixHeaderChecksum(&bytes)
        case 5:
            kind = "record field, checksum fixed"
            fuzzRecordHeader(&bytes, random: &random)
        case 6:
            kind = "zeroed span"
            let start = pick(used)
            let end = min(bytes.count, start + 1 + pick(2000))
            bytes.replaceSubrange(start..<end, with: repeatElement(0, count: end - start))
        case 7:
            kind = "segments reordered or dropped"
            if files.count > 1 {
                files.swapAt(0, 1)
                if pick(2) == 0 { files.removeFirst() }
                return kind
            }
            files.append(files[0])
            return kind
        default:
            kind = "garbage after the records"
            let start = files[target].nonzeroEnd + pick(64)
            let span = seededBytes(min(1 + pick(300), bytes.count - start), seed: random.next())
            bytes.replaceSubrange(start..<(start + span.count), with: span)
        }
        files[target] = FileImage(bytes)
        return kind
    }

    static func fixHeaderChecksum(_ bytes: inout [UInt8]) {
        guard bytes.count >= Format.segmentHeaderUsedBytes else { return }
        let crc = bytes.withUnsafeBytes {
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<Format.segmentHeaderCRCOffset]))
        }
        withUnsafeBytes(of: crc.littleEndian) {
            bytes.replaceSubrange(Format.segmentHeaderCRCOffset..<(Format.segmentHeaderCRCOffset + 4), with: $0)
        }
    }

    /// Rewrites a field of one record header (length, LSN, durable LSN, type, flags) and
    /// recomputes its checksum where the new length lets it, so the checks behind it run.
    static func fuzzRecordHeader(_ bytes: inout [UInt8], random: inout SplitMix64) {
        guard bytes.count >= Format.segmentHeaderSize + Format.recordHeaderSize else { return }
        var offsets: [Int] = []
        var position = Format.segmentHeaderSize
        bytes.withUnsafeBytes { raw in
            while position + Format.recordHeaderSize <= raw.count, !RecordHeader.isAllZero(raw.baseAddress! + position) {
                offsets.append(position)
                position += RecordHeader.load(from: raw.baseAddress! + position).footprint
            }
        }
        guard let offset = offsets.isEmpty ? nil : offsets[Int(random.next() % UInt64(offsets.count))] else { return }
        let choices: [(Int, Int)] = [(4, 4), (8, 8), (16, 8), (24, 2), (26, 2), (28, 4)]
        let (field, width) = choices[Int(random.next() % UInt64(choices.count))]
        let value: UInt64 = [0, 1, 2, 3, UInt64.max, random.next(), random.next() % 5000][Int(random.next() % 7)]
        withUnsafeBytes(of: value.littleEndian) { bytes.replaceSubrange((offset + field)..<(offset + field + width), with: $0[0..<width]) }
        let salt = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 56, as: UInt64.self) }
        bytes.withUnsafeMutableBytes { raw in
            let header = RecordHeader.load(from: raw.baseAddress! + offset)
            guard offset + Format.recordHeaderSize + Int(header.length) <= raw.count else { return }
            let crc = RecordHeader.checksum(
                recordAt: raw.baseAddress! + offset, payloadLength: Int(header.length),
                saltCRC: RecordHeader.saltCRC(UInt64(littleEndian: salt)))
            raw.storeBytes(of: crc.littleEndian, toByteOffset: offset, as: UInt32.self)
        }
    }

    /// Runs the parsers over the log in `directory`; returns the invariants broken.
    static func check(_ directory: String, writer: Bool, random: inout SplitMix64, tally: inout Tally) -> [String] {
        tally.inputs += 1
        var failures: [String] = []
        let expectedCodes: Set<LogError.Code> = [.notALog, .corruption, .unsupportedVersion]
        var report: RecoveryReport?
        var clock = ContinuousClock.now
        defer { tally.writerTime += ContinuousClock.now - clock }
        do {
            let log = try Log.openReadOnly(directory)
            report = log.recoveryReport
            var next = log.firstLSN
            var records = log.records()
            func nextRecord() -> Log.Record? {
                do { return try records.next() } catch {
                    failures.append("records() threw \(error) at LSN \(next) of a log that opened")
                    return nil
                }
            }
            while let record = nextRecord() {
                if record.lsn != next { failures.append("records() gave LSN \(record.lsn) where \(next) was expected") }
                next = record.lsn + 1
            }
            if next != log.writtenLSN + 1 { failures.append("records() stopped at \(next - 1), not \(log.writtenLSN)") }
            if log.writtenLSN >= log.firstLSN {
                let details = try log.recordDetails(log.writtenLSN)
                if details.payload != (try log.read(log.writtenLSN)) { failures.append("recordDetails payload differs") }
            }
            try log.close()
            tally.opened += 1
        } catch {
            if !expectedCodes.contains(error.code) { failures.append("openReadOnly threw \(error)") }
            tally.refused += 1
        }
        tally.readTime += ContinuousClock.now - clock
        clock = ContinuousClock.now
        do {
            let verification = try Log.verify(directory)
            tally.problems += verification.problems.count
            if let report {
                switch report.outcome {
                case .clean: tally.clean += 1
                case .tornTail: tally.torn += 1
                case .corruption: tally.corrupt += 1
                }
                if report.outcome != .clean && verification.problems.isEmpty {
                    failures.append("recovery found \(report.outcome) at \(report.damage.map { "\($0)" } ?? "?"), verify found no problem")
                }
                if verification.recordsChecked < report.recordsKept {
                    failures.append("verify checked \(verification.recordsChecked) records, recovery keeps \(report.recordsKept)")
                }
            } else if verification.problems.isEmpty {
                failures.append("openReadOnly refused the log, verify found no problem")
            }
        } catch {
            if !expectedCodes.contains(error.code) { failures.append("verify threw \(error)") }
        }
        tally.verifyTime += ContinuousClock.now - clock
        clock = ContinuousClock.now
        guard writer, report != nil else { return failures }
        tally.writers += 1
        let mode: RecoveryMode = random.next() % 2 == 0 ? .pointInTime : .salvage
        do {
            let log = try Log.open(directory, options: .init(recovery: mode))
            try log.close()
            let reopened = try Log.openReadOnly(directory)
            if reopened.recoveryReport.outcome != .clean {
                failures.append("after \(mode) recovery the log is \(reopened.recoveryReport.outcome), not clean")
            }
            if reopened.writtenLSN != report!.lastLSN {
                failures.append("\(mode) recovery kept through LSN \(reopened.writtenLSN), planned \(report!.lastLSN)")
            }
            try reopened.close()
        } catch {
            failures.append("\(mode) writer open of a log read-only opened threw \(error)")
        }
        return failures
    }
}
