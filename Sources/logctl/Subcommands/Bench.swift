import ArgumentParser
import Foundation
import LogStore

extension LogCtl {
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Measure durable append throughput and commit latency against raw fdatasync.",
            discussion: """
                Workloads:
                  durable-serial      one writer; each record durable before the next
                  durable-concurrent  W writer threads (each W in --writers), each
                                      appending one record and waiting until it is
                                      durable, for --duration seconds
                  durable-concurrent-async
                                      the same with W Swift tasks instead of threads,
                                      each `try await log.append(_:)` in a loop (the
                                      async API: a task waiting for its sync holds no
                                      thread)
                  bulk                one writer appends every record, then one commit

                Each workload also runs a raw baseline on the same disk (mode raw-fdatasync):
                pwrite into a preallocated file and fdatasync per record, one writer (for bulk,
                every pwrite, then one fdatasync). Each row's records/s is shown as a ratio to
                its workload's baseline. MB/s counts payload bytes; latencies are per commit.

                The durable-serial rows (the baseline and each mode) take turns: --rounds
                rounds of --records/--rounds records each, in an order rotated every round,
                each row keeping its log (or file) open throughout. A shared disk's latency
                drifts from one second to the next, and rows run one after another would
                compare different seconds of it; taking turns spreads each row over the same
                stretch of time. Such a row's seconds are the sum of its own turns.

                Each row gets a fresh log (or raw file) in a directory of its own, removed
                after the row (durable-serial's, after the last round): inside --dir when
                given (--dir and anything else in it are left alone), else inside a new
                directory under /tmp, removed at the end.

                --json prints one object per row: mode, workload, writers, size, records (made
                durable), seconds (wall time), records_per_s, p50_us, p99_us and p999_us (null
                for bulk).

                Exit 3: bad arguments, or a --mode this build does not know. Exit 5: a mode
                failed (io_uring unavailable, say); its rows were skipped, the others ran.

                Example:
                  logctl bench --workload durable-serial,bulk --records 5000
                """)

        @Option(help: "An existing directory on the disk to measure (default: a new one under /tmp).")
        var dir: String?

        @Option(help: "Sync modes to measure, comma-separated (default: msync,uring,fdatasync, those this build has).")
        var mode: String?

        @Option(help: "Workloads, comma-separated: durable-serial, durable-concurrent, durable-concurrent-async, bulk.")
        var workload = BenchWorkload.allCases.map(\.rawValue).joined(separator: ",")

        @Option(help: "Writer counts (threads or tasks) for the durable-concurrent workloads, comma-separated.")
        var writers = "1,4,16,64"

        @Option(help: "Payload bytes per record.")
        var size = 128

        @Option(help: "Records for durable-serial and bulk (default: 20000 and 1000000).")
        var records: Int?

        @Option(help: "Seconds each durable-concurrent(-async) row runs.")
        var duration = 5.0

        @Option(help: "Segment size of the benchmarked logs (suffixes K, M, G allowed).")
        var segmentSize = "64MiB"

        @Option(help: "Rounds that the durable-serial rows take turns in (default: twice the rows, so that each takes each place in the order twice; 1: each row whole, one after another).")
        var rounds: Int?

        @OptionGroup var format: OutputFormat

        static let defaultModes = ["msync", "uring", "fdatasync"]
        static let maxWriters = 4096

        /// The arguments, checked and parsed (validate and run both need them).
        struct Plan {
            var modes: [Log.SyncMode]
            var workloads: [BenchWorkload]
            var writers: [Int]
            var serialRecords: Int
            var bulkRecords: Int
            var segmentSize: Int
        }

        func validate() throws { _ = try plan() }

        func plan() throws -> Plan {
            let modes: [Log.SyncMode]
            if let mode {
                modes = try Self.list(mode, option: "--mode").map { name in
                    guard let parsed = Log.SyncMode(rawValue: name) else {
                        let known = Log.SyncMode.allCases.filter { $0 != .none }.map(\.rawValue)
                        throw ValidationError(
                            "unknown --mode '\(name)'; this build knows \(known.joined(separator: ", ")) "
                                + "(the raw-fdatasync baseline always runs)")
                    }
                    guard parsed != .none else {
                        throw ValidationError("--mode none makes nothing durable, so there is nothing to measure")
                    }
                    return parsed
                }
            } else {
                // A build without io_uring support still benchmarks what it has by default; naming
                // uring explicitly is what gets an error.
                modes = Self.defaultModes.compactMap(Log.SyncMode.init(rawValue:))
            }
            let workloads = try Self.list(workload, option: "--workload").map { name in
                guard let parsed = BenchWorkload(rawValue: name) else {
                    throw ValidationError(
                        "unknown --workload '\(name)'; choose from "
                            + BenchWorkload.allCases.map(\.rawValue).joined(separator: ", "))
                }
                return parsed
            }
            let writerCounts = try Self.list(writers, option: "--writers").map { text in
                guard let count = Int(text), count >= 1, count <= Self.maxWriters else {
                    throw ValidationError("--writers '\(text)' must be a whole number from 1 to \(Self.maxWriters)")
                }
                return count
            }
            guard size >= 0 else { throw ValidationError("--size must be 0 or more bytes") }
            if let records, records < 1 { throw ValidationError("--records must be at least 1") }
            guard duration.isFinite, duration > 0, duration <= 1_000_000 else {
                throw ValidationError("--duration must be a positive number of seconds")
            }
            if let rounds, rounds < 1 || rounds > 1_000 { throw ValidationError("--rounds must be from 1 to 1000") }
            guard let segmentBytes = parseByteCount(segmentSize) else {
                throw ValidationError("--segment-size '\(segmentSize)' is not a byte count")
            }
            let plan = Plan(
                modes: modes, workloads: workloads, writers: writerCounts, serialRecords: records ?? 20_000,
                bulkRecords: records ?? 1_000_000, segmentSize: segmentBytes)
            // The raw baseline's file holds every record; its size must be a number.
            for count in [plan.serialRecords, plan.bulkRecords]
            where count.multipliedReportingOverflow(by: size).overflow {
                throw ValidationError("--records \(count) of --size \(size) bytes is more than a file can hold")
            }
            return plan
        }

        /// Splits "a,b,c", dropping repeats but keeping the order given.
        static func list(_ text: String, option: String) throws -> [String] {
            var items: [String] = []
            for item in text.split(separator: ",", omittingEmptySubsequences: false) {
                let name = item.trimmingCharacters(in: .whitespaces)
                guard !name.isEmpty else { throw ValidationError("\(option) '\(text)' has an empty item") }
                if !items.contains(name) { items.append(name) }
            }
            return items
        }

        func run() throws {
            let plan = try plan()
            if mode == nil {
                for name in Self.defaultModes where Log.SyncMode(rawValue: name) == nil {
                    warn("bench: this build has no \(name) sync mode; measuring the others")
                }
            }
            let place = try BenchDirectory(under: dir)
            let cleanup = place.removeOnSignal()
            defer {
                cleanup.cancel()
                place.finish()
            }
            // The largest record depends on the segment size, and only the library knows the
            // format; a throwaway log answers (and rejects a bad --segment-size) before any timing.
            let maxRecordSize: Int
            do {
                maxRecordSize = try place.withRowDirectory("probe") { directory in
                    let log = try Log.open(
                        directory, options: Log.Options(segmentSize: plan.segmentSize, createIfMissing: true))
                    defer { try? log.close() }
                    return log.maxRecordSize
                }
            } catch let error as LogError where error.code == .invalidArgument {
                throw ValidationError("--segment-size: \(error.message)")
            }
            guard size <= maxRecordSize else {
                throw ValidationError(
                    "--size \(size) exceeds the \(maxRecordSize)-byte maximum record of "
                        + "\(humanBytes(plan.segmentSize)) segments")
            }

            // Each workload's baseline first, so that every later row can show its ratio at once.
            var rows: [BenchRow] = []
            for workload in plan.workloads {
                let records = workload == .bulk ? plan.bulkRecords : plan.serialRecords
                rows.append(BenchRow(sync: nil, workload: workload, writers: 1, records: records))
                for sync in plan.modes {
                    for writers in workload.isConcurrent ? plan.writers : [1] {
                        rows.append(BenchRow(sync: sync, workload: workload, writers: writers, records: records))
                    }
                }
            }

            let runner = BenchRunner(size: size)
            let output = BenchOutput(
                json: format.json, size: size, progress: isatty(1) == 1 && isatty(2) == 1)
            defer { output.clearProgress() }
            output.start(directory: place.path, segmentSize: plan.segmentSize)
            var failedModes: Set<String> = []
            var results: [BenchResult] = []
            func report(_ row: BenchRow, _ measurement: BenchMeasurement) {
                let baseline = results.first { $0.row.mode == BenchRow.rawMode && $0.row.workload == row.workload }
                let result = BenchResult(row: row, size: size, measurement: measurement)
                results.append(result)
                output.row(result, baseline: baseline)
            }
            var index = 0
            while index < rows.count {
                let row = rows[index]
                if row.workload == .durableSerial, rounds != 1 {
                    // The baseline and the modes' rows are consecutive, the baseline first.
                    let group = Array(rows[index...].prefix { $0.workload == .durableSerial })
                    let measured = try measureInRounds(
                        group, place: place, runner: runner, plan: plan, output: output, failedModes: &failedModes
                    ) { round, rounds in
                        output.progress("[\(index + 1)-\(index + group.count)/\(rows.count)] durable-serial, round \(round)/\(rounds)")
                    }
                    output.clearProgress()
                    for (row, measurement) in zip(group, measured) {
                        if let measurement { report(row, measurement) }
                    }
                    index += group.count
                    continue
                }
                index += 1
                if failedModes.contains(row.mode) { continue }
                output.progress("[\(index)/\(rows.count)] \(row.label)")
                let measurement: BenchMeasurement
                do {
                    measurement = try place.withRowDirectory(row.directoryName) { directory in
                        try measure(row, in: directory, runner: runner, plan: plan)
                    }
                } catch let error as LogError where row.sync != nil {
                    // One mode failing (io_uring unavailable, say) says nothing about the others.
                    output.clearProgress()
                    warn("bench: mode \(row.mode) failed, skipping its rows: \(error)")
                    failedModes.insert(row.mode)
                    continue
                }
                report(row, measurement)
            }
            output.finish(results)
            if !failedModes.isEmpty { throw ExitCode(5) }
        }

        /// Opens the row's log (outside the timing), runs its loop, and closes the log.
        func measure(_ row: BenchRow, in directory: String, runner: BenchRunner, plan: Plan) throws
            -> BenchMeasurement
        {
            guard let sync = row.sync else {
                let path = directory + "/raw"
                switch row.workload {
                case .durableSerial: return try runner.rawSerial(path: path, records: row.records)
                case .durableConcurrent, .durableConcurrentAsync:
                    return try runner.rawTimed(path: path, duration: duration)
                case .bulk: return try runner.rawBulk(path: path, records: row.records)
                }
            }
            let log = try Log.open(
                directory, options: Log.Options(segmentSize: plan.segmentSize, createIfMissing: true, sync: sync))
            let measurement: BenchMeasurement
            do {
                switch row.workload {
                case .durableSerial: measurement = try runner.durableSerial(log, records: row.records)
                case .durableConcurrent:
                    measurement = try runner.durableConcurrent(log, writers: row.writers, duration: duration)
                case .durableConcurrentAsync:
                    measurement = try runner.durableConcurrentAsync(log, writers: row.writers, duration: duration)
                case .bulk: measurement = try runner.bulk(log, records: row.records)
                }
            } catch {
                try? log.close()
                throw error
            }
            try log.close()
            return measurement
        }
    }
}
