import SystemPackage

/// Where a `LogFollower` is in the log and what it knows is durable: a read-only walk over the
/// segment files, one mapped at a time, that never passes the durable LSN.
struct FollowerPosition {
    /// What a follower that found nothing sleeps on: the watermark's epoch, read before the
    /// durable LSN it checked (nil watermark: poll).
    struct Wait {
        let watermark: WatermarkFile?
        let epoch: UInt32
    }

    /// What a segment holds at an offset, for a reader expecting a given LSN there.
    enum Slot {
        case data(RecordHeader)
        /// A close marker or padding record: consumes no LSN.
        case marker(RecordHeader)
        /// Zeros, or no room for a record header.
        case end
        case invalid(String)
    }

    /// The look-ahead of a follower without a watermark file: parses past the position for the
    /// durable LSNs that records and segment headers claim (FORMAT.md §8.2).
    struct ClaimScan {
        var segment: Segment
        var offset: Int
        var nextLSN: LSN
        var proven: LSN
        /// The last record parsed and its CRC: if it changed, a writer's recovery rewrote the
        /// tail and the scan starts again from the position.
        var last: (offset: Int, crc: UInt32)?
        /// The last record parsed in each earlier segment the scan went through: a
        /// `removeAfter` may cut one of those and unlink the rest, leaving `last` (in a file now
        /// unlinked, still mapped) unchanged.
        var passed: [(segment: Segment, offset: Int, crc: UInt32)] = []
    }

    let directory: String
    let logID: LogID
    /// The segment holding the next record, mapped read-only.
    var segment: Segment
    var offset = Format.segmentHeaderSize
    /// The LSN of the next data record at `offset`.
    var position: LSN
    /// Records before this LSN are skipped, not returned.
    let startLSN: LSN
    /// The highest LSN returned.
    var returned: LSN = 0
    /// The CRC of the record with LSN `returned`: after a rewrite, a record with another CRC
    /// there (or none) means records this follower returned were removed.
    var returnedCRC: UInt32?
    var durableLSN: LSN = 0
    var watermark: WatermarkFile?
    var watermarkCheckedAt: ContinuousClock.Instant?
    /// The watermark's rewrite count when the position was last known to be valid; nil before
    /// the first look at a watermark (FORMAT.md §12.3).
    var rewritesSeen: UInt64?
    var claims: ClaimScan

    init(directory: String, logID: LogID, segment: Segment, startLSN: LSN) {
        self.directory = directory
        self.logID = logID
        self.segment = segment
        self.startLSN = startLSN
        position = segment.header.baseLSN
        claims = ClaimScan(
            segment: segment, offset: Format.segmentHeaderSize, nextLSN: segment.header.baseLSN,
            proven: segment.header.durableLSN)
        watermark = WatermarkFile.openForFollower(directory: directory, logID: logID)
        watermarkCheckedAt = .now
        // Left nil: the first call finds the position again once it has read `rewrites` and
        // the durable LSN, in case a truncation was under way while this segment was chosen.
    }

    /// The LSN the next returned record will have.
    var nextLSN: LSN { max(position, startLSN) }

