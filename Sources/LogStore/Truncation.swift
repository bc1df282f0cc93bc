import Synchronization
import SystemPackage

/// What a truncation removes (or, planned, would remove).
public struct TruncationPlan: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// `removeBefore`: whole segments at the front.
        case front = "before"
        /// `removeAfter`: every record after an LSN.
        case suffix = "after"
    }

    public var kind: Kind
    /// The LSN passed to `removeBefore` or `removeAfter`.
    public var lsn: LSN
    /// Segment files deleted, oldest first.
    public var removedSegments: [String]
    /// `removeAfter`: the segment whose records end at `cutOffset` afterwards (its bytes from
    /// there on are zeroed). Nil when nothing is removed.
    public var cutSegment: String?
    public var cutOffset: Int?
    /// Where the cut segment's records end afterwards: `cutOffset`, or past the padding record
    /// written there when the log aligns commits (`Log.CommitAlignment`).
    public var recordsEnd: Int?
    /// The LSNs no longer in the log afterwards (nil when none).
    public var removedLSNs: ClosedRange<LSN>?
    /// `firstLSN` and `writtenLSN` afterwards.
    public var firstLSN: LSN
    public var writtenLSN: LSN

    /// Whether carrying it out changes anything.
    public var isEmpty: Bool { removedLSNs == nil }
}

// Truncation (FORMAT.md §11). Both kinds first make a `TruncationIntent` durable, then carry it
// out, then remove it; a writer's open completes a leftover intent before recovery. A crash at
// any point leaves the log as before the truncation or as after it.
//
// Lock order: `truncationLock`, then `syncEngine`, then `state`. Pending segment installations
// finish first (`installQueue.sync {}`): an installation renaming a file into the directory
// after the truncation unlinked that name would bring a removed segment back.
extension Log {
    // MARK: - Front

    /// Deletes the whole segments at the front of the log that hold only LSNs below `lsn`.
    ///
    /// Segments are the unit: afterwards `firstLSN` is the base LSN of the first segment kept,
    /// which may be below `lsn` (records of that segment below `lsn` stay readable), and the
    /// last segment (where appends go) is never deleted, so `firstLSN` never passes the base of
    /// the active segment. `lsn` above `writtenLSN` is allowed. Nothing to delete is not an
    /// error. Records need not be durable to be removed.
    ///
    /// Files are unlinked, never shortened: a reader in this or another process that has a
    /// segment mapped keeps reading it safely. Crash-safe: a crash leaves `firstLSN` as before
    /// or as after, never in between and never with a hole (FORMAT.md §11). Runs beside appends
    /// and commits (they wait only for the in-memory update, not for the file system).
    ///
    /// Throws `readOnly`, `closed`, `poisoned`, or an I/O error; an I/O error after the intent
    /// became durable poisons the log (reopening completes the truncation).
    public func removeBefore(_ lsn: LSN) throws(LogError) {
        guard !isReadOnly else { throw LogError(.readOnly, "the log was opened read-only", path: directory) }
        try truncationLock.withLock { (_) throws(LogError) in
            installQueue.sync {}
            let planned = try state.withLock { (state) throws(LogError) -> FrontTruncation in
                try state.checkUsable()
                try checkInstalls(state)
                return frontTruncation(state, lsn: lsn)
            }
            let (plan, names) = (planned.plan, planned.names)
            guard let intent = planned.intent else { return }
            do throws(Errno) { try intent.write(directory: directory) } catch {
                throw LogError.system(error, "cannot write the truncation intent; nothing was removed", path: directory)
            }
            // Readers see the new first LSN at once; those that located a record in a removed
            // segment still hold its mapping, which stays valid after the unlink.
            state.withLock { state in
                guard !state.isClosed else { return }
                state.segments.removeFirst(plan.removedSegments.count)
                state.firstLSN = plan.firstLSN
            }
            do throws(LogError) { try intent.carryOut(directory: directory, names: names) } catch {
                poison(error)
                throw error
            }
        }
    }

    /// What `removeBefore(lsn)` would remove now.
    public func planRemoveBefore(_ lsn: LSN) throws(LogError) -> TruncationPlan {
        try state.withLock { (state) throws(LogError) in
            if state.isClosed { throw LogError(.closed, "the log is closed", path: directory) }
            return frontTruncation(state, lsn: lsn).plan
        }
    }

    private typealias FrontTruncation = (plan: TruncationPlan, intent: TruncationIntent?, names: [(UInt64, String)])

