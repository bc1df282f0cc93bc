import Dispatch
import Logging
import SystemPackage

// What a writer tells the operator: metrics (LogMetrics.swift) and log messages through
// `Log.Options.logger`, at the few places where something happens to the log as a whole.
// Nothing is logged per record. Messages are constant; what they are about is metadata
// (`directory` on every message, then `segment`, `offset`, `lsn`, ...).
extension Log {
    /// Now on the monotonic clock, for durations.
    static func monotonicNanoseconds() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

    /// The logger of the log in `directory`: `options.logger` with the directory as metadata.
    static func logger(_ options: Options, directory: String) -> Logger {
        var logger = options.logger
        logger[metadataKey: "directory"] = .string(directory)
        return logger
    }

    /// A background optimization (converting extents, prefaulting) stopped for good at `error`
    /// on `segment`: a warning, or debug for EINVAL (a kernel before 5.14, without
    /// `MADV_POPULATE_WRITE`, nothing to warn about).
    func reportStoppedAhead(_ message: Logger.Message, segment: Segment, offset: Int, error: Errno) {
        logger.log(
            level: error == .invalidArgument ? .debug : .warning, message,
            metadata: ["path": .string(segment.path), "offset": .stringConvertible(offset),
                       "errno": .string(error.description)])
    }

    /// A writer's open failed. Corruption is an error (durable data is damaged, or strict
    /// recovery found a torn tail); other failures are only thrown.
    static func reportOpenFailure(_ error: LogError, directory: String, options: Options) {
        guard error.code == .corruption else { return }
        logger(options, directory: directory).error(
            "refusing to open the log: damage to durable data", metadata: error.logMetadata)
    }

    /// A writer's recovery finished: its metrics, and its outcome at info (error when
    /// durable data was lost), with what was dropped and where it was preserved.
    func reportRecovery(nanoseconds: UInt64) {
        metrics?.reportRecovery(recoveryReport, nanoseconds: nanoseconds)
        let report = recoveryReport
        var metadata: Logger.Metadata = [
            "outcome": .string(report.outcome.rawValue), "mode": .string(report.mode.rawValue),
            "first_lsn": .stringConvertible(report.firstLSN), "last_lsn": .stringConvertible(report.lastLSN),
            "segments": .stringConvertible(report.segmentsKept),
            "duration_ms": .stringConvertible(Double(nanoseconds) / 1e6),
        ]
        if let damage = report.damage {
            metadata["segment"] = .string(damage.segment)
            metadata["offset"] = .stringConvertible(damage.offset)
            metadata["lsn"] = .stringConvertible(damage.lsn)
            metadata["reason"] = .string(damage.reason)
        }
        if !report.droppedRegions.isEmpty {
            metadata["dropped_bytes"] = .stringConvertible(report.droppedBytes)
            metadata["dropped"] = .array(report.droppedRegions.map(\.logMetadata))
        }
        if let lost = report.lostLSNs { metadata["lost_lsns"] = .string("\(lost.lowerBound)...\(lost.upperBound)") }
        if let salvageFile = report.salvageFile { metadata["salvage_file"] = .string(salvageFile) }
        switch report.outcome {
        case .clean: logger.info("opened the log", metadata: metadata)
        case .tornTail: logger.info("recovery dropped a torn tail (no acknowledged record)", metadata: metadata)
        case .corruption: logger.error("recovery dropped damaged durable records", metadata: metadata)
        }
    }

    /// Hands the appends counted so far to the metrics (a commit with `SyncMode.none`, which
    /// runs no sync to do it).
    func reportAppendsSoFar() {
        metrics?.reportAppends(state.withLock { $0.unreportedAppends.take() })
    }

    /// Called by `roll` under the state lock, once the new segment is in `state.segments`.
    func reportRoll(_ state: inout State, into header: SegmentHeader) {
        metrics?.reportAppends(state.unreportedAppends.take())
        metrics?.segmentRolls.increment()
        logger.debug(
            "rolled into a new segment",
            metadata: ["segment": .string(Format.segmentFileName(id: header.segmentID)),
                       "lsn": .stringConvertible(header.baseLSN)])
    }

    /// The first failed sync (or segment installation): the log refuses writes from now on.
    func reportPoisoned(by failure: LogError) {
        metrics?.poisoned.record(1)
        var metadata = failure.logMetadata
        metadata["durable_lsn"] = .stringConvertible(durableLSN)
        logger.critical("a sync failed; the log refuses writes until it is reopened", metadata: metadata)
    }

    /// `close` finished (successfully or not) with the appends not yet reported.
    func reportClose(_ unreported: AppendCounts) {
        metrics?.reportAppends(unreported)
        logger.info("closed the log", metadata: ["durable_lsn": .stringConvertible(durableLSN)])
    }

    /// The log was released without `close`: whatever was acknowledged is durable, and the
    /// next open recovers the rest as after a crash.
    func reportReleasedWithoutClose(_ unreported: AppendCounts) {
        metrics?.reportAppends(unreported)
        logger.debug("log released without close", metadata: ["durable_lsn": .stringConvertible(durableLSN)])
    }
}

extension LogError {
    /// The error as log metadata: `code`, `error` (the message), and `path`, `offset`, `lsn`
    /// and `errno` when known.
    var logMetadata: Logger.Metadata {
        var metadata: Logger.Metadata = ["code": .string(code.rawValue), "error": .string(message)]
        if let path { metadata["path"] = .string(path) }
        if let offset { metadata["offset"] = .stringConvertible(offset) }
        if let lsn { metadata["lsn"] = .stringConvertible(lsn) }
        if let errno { metadata["errno"] = .string("\(errno)") }
        return metadata
    }
}

extension RecoveryReport.DroppedRegion {
    var logMetadata: Logger.MetadataValue {
        var fields: Logger.Metadata = [
            "segment": .string(segment), "offset": .stringConvertible(offset), "length": .stringConvertible(length),
            "reason": .string(reason),
        ]
        if let preservedAt { fields["preserved_at"] = .string(preservedAt) }
        return .dictionary(fields)
    }
}