    /// The next durable record, or nil and what to sleep on until there may be one.
    mutating func nextRecord(options: LogFollower.Options) throws(LogError) -> (record: Log.Record?, wait: Wait) {
        refreshWatermark(options)
        // The epoch is read before the durable LSN: a sync published after this read moves it,
        // and the wait returns at once.
        let wait = Wait(watermark: watermark, epoch: watermark?.epoch ?? 0)
        let rewrites = watermark?.rewrites
        /// Whether a writer began or ended a rewrite since `rewrites` was read: then whatever
        /// was read since may be torn, zeroed, removed or not durable. The caller then waits on
        /// `wait`, which returns at once: every rewrite moves the epoch after `rewrites`.
        func rewritten() -> Bool {
            guard let rewrites, let watermark else { return false }
            return watermark.rewritesAfterCopy != rewrites
        }
        if let watermark, let rewrites {
            // Odd: a truncation is under way (or a writer died in one); its end wakes us.
            if rewrites & 1 == 1 { return (nil, wait) }
            let published = watermark.durableLSN
            if rewritten() { return (nil, wait) }
            durableLSN = published
            if durableLSN < returned {
                throw LogError(
                    .lsnOutOfRange,
                    "the log's durable LSN went back to \(durableLSN), below LSN \(returned) this follower already "
                        + "returned: records that were durable were removed (removeAfter, or a writer's recovery)",
                    path: directory, lsn: returned)
            }
            if rewrites != rewritesSeen {
                // Bytes at or after the position may have changed, or its segment been removed
                // (or this is a watermark file mapped since: a new writer's).
                guard try seek(to: position, durableLSN: durableLSN) else { return (nil, wait) }
                if rewritten() { return (nil, wait) }
                rewritesSeen = rewrites
            }
        } else if position > claims.proven || claimsTailChanged {
            durableLSN = try advanceClaims()
        }
        while position <= durableLSN {
            // Data records are checked on their copy (below); markers here.
            var slot = Self.slot(segment, at: offset, expecting: position, checkingCRC: false)
            if case .marker = slot { slot = Self.slot(segment, at: offset, expecting: position) }
            switch slot {
            case .data(let header):
                // The CRC is checked on the copy, not on the mapping before it: bytes that change
                // in between (a recovery dropping records) must not be returned unnoticed.
                let copy = Array(UnsafeRawBufferPointer(
                    start: segment.base + offset, count: Format.recordHeaderSize + Int(header.length)))
                let copyIsIntact = copy.withUnsafeBytes { bytes in
                    RecordHeader.load(from: bytes.baseAddress!) == header
                        && RecordHeader.checksum(recordAt: bytes.baseAddress!, payloadLength: Int(header.length),
                                                 saltCRC: segment.saltCRC) == header.crc
                }
                if rewritten() { return (nil, wait) }
                guard copyIsIntact else {
                    throw LogError(
                        .corruption, "record changed while it was read, yet LSN \(position) is durable",
                        path: segment.path, offset: UInt64(offset), lsn: position)
                }
                let record = Log.Record(
                    lsn: position, segment: segment.name, offset: offset,
                    payload: Array(copy[Format.recordHeaderSize...]))
                offset += header.footprint
                position += 1
                if record.lsn >= startLSN {
                    returned = record.lsn
                    returnedCRC = header.crc
                    return (record, wait)
                }
            case .marker(let header):
                offset += header.footprint
            case .end, .invalid:
                let next: Segment?
                do { next = try openSegment(after: segment, startingAt: position) } catch {
                    // Segments unlinked by a truncation under way are not retention's doing.
                    if rewritten() { return (nil, wait) }
                    throw error
                }
                if let next {
                    segment = next
                    offset = Format.segmentHeaderSize
                    continue
                }
                if case .invalid(let reason) = slot {
                    // Bytes being zeroed by a truncation under way are not damage.
                    if rewritten() { return (nil, wait) }
                    throw LogError(
                        .corruption, "\(reason), yet LSN \(position) is durable", path: segment.path,
                        offset: UInt64(offset), lsn: position)
                }
                return (nil, wait)
            }
        }
        return (nil, wait)
    }

    /// Maps the `DURABLE` file when it appears, and checks (once per `watermarkTimeout`) that
    /// the one mapped is still in place.
    private mutating func refreshWatermark(_ options: LogFollower.Options) {
        let now = ContinuousClock.now
        let interval = watermark == nil ? options.pollInterval : options.watermarkTimeout
        if let checked = watermarkCheckedAt, now - checked < interval { return }
        watermarkCheckedAt = now
        if let watermark, watermark.isStillInPlace { return }
        watermark = WatermarkFile.openForFollower(directory: directory, logID: logID)
        rewritesSeen = nil
    }