    private func frontTruncation(_ state: State, lsn: LSN) -> FrontTruncation {
        var count = 0
        while count + 1 < state.segments.count, state.segments[count + 1].segment.header.baseLSN <= lsn { count += 1 }
        let kept = state.segments[count].segment
        var plan = TruncationPlan(
            kind: .front, lsn: lsn, removedSegments: state.segments[0..<count].map(\.segment.name),
            firstLSN: kept.header.baseLSN, writtenLSN: state.writtenLSN)
        guard count > 0 else { return (plan, nil, []) }
        plan.removedLSNs = state.firstLSN...(kept.header.baseLSN - 1)
        let intent = TruncationIntent(kind: .front, logID: logID, segmentID: kept.id, lsn: kept.header.baseLSN, offset: 0)
        return (plan, intent, state.segments[0...count].map { ($0.segment.id, $0.segment.name) })
    }

    // MARK: - Suffix

    /// Removes every record after `lsn` (Raft conflict resolution): afterwards `writtenLSN ==
    /// lsn`, `durableLSN <= lsn`, and the next append gets LSN `lsn + 1` again.
    ///
    /// `lsn` must be in `firstLSN - 1 ... writtenLSN` (`firstLSN - 1` empties the log; LSNs
    /// below are gone already, and a suffix truncation cannot reach them), else
    /// `lsnOutOfRange`; `lsn == writtenLSN` changes nothing. Durable and not yet durable records
    /// alike are removed. Records up to `lsn` keep their durability: those not durable yet
    /// become durable with the next commit.
    ///
    /// Concurrent callers: appends wait until it is done. A caller still waiting for a removed
    /// record to become durable (`commit`, `appendAndCommit`, `append(_:) async`) gets
    /// `truncated`, never success, even once new records with the same LSNs become durable;
    /// `record`/`read` of a removed LSN throw `lsnOutOfRange`.
    ///
    /// Crash-safe: a crash leaves the log as before or as after, and removed records never
    /// come back, not even in torn pages under records appended later with their LSNs: their
    /// bytes are zeroed and synced, and segments after the cut unlinked and the directory
    /// synced, before this returns (FORMAT.md §11). Throws `readOnly`, `closed`, `poisoned`,
    /// `lsnOutOfRange`, or an I/O error; an I/O error after the intent became durable poisons
    /// the log (reopening completes the truncation).
    public func removeAfter(_ lsn: LSN) throws(LogError) {
        guard !isReadOnly else { throw LogError(.readOnly, "the log was opened read-only", path: directory) }
        indexDeferredSegment(holding: lsn + 1)
        try truncationLock.withLock { (_) throws(LogError) in
            installQueue.sync {}
            // Also after a failure: one after the intent became durable poisons the log, and its
            // waiters must see that.
            defer { wakeEveryWaiter() }
            // No sync runs meanwhile (a sync in flight would move `durableLSN` past the cut).
            try syncEngine.withLock { (_) throws(LogError) in
                try state.withLock { (state) throws(LogError) in
                    try state.checkUsable()
                    try checkInstalls(state)
                    let (plan, intent, names) = try suffixTruncation(state, lsn: lsn)
                    guard let intent else { return }
                    // Followers in other processes wait, and stop trusting what they read, before
                    // any byte changes, even if a crash leaves the carrying out to the next
                    // writer (whose open ends the rewrite). No sync runs meanwhile to publish
                    // anything else.
                    // A cut at or above the durable LSN changes nothing a follower may read.
                    let watermark = lsn < state.durableLSN ? self.watermark : nil
                    watermark?.beginRewrite(durableLSN: min(state.durableLSN, lsn))
                    do throws(Errno) { try intent.write(directory: directory) } catch {
                        // Nothing was removed: followers go on where they were.
                        watermark?.endRewrite(durableLSN: state.durableLSN)
                        throw LogError.system(
                            error, "cannot write the truncation intent; nothing was removed", path: directory)
                    }
                    // The truncation has happened now as far as a crash is concerned: waiters for
                    // removed records must fail from here on.
                    state.suffixCuts.append(lsn)
                    suffixCutCount.store(state.suffixCuts.count, ordering: .sequentiallyConsistent)
                    let index = state.segments.count - plan.removedSegments.count - 1
                    state.segments.removeLast(plan.removedSegments.count)
                    state.segments[index].forgetRecords(from: lsn + 1, cutAt: intent.offset, endingAt: plan.recordsEnd ?? intent.offset)
                    if !plan.removedSegments.isEmpty { state.nextSegmentRequested = false }
                    state.writtenLSN = lsn
                    forgetRequests(above: lsn)
                    state.durableLSN = min(state.durableLSN, lsn)
                    state.writtenCoveredBy = state.syncsStarted + 1
                    durableWatermark.store(state.durableLSN, ordering: .sequentiallyConsistent)
                    defer {
                        // After the unlinks (or a failure, which poisons the log): followers find
                        // their position again.
                        watermark?.endRewrite(durableLSN: state.durableLSN)
                    }
                    do throws(LogError) { try intent.carryOut(directory: directory, names: names) } catch {
                        // `poison` takes the state lock, which is held here.
                        state.poison = state.poison ?? error
                        refusing.store(true, ordering: .sequentiallyConsistent)
                        throw error
                    }
                }
            }
        }
    }