    /// Forgets the watermark file (its page went away); the next call looks for it again.
    mutating func dropWatermark() {
        watermark = nil
        watermarkCheckedAt = nil
        rewritesSeen = nil
    }

    /// Whether the last record the claim scan parsed changed (a writer's recovery or a
    /// `removeAfter` rewrote the tail): what it claimed may be gone.
    private var claimsTailChanged: Bool {
        if let last = claims.last, RecordHeader.load(from: claims.segment.base + last.offset).crc != last.crc {
            return true
        }
        return claims.passed.contains { RecordHeader.load(from: $0.segment.base + $0.offset).crc != $0.crc }
    }

    /// Parses ahead for durable claims and returns the highest LSN they prove durable.
    private mutating func advanceClaims() throws(LogError) -> LSN {
        if claimsTailChanged {
            // The tail was rewritten: what it claimed may be gone; only what was returned is
            // known durable until the claims are read again.
            claims.proven = min(claims.proven, returned)
            claims.passed = []
            claims.segment = segment
            claims.offset = offset
            claims.nextLSN = position
            claims.last = nil
        }
        scan: while true {
            switch Self.slot(claims.segment, at: claims.offset, expecting: claims.nextLSN) {
            case .data(let header):
                claims.proven = max(claims.proven, header.durableLSN)
                claims.last = (claims.offset, header.crc)
                claims.offset += header.footprint
                claims.nextLSN += 1
            case .marker(let header):
                claims.proven = max(claims.proven, header.durableLSN)
                // A close marker proves every record before it durable.
                if header.type == Format.recordTypeCloseMarker { claims.proven = max(claims.proven, header.lsn) }
                claims.last = (claims.offset, header.crc)
                claims.offset += header.footprint
            case .end, .invalid:
                // A segment that chains on proves nothing more in this one can come.
                guard let next = try? openSegment(after: claims.segment, startingAt: claims.nextLSN) else { break scan }
                claims.proven = max(claims.proven, next.header.durableLSN)
                if let last = claims.last { claims.passed.append((claims.segment, last.offset, last.crc)) }
                // Segments before the follower's own cannot be cut without removing records
                // it returned, which this mode cannot tell anyway.
                claims.passed.removeAll { $0.segment.id < segment.id }
                claims.segment = next
                claims.offset = Format.segmentHeaderSize
                claims.last = nil
            }
        }
        return min(claims.proven, claims.nextLSN - 1)
    }

    /// Moves to the record with LSN `target` (or, if the log now ends before it, to where it
    /// ends) by walking the newest segment that starts at or before it, as a new follower
    /// would: used after a rewrite, when the bytes ahead, or the current segment's file, may
    /// have changed. Records before `target` were read already and are not returned again.
    /// Segments starting past `durableLSN + 1` are skipped: a truncation under way may not
    /// have unlinked them yet. False when no segment could be opened (try again later).
    private mutating func seek(to target: LSN, durableLSN: LSN) throws(LogError) -> Bool {
        // Start from the last record returned when it can be checked on the way.
        let anchor = returnedCRC == nil ? target : min(returned, target)
        var chosen: Segment?
        for (_, name) in try Self.segmentFiles(directory).reversed() {
            let candidate: Segment
            do { candidate = try Segment.open(directory: directory, name: name, writable: false) } catch {
                // Out of descriptors or memory is no evidence of removed records: try again
                // later. A file unlinked since the listing, or one that is not a usable
                // segment, is skipped.
                if let errno = error.errno, [Errno.tooManyOpenFiles, .tooManyOpenFilesInSystem, .noMemory].contains(errno) {
                    return false
                }
                continue
            }
            guard candidate.header.logID == logID, candidate.header.baseLSN <= durableLSN + 1 else { continue }
            chosen = candidate
            if candidate.header.baseLSN <= anchor { break }
        }
        guard let chosen else { return false }
        let firstWanted = max(target, startLSN)
        if chosen.header.baseLSN > firstWanted {
            throw LogError(
                .lsnOutOfRange, "records from \(firstWanted) on were removed from the log before this follower read them",
                path: directory, lsn: firstWanted)
        }
        var lsn = chosen.header.baseLSN
        var at = Format.segmentHeaderSize
        // Retention may have removed the segment of the last record returned: nothing to check.
        var sawReturned = returnedCRC == nil || returned < lsn
        walk: while lsn < target {
            // Records passed on the way were checked when they were read; only the last one
            // returned is checked again, by its CRC.
            switch Self.slot(chosen, at: at, expecting: lsn, checkingCRC: lsn == returned) {
            case .data(let header):
                if lsn == returned { sawReturned = header.crc == returnedCRC }
                at += header.footprint
                lsn += 1
            case .marker(let header):
                at += header.footprint
            case .end, .invalid:
                break walk
            }
        }
        if !sawReturned || lsn <= returned {
            throw LogError(
                .lsnOutOfRange,
                "records up to LSN \(returned) that this follower returned were removed (removeAfter, or a writer's "
                    + "recovery) and the log now holds other records or none there", path: directory, lsn: returned)
        }
        segment = chosen
        offset = at
        position = lsn
        claims = ClaimScan(segment: chosen, offset: at, nextLSN: lsn, proven: chosen.header.durableLSN)
        return true
    }