    /// What `removeAfter(lsn)` would remove now; throws `lsnOutOfRange` as it would.
    public func planRemoveAfter(_ lsn: LSN) throws(LogError) -> TruncationPlan {
        indexDeferredSegment(holding: lsn + 1)
        return try state.withLock { (state) throws(LogError) in
            if state.isClosed { throw LogError(.closed, "the log is closed", path: directory) }
            return try suffixTruncation(state, lsn: lsn).plan
        }
    }

    /// Builds the index of the sealed segment holding `lsn` if the open after a clean close
    /// left it unchecked: a pass over the whole segment, done here, before the locks a
    /// truncation holds (which stop appends, commits and reads), not under them.
    private func indexDeferredSegment(holding lsn: LSN) {
        let deferred = state.withLock { state -> DeferredSegmentIndex? in
            guard let index = try? state.segmentIndex(of: lsn, directory: directory) else { return nil }
            return state.segments[index].deferredIndex
        }
        _ = deferred?.index
    }

    private func suffixTruncation(_ state: State, lsn: LSN) throws(LogError)
        -> (plan: TruncationPlan, intent: TruncationIntent?, names: [(UInt64, String)])
    {
        guard lsn >= state.firstLSN - 1, lsn <= state.writtenLSN else {
            throw LogError(
                .lsnOutOfRange,
                "cannot remove the records after LSN \(lsn): it must be in \(state.firstLSN - 1)...\(state.writtenLSN)",
                path: directory, lsn: lsn)
        }
        var plan = TruncationPlan(
            kind: .suffix, lsn: lsn, removedSegments: [], firstLSN: state.firstLSN, writtenLSN: lsn)
        guard lsn < state.writtenLSN else { return (plan, nil, []) }
        // The segment holding `lsn + 1`: every segment but possibly the last holds records.
        var index = state.segments.count - 1
        while state.segments[index].segment.header.baseLSN > lsn + 1 { index -= 1 }
        let cut = state.segments[index]
        // Appends go into the cut segment afterwards, up to `segmentSize`: a sealed file that
        // was shortened from outside (read up to its end, FORMAT.md §10) cannot take them.
        guard cut.segment.readableLength >= cut.segment.size else {
            throw LogError(
                .corruption,
                "cannot remove the records after LSN \(lsn): segment \(cut.segment.name) is shorter than the "
                    + "segment size (\(cut.segment.readableLength) of \(cut.segment.size) bytes), so it was "
                    + "damaged from outside and cannot take appends; nothing was removed",
                path: cut.segment.path, offset: UInt64(cut.segment.readableLength), lsn: lsn)
        }
        let offset = try cut.offset(ofRecord: lsn + 1)
        plan.removedSegments = state.segments[(index + 1)...].map(\.segment.name)
        plan.cutSegment = cut.segment.name
        plan.cutOffset = offset
        plan.removedLSNs = (lsn + 1)...state.writtenLSN
        var intent = TruncationIntent(kind: .suffix, logID: logID, segmentID: cut.segment.id, lsn: lsn, offset: offset)
        (intent.image, plan.recordsEnd) = cutImage(
            cut, offset: offset, lsn: lsn, durableLSN: min(state.durableLSN, lsn))
        return (plan, intent, state.segments[index...].map { ($0.segment.id, $0.segment.name) })
    }

    /// The bytes of the cut segment from the start of the page holding the cut through the end
    /// of the page where the new end of its records lies, as they must be afterwards (see
    /// `TruncationIntent.image`), and that new end. With a `commitAlignment`, a padding record
    /// fills the cut's sector (or page) so that later appends never write a sector (page)
    /// holding acknowledged records again, as after a commit (FORMAT.md §6).
    private func cutImage(_ cut: OpenSegment, offset: Int, lsn: LSN, durableLSN: LSN) -> (image: [UInt8], end: Int) {
        let start = alignDown(offset, to: Format.pageSize)
        let end = paddingTarget(after: offset) ?? offset
        var image = [UInt8](repeating: 0, count: alignUp(end, to: Format.pageSize) - start)
        image.withUnsafeMutableBytes { raw in
            raw.baseAddress!.copyMemory(from: cut.base + start, byteCount: offset - start)
            guard end > offset else { return }
            let record = raw.baseAddress! + (offset - start)
            let length = end - offset - Format.recordHeaderSize
            RecordHeader(crc: 0, length: UInt32(length), lsn: lsn, durableLSN: durableLSN, type: Format.recordTypePadding)
                .storeFields(to: record)
            let crc = RecordHeader.checksum(recordAt: record, payloadLength: length, saltCRC: cut.saltCRC)
            record.storeBytes(of: crc.littleEndian, as: UInt32.self)
        }
        return (image, end)
    }

    /// Refuses when a segment rolled into failed to get its name (the next sync would poison
    /// the log for it): an intent must only name segments whose names are durable.
    private func checkInstalls(_ state: State) throws(LogError) {
        for open in state.segments {
            if let pending = open.pendingInstall, let error = pending.wait() {
                throw LogError.system(
                    error, "installing a new segment failed; the log refuses writes until it is reopened",
                    path: pending.segment.path)
            }
        }
    }

    // MARK: - Waiters and readers of removed records

    /// The error for a caller waiting on `lsn` (or a reader that copied it) if a suffix
    /// truncation since it saw `cutsSeen` truncations removed it; nil otherwise. Cheap when no
    /// truncation happened since (one atomic load).
    func truncationError(_ lsn: LSN, cutsSeen: Int) -> LogError? {
        guard suffixCutCount.load(ordering: .sequentiallyConsistent) != cutsSeen else { return nil }
        return state.withLock { state -> LogError? in
            guard let lowest = state.suffixCuts[cutsSeen...].min(), lowest < lsn else { return nil }
            return LogError(
                .truncated, "removeAfter(\(lowest)) removed this record before it was known to be durable",
                path: directory, lsn: lsn)
        }
    }
}

// How truncation reads and trims a segment's record index: the only places it touches
// `recordOffsets`, so that a change to how the index is kept has one spot to adapt.
extension Log.OpenSegment {
    /// The offset of record `lsn`, which this segment holds; a sealed segment not checked at
    /// open is indexed first, which throws `corruption` if it is damaged before `lsn`.
    fileprivate func offset(ofRecord lsn: LSN) throws(LogError) -> Int {
        if let deferredIndex { return try deferredIndex.cutOffset(before: lsn) }
        return Int(recordOffsets[Int(lsn - segment.header.baseLSN)])
    }

    /// Forgets the records from `lsn` on, which started at `offset`; the segment's records
    /// (and the padding after the cut) then end at `end`. A deferred segment (indexed by
    /// `offset(ofRecord:)` already) becomes an ordinary one: it is the active segment now.
    fileprivate mutating func forgetRecords(from lsn: LSN, cutAt offset: Int, endingAt end: Int) {
        let kept = Int(lsn - segment.header.baseLSN)
        if let deferredIndex {
            recordOffsets = Array(deferredIndex.index.offsets.prefix(kept))
            self.deferredIndex = nil
        } else {
            recordOffsets.removeSubrange(kept...)
        }
        self.end = end
        syncedEnd = min(syncedEnd, offset)
        writeBehindEnd = min(writeBehindEnd, offset)
    }
}

// MARK: - Opening a log with a leftover intent

extension LogScanner.Result {
    /// The scan as the log looks once the suffix truncation to `lsn` is carried out: what a
    /// read-only open shows while a truncation intent is outstanding (a writer carries it out
    /// before scanning). Segments after the cut are already left out by the caller.
    func truncated(after lsn: LSN) -> LogScanner.Result {
        guard nextLSN - 1 > lsn else { return self }
        var result = self
        guard let index = kept.lastIndex(where: { $0.segment.header.baseLSN <= lsn + 1 }) else { return self }
        var cut = kept[index]
        let keep = Int(lsn + 1 - cut.segment.header.baseLSN)
        cut.end = Int(cut.recordOffsets[keep])
        cut.recordOffsets.removeSubrange(keep...)
        cut.endsWithCloseMarker = false
        result.kept = Array(kept[0..<index]) + [cut]
        result.orphans = []
        result.orphanExtents = []
        result.nextLSN = lsn + 1
        result.outcome = .clean
        result.damage = nil
        result.tailNonzeroEnd = cut.end
        result.evidence = LogScanner.Evidence(nonzeroEnd: cut.end)
        result.provenDurableLSN = min(provenDurableLSN, lsn)
        result.salvageable = []
        return result
    }
}

extension TruncationIntent {
    /// The segments a log shows while this intent is outstanding (read-only opens).
    func visibleSegments(_ segments: [Segment]) -> [Segment] {
        switch kind {
        case .front: segments.filter { $0.id >= segmentID }
        case .suffix: segments.filter { $0.id <= segmentID }
        }
    }
}