    /// The segment after `segment` if it exists and chains on at `lsn`. Throws `lsnOutOfRange`
    /// when it was removed (retention) and a later one starts past `lsn`.
    private func openSegment(after segment: Segment, startingAt lsn: LSN) throws(LogError) -> Segment? {
        let next: Segment
        do {
            next = try Segment.open(directory: directory, name: Format.segmentFileName(id: segment.id + 1), writable: false)
        } catch {
            guard error.code == .notFound else { throw error }
            guard let (_, name) = try Self.segmentFiles(directory).first(where: { $0.0 > segment.id }),
                let later = try? Segment.open(directory: directory, name: name, writable: false),
                later.header.logID == logID, later.header.baseLSN > lsn
            else { return nil }
            throw LogError(
                .lsnOutOfRange,
                "records \(lsn)..<\(later.header.baseLSN) were removed from the log before this follower read them",
                path: directory, lsn: lsn)
        }
        guard next.header.logID == logID, next.size == segment.size, next.header.baseLSN == lsn else { return nil }
        return next
    }

    /// What `segment` holds at `offset` for a reader expecting LSN `lsn` there.
    static func slot(_ segment: Segment, at offset: Int, expecting lsn: LSN, checkingCRC: Bool = true) -> Slot {
        guard offset + Format.recordHeaderSize <= segment.readableLength else { return .end }
        let pointer = segment.base + offset
        if RecordHeader.isAllZero(pointer) { return .end }
        let header = RecordHeader.load(from: pointer)
        if let problem = LogScanner.structuralProblem(header, at: offset, in: segment) { return .invalid(problem) }
        guard !checkingCRC
            || RecordHeader.checksum(recordAt: pointer, payloadLength: Int(header.length), saltCRC: segment.saltCRC)
                == header.crc
        else { return .invalid("checksum mismatch") }
        if header.type == Format.recordTypeData {
            return header.lsn == lsn ? .data(header) : .invalid("record has LSN \(header.lsn) where \(lsn) was expected")
        }
        return header.lsn == lsn &- 1 ? .marker(header) : .invalid("marker for LSN \(header.lsn) where \(lsn &- 1) was expected")
    }

    /// The segment files of `directory` as (id, name), oldest first.
    static func segmentFiles(_ directory: String) throws(LogError) -> [(UInt64, String)] {
        do {
            return try FileSystem.listDirectory(directory)
                .compactMap { name in Format.segmentID(fromFileName: name).map { ($0, name) } }
                .sorted { $0.0 < $1.0 }
        } catch {
            throw LogError.system(error, "cannot list the log directory", path: directory)
        }
    }
}
