#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CoreMetrics
import Dispatch
import Logging
import Synchronization
import SystemPackage

/// A crash-consistent, append-only log in one directory of preallocated, mmap'd segments.
///
/// `append` copies a record into the mapping and returns its LSN; it is not durable yet.
/// `commit` returns once every record appended before the call is durable (msync over the
/// dirty pages), and only then does `durableLSN` move. All methods are safe to call from many
/// threads; concurrent commits share one sync. See <doc:Durability> and <doc:ThreadSafety>.
public final class Log: Sendable {
    /// How a log is opened: its segment size, sync mode, recovery mode, logging and metrics.
    public struct Options: Sendable {
        /// Bytes per segment file for a new log: 1 MiB to 4 GiB, a multiple of 4 KiB. An existing
        /// log keeps the size its segments were created with.
        public var segmentSize: Int = Format.defaultSegmentSize
        /// Create the directory and the log when missing.
        public var createIfMissing = false
        /// What opening does when valid records stop before the end of the log (`RecoveryMode`,
        /// FORMAT.md §8.5). Whatever a writer's recovery drops is first preserved in a side file
        /// in the log directory; `recoveryReport` says what was dropped and where it went.
        public var recovery: RecoveryMode = .tornTail
        /// How `commit` makes records durable (see `SyncMode`). Chosen per open: the same log
        /// can be reopened in another mode.
        public var sync: SyncMode = .msync
        /// How a new segment's blocks are reserved (see `Preallocation`).
        public var preallocation: Preallocation = .fallocate
        /// Starts write-back (without waiting) each time this many bytes of completed pages,
        /// counted in whole 2 MiB (the largest page-cache folio; when `writeBehindBytes` is
        /// smaller, in the largest power of two it holds, at least a page), accumulate, so that a large commit finds most of its pages already on their way to
        /// disk (like RocksDB's `bytes_per_sync`). 0 turns it off. It never makes anything durable.
        public var writeBehindBytes = 4 << 20
        /// With `Preallocation.fallocate`, a background thread keeps this many bytes past the
        /// last record written back, so that their extents are converted before a commit
        /// reaches them and small commits need no metadata write of their own (about 1.5 times
        /// the durable records per second with 64 task writers; BENCHMARKS.md). It writes only
        /// pages past the records (or records not yet committed, early) and never makes
        /// anything durable. 0 turns it off; `SyncMode.none` and `CommitAlignment.page` never
        /// start it.
        public var convertAheadBytes = 1 << 20
        /// A background thread keeps the active segment's pages this far past the last record
        /// mapped writable in the writer's own mapping (madvise(2) `MADV_POPULATE_WRITE`), so
        /// that appends copy into memory without taking page faults (which, on a fresh segment,
        /// also allocate and zero-fill page cache: about half of a bulk load's appending time,
        /// BENCHMARKS.md). It changes no byte and writes nothing back. It follows only appends
        /// with no sync between them (a bulk load). The file prepared for the next segment has
        /// this much of its start read into the page cache too. 0 turns both off;
        /// `CommitAlignment.page` never starts the thread.
        public var prefaultAheadBytes = 16 << 20
        /// What a sync may assume about the disk, and so where the next record after a commit
        /// starts (see `CommitAlignment` and FORMAT.md, "Crash model").
        public var commitAlignment: CommitAlignment = .none
        /// Which old segments a background task deletes (`RetentionPolicy`); none by default.
        public var retention = RetentionPolicy()
        /// Where the log reports recovery, corruption, a failed sync, segment rolls and close
        /// (never anything per record). The default goes to whatever `LoggingSystem` was
        /// bootstrapped with, labelled "LogStore".
        public var logger = Logger(label: "LogStore")
        /// The swift-metrics factory the log's metrics are made from; nil (the default) means
        /// `MetricsSystem.factory` at open. A factory per log keeps logs (and tests) apart.
        public var metricsFactory: (any MetricsFactory)? = nil
        /// The start of every metric label: `<prefix>.appends`, `<prefix>.sync_duration`, ...
        /// (the names are in the Operations article). Empty for bare names.
        public var metricsLabelPrefix = "logstore"
        /// Dimensions added to every metric, e.g. `[("log", "orders")]` or the log directory,
        /// to tell apart several logs in one process.
        public var metricsDimensions: [(String, String)] = []
        /// Parse and CRC-check every record of every segment at open, even after a clean close.
        /// Off, an open after a clean close checks only the last segment and checks each
        /// sealed one when a record in it is first read (FORMAT.md §8.7); after a crash every
        /// open checks everything either way.
        public var checkSealedSegmentsAtOpen = false

        /// Options with the given values and the defaults for the rest (`commitAlignment`,
        /// `logger` and the metrics options are set as properties).
        public init(
            segmentSize: Int = 64 << 20, createIfMissing: Bool = false, recovery: RecoveryMode = .tornTail,
            sync: SyncMode = .msync, preallocation: Preallocation = .fallocate, writeBehindBytes: Int = 4 << 20
        ) {
            self.writeBehindBytes = writeBehindBytes
            self.segmentSize = segmentSize
            self.createIfMissing = createIfMissing
            self.recovery = recovery
            self.sync = sync
            self.preallocation = preallocation
        }
    }

    /// Where the first record after a commit starts, which decides whether a later sync ever
    /// writes a sector that already holds acknowledged bytes.
    public enum CommitAlignment: String, Sendable, CaseIterable {
        /// Right after the last record. Assumes a power loss leaves every sector either as it
        /// was or as it was being written (sector-atomic writes), since the next sync rewrites
        /// the last sector of this one. No space cost.
        case none
        /// At the next 512-byte sector (the gap holds a padding record). Assumes only that a
        /// sector whose bytes a write does not change comes through a power loss intact
        /// ("powersafe overwrite"): a sector being changed may turn to garbage. Up to 512
        /// bytes of log per commit.
        case sector
        /// At the next 4 KiB page: no sync ever writes a page holding acknowledged bytes
        /// again, so any sector of a page being written may turn to garbage. Up to 4 KiB of
        /// log per commit.
        case page

        package var bytes: Int {
            switch self {
            case .none: 1
            case .sector: Format.sectorSize
            case .page: Format.pageSize
            }
        }
    }

    /// How `commit` makes records durable.
    public enum SyncMode: String, Sendable, CaseIterable {
        /// `msync(MS_SYNC)` over the page-aligned dirty ranges only.
        case msync
        /// `fdatasync` submitted through io_uring (IORING_OP_FSYNC with IORING_FSYNC_DATASYNC,
        /// bounded to the dirty pages), reaped by the committing thread while appends go on.
        /// Opening fails with `syncModeUnavailable` where io_uring is disabled.
        case uring
        /// `fdatasync` of each segment with dirty pages.
        case fdatasync
        /// No sync: `commit` returns at once and `durableLSN` never moves.
        case none
    }

    /// A record and where it lives.
    public struct Record: Sendable, Equatable {
        /// The record's log sequence number.
        public var lsn: LSN
        /// Segment file name.
        public var segment: String
        /// Byte offset of the record header in that file.
        public var offset: Int
        /// The bytes appended.
        public var payload: [UInt8]
    }

    /// One segment file as the log sees it.
    public struct SegmentInfo: Sendable, Equatable {
        /// The file name in the log directory.
        public var name: String
        /// The segment's number: 1 for the first, one more for each roll.
        public var id: UInt64
        /// The LSN of the segment's first record.
        public var baseLSN: LSN
        /// Data records in the segment.
        public var recordCount: Int
        /// Bytes from the start of the file to the end of the last record.
        public var bytesUsed: Int
        /// The file's size (the segment size).
        public var bytesAllocated: Int
    }

    // Unchecked: `base` points into the mapping that `segment` owns and keeps alive.
    struct OpenSegment: @unchecked Sendable {
        let segment: Segment
        /// Copies of `segment.base` and `segment.saltCRC`, so that the append path does not
        /// retain and release the segment for every record.
        let base: UnsafeMutableRawPointer
        let saltCRC: UInt32
        var recordOffsets: [UInt32]
        var end: Int
        /// Bytes below this offset are covered by a completed sync.
        var syncedEnd: Int
        /// Write-back has been started for the pages below this offset.
        var writeBehindEnd: Int
        /// Set for a segment rolled into but maybe not installed yet: the next commit waits for
        /// its installation before acknowledging anything in it.
        var pendingInstall: PendingInstall? = nil
        /// The converter thread has written back (and so converted the extents of) the
        /// bytes from the end of the records up to here (ExtentConversion.swift).
        var convertedEnd = 0
        /// The prefaulter thread has mapped (or is mapping) the pages from the end of the
        /// records up to here (Prefault.swift).
        var prefaultedEnd = 0
        /// Where the records next ask whether to prefault more (every half `prefaultAheadBytes`).
        var prefaultCheckAt = 0
        /// Set for a sealed segment whose records the open did not check (after a clean close):
        /// `recordOffsets` is empty, `end` is the segment size, and the index is built on first
        /// read.
        var deferredIndex: DeferredSegmentIndex? = nil

        var recordCount: Int { deferredIndex?.recordCount ?? recordOffsets.count }
    }

    struct State {
        var segments: [OpenSegment]
        var firstLSN: LSN
        var writtenLSN: LSN
        var durableLSN: LSN
        var poison: LogError?
        var isClosed = false
        /// `poison != nil` without copying the error (which `!= nil` did, on every sync).
        var isPoisoned: Bool {
            switch poison {
            case .none: false
            case .some: true
            }
        }
        /// Whether the file for the next segment is being prepared (once the active segment is
        /// half full).
        var nextSegmentRequested = false
        /// Whether an append asked the prefaulter for more pages that it has not taken yet.
        var prefaultRequested = false
        /// `syncsStarted` at the last such question: a sync since means a durable workload.
        /// None before the first question, which only records it: a log's first append may be
        /// the first of a durable workload.
        var syncsAtLastPrefaultCheck: UInt64? = nil
        /// Syncs started so far; a record appended now is covered by sync `syncsStarted + 1`.
        var syncsStarted: UInt64 = 0
        /// The number of the sync that covers `writtenLSN` (the first to start after its append).
        var writtenCoveredBy: UInt64 = 1
        /// The last LSN kept by each `removeAfter` so far, oldest first; a waiter remembers how
        /// many it saw (see `Log.truncationError`).
        var suffixCuts: [LSN] = []
        /// Counted by every append, handed to the metrics at syncs, rolls and close.
        var unreportedAppends = AppendCounts()

        /// The position in `segments` of the segment holding `lsn`, by binary search over the
        /// base LSNs; throws unless `lsn` is in `firstLSN...writtenLSN` of an open log.
        func segmentIndex(of lsn: LSN, directory: String) throws(LogError) -> Int {
            if isClosed { throw LogError(.closed, "the log is closed", path: directory) }
            guard lsn >= firstLSN, lsn <= writtenLSN else {
                throw LogError(
                    .lsnOutOfRange, "LSN \(lsn) is outside \(firstLSN)...\(writtenLSN)", path: directory, lsn: lsn)
            }
            var low = 0
            var high = segments.count - 1
            while low < high {
                let middle = (low + high + 1) / 2
                if segments[middle].segment.header.baseLSN <= lsn { low = middle } else { high = middle - 1 }
            }
            return low
        }

        func checkUsable() throws(LogError) {
            if isClosed { throw LogError(.closed, "the log is closed") }
            if let poison {
                throw LogError(
                    .poisoned, "an earlier sync failed (\(poison)); reopen the log to recover", path: poison.path,
                    errno: poison.errno)
            }
        }
    }

    /// The log directory, as given to `open`.
    public let directory: String
    /// Whether the log was opened with `openReadOnly`: no lock, no writes.
    public let isReadOnly: Bool
    /// The options the log was opened with.
    public let options: Options
    /// The 128 random bits naming this log, in every segment header.
    public let logID: LogID
    /// What recovery found on open and, for a writer, what it changed.
    public let recoveryReport: RecoveryReport
    /// The segment size of this log, from its segment headers.
    public let segmentSize: Int

    private let lock: DirectoryLock?
    /// Nil for read-only opens.
    private let preparer: SegmentPreparer?
    /// Installs rolled-into segments, one at a time and in order.
    let installQueue = DispatchQueue(label: "LogStore.SegmentInstaller")
    let state: SleepingLock<State>
    /// Held by the thread running a sync (the group commit's leader), so that syncs run one at
    /// a time and `durableLSN` only moves in order.
    let syncEngine: Mutex<SyncEngine>
    /// `state.durableLSN`, readable without the lock by waiters.
    let durableWatermark: Atomic<LSN>
    /// Set once the log is poisoned or closed: waiters stop waiting.
    let refusing = Atomic<Bool>(false)
    /// Notified when an odd (index 1) or even (index 0) numbered sync finishes, and both when
    /// `refusing` is set.
    let syncCompleted = [EventCount(), EventCount()]
    /// The highest LSN a waiting caller asked the syncer thread to make durable.
    let requestedLSN = Atomic<LSN>(0)
    /// Runs syncs while callers wait (nil for read-only logs and `SyncMode.none`).
    let syncer: LoopThread?
    /// Wakes the callers of syncs the syncer finished while it went on with the next one.
    let waker: LoopThread?
    /// Converts the active segment's extents ahead of the appends (ExtentConversion.swift).
    let converter: LoopThread?
    /// Set by a sync that found too little converted past the records; taken by the converter.
    let conversionRequested = Atomic<Bool>(false)
    /// Maps the active segment's pages ahead of the appends (Prefault.swift).
    let prefaulter: LoopThread?
    /// The last sync the syncer finished and handed to the waker to announce.
    let finishedSync = Atomic<UInt64>(0)
    /// The last sync the waker announced, or the syncer announced itself while the waker had
    /// nothing left to do (see `runSyncer`).
    let announcedSync = Atomic<UInt64>(0)
    let asyncWaiters = Mutex<[AsyncWaiter]>([])
    let asyncWaiterCount = Atomic<Int>(0)
    /// `state.suffixCuts.count`, readable without the lock by waiters.
    let suffixCutCount = Atomic<Int>(0)
    /// Held by `removeBefore`/`removeAfter`: one truncation at a time, and none while `close`
    /// releases the directory.
    let truncationLock = Mutex<Void>(())
    /// Applies `options.retention` in the background (nil when it keeps everything).
    let retentionWorker: RetentionWorker?
    /// Identifies async waiters, so that a cancelled follower can remove its own.
    let nextAsyncWaiterID = Atomic<UInt64>(0)
    /// The `DURABLE` file followers in other processes sleep on (FORMAT.md §12); nil for
    /// read-only opens, when it could not be created (followers then poll), and after close
    /// (which must not leave a writable descriptor open). Read through `watermark`.
    let watermarkFile: Mutex<WatermarkFile?>
    /// Nil for read-only opens, which report nothing.
    let metrics: LogMetrics?
    /// `options.logger` with the directory as metadata.
    let logger: Logger
    /// What write-behind counts completed pages in (`Log.writeBehindUnit(for:)`), once per log
    /// rather than per append.
    let writeBehindUnit: Int

    deinit {
        syncer?.stop()
        waker?.stop()
        converter?.stop()
        prefaulter?.stop()
        retentionWorker?.cancel()
        // Dropped without close (a crash, as far as the log is concerned): let a queued
        // installation finish before the lock is released with the stored properties.
        installQueue.sync {}
        // Nor may the preparer create its file once another writer may own the directory: that
        // writer deleted leftovers at open, and the file would take space its recovery needs.
        preparer?.discard()
        if !isReadOnly, let unreported = state.withLock({ $0.isClosed ? nil : $0.unreportedAppends }) {
            reportReleasedWithoutClose(unreported)
        }
    }

    /// Opens (or with `createIfMissing`, creates) the log in `directory` as its only writer,
    /// running recovery first.
    public static func open(_ directory: String, options: Options = Options()) throws(LogError) -> Log {
        do { return try Log(directory: directory, options: options, readOnly: false) } catch {
            reportOpenFailure(error, directory: directory, options: options)
            throw error
        }
    }

    /// Opens the log read-only: no lock, no byte changed. Shows the valid prefix even when
    /// recovery would refuse to open it for writing; `recoveryReport` says what it would do.
    ///
    /// With `checkSealedSegments` every record of every segment is checked at open even after a
    /// clean close (what `logctl verify` does), instead of each sealed segment on first read.
    public static func openReadOnly(_ directory: String, checkSealedSegments: Bool = false) throws(LogError) -> Log {
        var options = Options()
        options.checkSealedSegmentsAtOpen = checkSealedSegments
        return try Log(directory: directory, options: options, readOnly: true)
    }

    /// Opens the log read-only, with `recoveryReport` planned as a writer opening with
    /// `recovery` would carry it out (`applied` false, `writerRefuses` says whether it would
    /// refuse). Changes nothing, takes no lock.
    public static func openReadOnly(_ directory: String, recovery: RecoveryMode) throws(LogError) -> Log {
        try Log(directory: directory, options: Options(recovery: recovery), readOnly: true)
    }

    /// The payload bytes the largest record in this log may have.
    public var maxRecordSize: Int { Format.maxPayload(segmentSize: segmentSize) }

    private init(directory: String, options: Options, readOnly: Bool) throws(LogError) {
        self.directory = directory
        self.options = options
        self.isReadOnly = readOnly
        writeBehindUnit = Log.writeBehindUnit(for: options.writeBehindBytes)
        logger = Log.logger(options, directory: directory)
        guard options.segmentSize >= Format.minSegmentSize, options.segmentSize <= Format.maxSegmentSize,
            options.segmentSize % Format.pageSize == 0
        else {
            throw LogError(
                .invalidArgument, "segment size \(options.segmentSize) must be 1 MiB to 4 GiB and a multiple of 4096",
                path: directory)
        }
        // Checked before anything is created or locked: an unusable mode changes nothing on disk.
        var ring: IOURing?
        if options.sync == .uring && !readOnly {
            do throws(Errno) {
                try FaultInjection.check(.uringSetup, directory: directory)
                ring = try IOURing()
            } catch {
                throw LogError(
                    .syncModeUnavailable,
                    "io_uring is not available (\(error)); LogStore does not fall back to another sync mode, "
                        + "open with msync or fdatasync instead", path: directory, errno: error)
            }
        }
        let create = options.createIfMissing && !readOnly
        try Log.prepareDirectory(directory, create: create)
        // Refuse a directory that is not a log before creating a lock file in it.
        _ = try Log.segmentFileNames(directory, create: create)
        lock = readOnly ? nil : try DirectoryLock.acquire(directory: directory)
        let recoveryStarted = Log.monotonicNanoseconds()

        // A truncation a crash interrupted: a writer completes it before recovery looks at the
        // records; a read-only open shows the log as it will be once it is completed.
        var intent = try TruncationIntent.read(directory: directory, removingPartial: !readOnly)
        if let leftover = intent, !readOnly {
            try leftover.carryOut(directory: directory, names: try Log.segmentFileNames(directory, create: false))
            intent = nil
        }
        var segments = try Log.openSegments(directory, create: create, readOnly: readOnly, options: options)
        if let intent {
            guard let named = segments.first(where: { $0.id == intent.segmentID }) else {
                throw LogError(.corruption, "the truncation intent names segment \(intent.segmentID), which is missing",
                               path: TruncationIntent.path(in: directory))
            }
            try intent.validate(against: named, directory: directory)
            segments = intent.visibleSegments(segments)
        }
        // A leftover intent (seen only by a read-only open) is shown carried out, which needs
        // every segment's record index: only a log without one takes the clean-close path.
        let fastScan = intent == nil && !options.checkSealedSegmentsAtOpen
        var scan = (fastScan ? LogScanner.scanAfterCleanClose(segments) : nil) ?? LogScanner.scan(segments)
        if let intent, intent.kind == .suffix { scan = scan.truncated(after: intent.lsn) }
        var report = try Log.plan(scan, mode: options.recovery, readOnly: readOnly, directory: directory)
        if !readOnly {
            segments = try Log.apply(scan, mode: options.recovery, alignment: options.commitAlignment, directory: directory,
                                     report: &report)
        } else {
            segments = scan.kept.map(\.segment)
        }

        let first = segments[0]
        logID = first.header.logID
        segmentSize = first.size
        metrics = readOnly ? nil : LogMetrics(options: options)
        preparer = readOnly
            ? nil
            : SegmentPreparer(directory: directory, size: first.size, preallocation: options.preallocation,
                              warmBytes: options.prefaultAheadBytes, metrics: metrics)
        var open: [OpenSegment] = []
        for (index, scanned) in scan.kept.enumerated() {
            open.append(
                OpenSegment(segment: segments[index], base: segments[index].base, saltCRC: segments[index].saltCRC,
                            recordOffsets: scanned.recordOffsets, end: scanned.end, syncedEnd: scanned.end,
                            writeBehindEnd: scanned.end, deferredIndex: scanned.deferred))
        }
        let written = scan.nextLSN - 1
        watermarkFile = Mutex(
            readOnly ? nil : WatermarkFile.openForWriter(directory: directory, logID: logID, durableLSN: written))
        syncEngine = Mutex(SyncEngine(ring: ring))
        durableWatermark = Atomic(readOnly ? scan.provenDurableLSN : written)
        state = SleepingLock(
            State(segments: open, firstLSN: first.header.baseLSN, writtenLSN: written,
                  durableLSN: readOnly ? scan.provenDurableLSN : written))
        var finalReport = report
        finalReport.applied = !readOnly
        recoveryReport = finalReport
        let recoveryNanoseconds = Log.monotonicNanoseconds() - recoveryStarted
        syncer = readOnly || options.sync == .none ? nil : LoopThread()
        waker = syncer == nil ? nil : LoopThread()
        // Not with `.page` alignment: the converter may write a page back again after a commit
        // acknowledged bytes in it (unchanged), which that crash model does not allow.
        converter = syncer == nil || options.preallocation != .fallocate || options.convertAheadBytes <= 0
            || options.commitAlignment == .page ? nil : LoopThread()
        // Not with `.page` alignment either: records overtaking it, then a commit, then its
        // fault on their (clean) page would dirty acknowledged bytes for a second write.
        prefaulter = readOnly || options.prefaultAheadBytes <= 0 || options.commitAlignment == .page
            ? nil : LoopThread()
        retentionWorker = readOnly || !options.retention.isEnabled
            ? nil : RetentionWorker(interval: options.retention.checkInterval)
        if !readOnly && options.commitAlignment != .none {
            try padRecoveredEndToCommitAlignment(claiming: scan.provenDurableLSN)
        }
        let weakSelf = WeakLog(self)
        retentionWorker?.start(weakSelf)
        syncer?.start { syncer in Log.runSyncer(syncer, log: weakSelf) }
        waker?.start { waker in Log.runWaker(waker, log: weakSelf) }
        converter?.start { converter in Log.runConverter(converter, log: weakSelf) }
        prefaulter?.start { prefaulter in Log.runPrefaulter(prefaulter, log: weakSelf) }
        if !readOnly { reportRecovery(nanoseconds: recoveryNanoseconds) }
    }

    static func prepareDirectory(_ directory: String, create: Bool) throws(LogError) {
        do {
            guard try FileSystem.isDirectory(directory) else {
                throw LogError(.notALog, "not a directory", path: directory)
            }
        } catch let error as Errno {
            guard error == .noSuchFileOrDirectory, create else {
                throw LogError.system(
                    error, error == .noSuchFileOrDirectory ? "no such log directory" : "cannot open the log directory",
                    path: directory)
            }
            do {
                try FileSystem.makeDirectory(directory)
                try FileSystem.syncDirectory(parentDirectory(of: directory))
            } catch {
                throw LogError.system(error, "cannot create the log directory", path: directory)
            }
        } catch let error as LogError {
            throw error
        } catch {
            preconditionFailure("unreachable: \(error)")
        }
    }

    /// Lists, opens and checks the segment files; creates the first one for a new log.
    private static func openSegments(_ directory: String, create: Bool, readOnly: Bool, options: Options)
        throws(LogError) -> [Segment]
    {
        let segmentNames = try segmentFileNames(directory, create: create, removingLeftovers: !readOnly)
        if segmentNames.isEmpty {
            var generator = SystemRandomNumberGenerator()
            let header = SegmentHeader(
                segmentID: 1, baseLSN: 1, segmentSize: UInt64(options.segmentSize), logID: LogID.random(),
                salt: generator.next(), durableLSN: 0)
            return [try Segment.create(directory: directory, header: header, preallocation: options.preallocation)]
        }
        var segments: [Segment] = []
        for (id, name) in segmentNames {
            let segment = try Segment.open(directory: directory, name: name, writable: !readOnly)
            guard segment.header.segmentID == id else {
                throw LogError(
                    .corruption, "header names segment \(segment.header.segmentID), file name says \(id)",
                    path: segment.path, offset: 16)
            }
            if let first = segments.first, segment.header.logID != first.header.logID {
                throw LogError(
                    .notALog, "segment belongs to another log (\(segment.header.logID), not \(first.header.logID))",
                    path: segment.path, offset: 40)
            }
            if let first = segments.first, segment.size != first.size {
                throw LogError(
                    .corruption, "segment is \(segment.size) bytes where the log's segments are \(first.size)",
                    path: segment.path, offset: 32)
            }
            segments.append(segment)
        }
        return segments
    }

    /// The segment files of `directory` as (id, name), oldest first. Empty only when a new log
    /// may be created there (`create`, and no other files); otherwise no segments is `notALog`.
    static func segmentFileNames(_ directory: String, create: Bool, removingLeftovers: Bool = false)
        throws(LogError) -> [(UInt64, String)]
    {
        var names: [String]
        do { names = try FileSystem.listDirectory(directory) } catch {
            throw LogError.system(error, "cannot list the log directory", path: directory)
        }
        let temporarySuffix = "." + Format.segmentFileExtension + "." + Format.temporaryFileExtension
        if removingLeftovers {
            // A crash while creating a segment leaves its temporary file; it never held records.
            // A crash while recovery wrote a side file leaves `<side file>.partial`: nothing was
            // removed on the strength of it (that waits for the rename and a directory fsync).
            for name in names where name.hasSuffix(temporarySuffix) || SideFiles.isPartialSideFileName(name) {
                try? FileSystem.unlink(directory + "/" + name)
            }
            names.removeAll { SideFiles.isPartialSideFileName($0) }
        }
        names.removeAll { $0.hasSuffix(temporarySuffix) }
        let segmentNames = names.compactMap { name in Format.segmentID(fromFileName: name).map { ($0, name) } }
            .sorted { $0.0 < $1.0 }
        guard segmentNames.isEmpty else { return segmentNames }
        let others = names.filter { $0 != Format.lockFileName && $0 != Format.watermarkFileName }
        guard create else {
            let note = others.isEmpty ? "" : " (it holds \(others.count) other files)"
            throw LogError(.notALog, "no segment files in the directory\(note)", path: directory)
        }
        guard others.isEmpty else {
            throw LogError(
                .notALog, "refusing to create a log in a directory that holds \(others.count) other files",
                path: directory)
        }
        return []
    }

    /// Turns a scan into a report, or refuses according to `mode` (a read-only open never refuses).
    private static func plan(_ scan: LogScanner.Result, mode: RecoveryMode, readOnly: Bool, directory: String)
        throws(LogError) -> RecoveryReport
    {
        let outcome: RecoveryReport.Outcome
        switch scan.outcome {
        case .clean: outcome = .clean
        case .tornTail: outcome = .tornTail
        case .corruption: outcome = .corruption
        }
        if !readOnly, let damage = scan.damage, RecoveryReport.writerRefuses(outcome, in: mode) {
            let path = directory + "/" + damage.segment
            if outcome == .corruption {
                throw LogError(
                    .corruption,
                    "\(damage.reason); later records show LSN \(scan.evidence.durableLSN) was durable, so this is "
                        + "damage to durable data, not a torn write (open with point-in-time or salvage recovery to "
                        + "keep the records before it)", path: path, offset: damage.offset, lsn: damage.lsn)
            }
            if outcome == .tornTail {
                throw LogError(
                    .corruption, "strict recovery: \(damage.reason) (a torn tail; torn-tail recovery would drop it)",
                    path: path, offset: damage.offset, lsn: damage.lsn)
            }
        }
        var dropped: [RecoveryReport.DroppedRegion] = []
        if let cut = scan.kept.last, scan.tailNonzeroEnd > cut.end {
            dropped.append(
                .init(segment: cut.segment.name, offset: UInt64(cut.end), length: UInt64(scan.tailNonzeroEnd - cut.end),
                      reason: scan.damage?.reason ?? "stale bytes past the last record"))
        }
        for (orphan, extent) in zip(scan.orphans, scan.orphanExtents) {
            dropped.append(
                .init(segment: orphan.name, offset: UInt64(Format.segmentHeaderSize),
                      length: UInt64(max(0, extent - Format.segmentHeaderSize)),
                      reason: "segment after the end of the valid records",
                      preservedFileOffset: UInt64(Format.segmentHeaderSize)))
        }
        let first = scan.kept[0].segment.header.baseLSN
        var lost: ClosedRange<LSN>?
        if outcome == .corruption {
            lost = scan.nextLSN...max(scan.nextLSN, scan.evidence.highestLSN, scan.evidence.durableLSN)
        }
        return RecoveryReport(
            outcome: outcome, mode: mode, applied: false, segmentsKept: scan.kept.count, firstLSN: first,
            lastLSN: scan.nextLSN - 1, provenDurableLSN: scan.provenDurableLSN, damage: scan.damage,
            droppedRegions: dropped, removedSegments: scan.orphans.map(\.name), lostLSNs: lost,
            salvageableLSNs: scan.salvageable, gaps: scan.gaps,
            deferredSegments: scan.kept.count(where: { $0.deferred != nil }))
    }

    /// The side files in `directory` (sorted): what earlier recoveries removed from the log and
    /// preserved (`dropped-*.bin`), and salvage recovery's exports (`salvaged-*.jsonl`). They
    /// are not part of the log; nothing in LogStore reads or deletes them.
    public static func sideFiles(in directory: String) throws(LogError) -> [String] {
        do { return try FileSystem.listDirectory(directory).filter(SideFiles.isSideFileName).sorted() } catch {
            throw LogError.system(error, "cannot list the log directory", path: directory)
        }
    }

    /// Whether `name` is the name of a side file (see `sideFiles(in:)`).
    public static func isSideFileName(_ name: String) -> Bool { SideFiles.isSideFileName(name) }

    /// Carries out a recovery plan and records in `report` where what it removed went. The
    /// order keeps a crash at any step recovering to the same records: first everything about
    /// to be removed is preserved in side files (salvage's export, a copy of the torn bytes),
    /// durably, directory included; then the torn bytes are zeroed (the cut segment then ends
    /// where the cut is, and no orphan can chain onto it, since none starts at the cut's LSN),
    /// then orphan segments are moved aside, oldest first (so the strongest evidence, in the
    /// newest, goes last), and finally every kept record that nothing proves durable is written
    /// again and synced.
    private static func apply(
        _ scan: LogScanner.Result, mode: RecoveryMode, alignment: CommitAlignment, directory: String,
        report: inout RecoveryReport
    ) throws(LogError) -> [Segment] {
        var segments = scan.kept.map(\.segment)
        let cut = scan.cut
        let segment = cut.segment
        let tailEnd = min(scan.tailNonzeroEnd, segment.readableLength)
        // Side files first: nothing is removed before its copy and the copy's name are durable.
        do throws(Errno) {
            if mode == .salvage {
                report.salvageFile = try SideFiles.exportSalvage(scan, directory: directory)
                FaultInjection.crashPoint("recovery: salvaged records exported", directory: directory)
            }
            if tailEnd > cut.end {
                report.droppedRegions[0].preservedAt = try SideFiles.preserve(
                    UnsafeRawBufferPointer(rebasing: segment.bytes[cut.end..<tailEnd]), segment: segment.name,
                    offset: cut.end, directory: directory)
                FaultInjection.crashPoint("recovery: torn tail copied to a side file", directory: directory)
            }
            if report.salvageFile != nil || tailEnd > cut.end { try FileSystem.syncDirectory(directory) }
        } catch {
            throw LogError.system(
                error, "recovery could not preserve what it would drop in a side file, so it dropped nothing",
                path: directory)
        }
        do {
            if tailEnd > cut.end {
                try segment.descriptor.writeZeros(at: cut.end, length: tailEnd - cut.end)
                FaultInjection.crashPoint("recovery: torn tail zeroed, not synced", directory: directory)
                try segment.descriptor.dataSync()
                FaultInjection.crashPoint("recovery: torn tail zeroed and synced", directory: directory)
            }
            if segment.readableLength < segment.size {
                // A truncated segment is regrown before it is mapped for appends, so that the
                // mapping never reaches past the end of the file.
                try segment.descriptor.allocate(offset: segment.readableLength, length: segment.size - segment.readableLength)
                try segment.descriptor.writeZeros(at: segment.readableLength, length: segment.size - segment.readableLength)
                try segment.descriptor.sync()
                try FileSystem.syncDirectory(directory)
                segments[segments.count - 1] = try Segment.open(directory: directory, name: segment.name, writable: true)
            }
            // Moved, not deleted: renamed to a side file, which no open takes for a segment.
            let firstOrphanRegion = report.droppedRegions.count - scan.orphans.count
            for (index, orphan) in scan.orphans.enumerated() {
                report.droppedRegions[firstOrphanRegion + index].preservedAt =
                    try SideFiles.moveAside(orphan, directory: directory)
                FaultInjection.crashPoint("recovery: moved \(orphan.name) to a side file", directory: directory)
            }
            // Appends go into this segment's mapping: its blocks must be allocated, even if the
            // file was copied sparsely, so that no page fault can SIGBUS on a full disk.
            let active = segments[segments.count - 1]
            try active.descriptor.allocate(offset: 0, length: active.size)
            try makeUnprovenRecordsDurable(scan, segments: segments, alignment: alignment, directory: directory)
            FaultInjection.crashPoint("recovery: unproven records rewritten", directory: directory)
            // A crash may have come between a rename and its directory fsync (a roll's
            // installation, the first segment, the directory itself): the names of everything
            // kept are made durable before anything is acknowledged on top of them.
            try FileSystem.syncDirectory(directory)
            try FileSystem.syncDirectory(parentDirectory(of: directory))
        } catch let error as Errno {
            throw LogError.system(error, "recovery could not repair the log", path: directory)
        } catch let error as LogError {
            throw error
        } catch {
            preconditionFailure("unreachable: \(error)")
        }
        return segments
    }

    /// Records past the last one the log proves durable may exist only in the page cache (a
    /// process crash), or in pages whose write-back failed and that the kernel then marked clean
    /// (after an EIO, fdatasync does not write them again). Writing their bytes again re-dirties
    /// those pages, so the fdatasync that follows really puts them on disk before anything is
    /// acknowledged on top of them. With `.page` alignment, only pages the disk does not hold as
    /// cached are written: the others may hold an acknowledged commit, whose pages that setting
    /// never writes twice (`DiskContents`). The other settings' disk models make writing the same
    /// bytes again harmless, and it needs no trust in the filesystem's direct reads.
    private static func makeUnprovenRecordsDurable(
        _ scan: LogScanner.Result, segments: [Segment], alignment: CommitAlignment, directory: String
    ) throws {
        let firstUnproven = scan.provenDurableLSN + 1
        // A deferred segment is sealed before a close marker, which proves all of it durable.
        for (scanned, segment) in zip(scan.kept, segments)
        where scanned.end > Format.segmentHeaderSize && scanned.deferred == nil {
            let base = segment.header.baseLSN
            let start: Int
            if scanned.recordOffsets.isEmpty || firstUnproven <= base {
                start = Format.segmentHeaderSize
            } else if firstUnproven <= scanned.lastLSN {
                start = Int(scanned.recordOffsets[Int(firstUnproven - base)])
            } else {
                continue
            }
            let unproven = start..<scanned.end
            let missing = alignment == .page ? DiskContents.rangesNotOnDisk(of: segment, in: unproven) ?? [unproven] : [unproven]
            for range in missing {
                // Copied out first: pwrite from a mapping of the very pages being written is legal
                // but needlessly subtle.
                let bytes = Array(UnsafeRawBufferPointer(rebasing: segment.bytes[range]))
                FaultInjection.noteSync(directory: directory, segment: segment.name, bytes: range)
                try segment.descriptor.write(bytes, at: range.lowerBound)
            }
            if !missing.isEmpty {
                FaultInjection.crashPoint("recovery: records of \(segment.name) rewritten, not synced", directory: directory)
            }
            try segment.descriptor.dataSync()
        }
    }

    // MARK: - Appending

    /// The largest folio the page cache makes of a file's pages on x86-64 (a PMD, 2 MiB).
    static let largestFolioSize = 2 << 20

    /// Whole 2 MiB (the largest folio), or the largest power of two in a smaller `bytes`, at
    /// least a page: write-back writes whole folios, and one reaching past the records would
    /// write (and write-protect) pages still being filled, so that the next store into each
    /// faults again. A power of two, because `alignDown` masks.
    static func writeBehindUnit(for bytes: Int) -> Int {
        guard bytes > Format.pageSize else { return Format.pageSize }
        return min(largestFolioSize, 1 << (Int.bitWidth - 1 - bytes.leadingZeroBitCount))
    }

    /// Appends one record and returns its LSN. The record is not durable until `commit` returns.
    @discardableResult
    public func append(_ payload: UnsafeRawBufferPointer) throws(LogError) -> LSN {
        try appendReturningSync(payload).lsn
    }

    /// Appends and returns the LSN with the number of the sync that will cover it and the
    /// number of suffix truncations so far.
    private func appendReturningSync(_ payload: UnsafeRawBufferPointer) throws(LogError)
        -> (lsn: LSN, sync: UInt64, cutsSeen: Int)
    {
        guard !isReadOnly else { throw LogError(.readOnly, "the log was opened read-only", path: directory) }
        guard payload.count <= maxRecordSize else {
            throw LogError(
                .recordTooLarge,
                "record of \(payload.count) bytes exceeds the \(maxRecordSize)-byte maximum for \(segmentSize)-byte segments",
                path: directory)
        }
        return try state.withLock { (state) throws(LogError) -> (lsn: LSN, sync: UInt64, cutsSeen: Int) in
            try state.checkUsable()
            let lsn = try appendLocked(&state, type: Format.recordTypeData, payload: payload)
            return (lsn, state.writtenCoveredBy, state.suffixCuts.count)
        }
    }

    /// Appends one record and returns its LSN. The record is not durable until `commit` returns.
    @discardableResult
    public func append(_ payload: some Sequence<UInt8>) throws(LogError) -> LSN {
        try appendWithoutWaiting(payload).lsn
    }

    private func appendWithoutWaiting(_ payload: some Sequence<UInt8>) throws(LogError) -> (lsn: LSN, cutsSeen: Int) {
        var cutsSeen = 0
        let lsn = try withBytes(of: payload) { (bytes) throws(LogError) -> LSN in
            let appended = try appendReturningSync(bytes)
            cutsSeen = appended.cutsSeen
            return appended.lsn
        }
        return (lsn, cutsSeen)
    }

    /// Appends one record and returns its LSN once it is durable.
    @discardableResult
    public func appendAndCommit(_ payload: some Sequence<UInt8>) throws(LogError) -> LSN {
        try withBytes(of: payload) { (bytes) throws(LogError) in try appendAndCommit(bytes) }
    }

    /// Calls `body` with the payload's bytes: in place when they are contiguous, else copied.
    private func withBytes(
        of payload: some Sequence<UInt8>, _ body: (UnsafeRawBufferPointer) throws(LogError) -> LSN
    ) throws(LogError) -> LSN {
        let result: Result<LSN, LogError>? = payload.withContiguousStorageIfAvailable { buffer in
            Result { () throws(LogError) -> LSN in try body(UnsafeRawBufferPointer(buffer)) }
        }
        if let result { return try result.get() }
        let copied = Array(payload).withUnsafeBytes { bytes in Result { () throws(LogError) -> LSN in try body(bytes) } }
        return try copied.get()
    }

    /// Appends one record and returns its LSN once it is durable (one lock round for both).
    @discardableResult
    public func appendAndCommit(_ payload: UnsafeRawBufferPointer) throws(LogError) -> LSN {
        let (lsn, sync, cutsSeen) = try appendReturningSync(payload)
        guard options.sync != .none else { return lsn }
        _ = try waitUntilDurable(lsn, coveredBy: sync, cutsSeen: cutsSeen)
        return lsn
    }

    /// Fills the active segment up to the next `commitAlignment` boundary with a padding
    /// record (or to the one after, when less than a record header is left).
    func padToCommitAlignment(_ state: inout State) {
        let end = state.segments[state.segments.count - 1].end
        guard let target = paddingTarget(after: end) else { return }
        _ = try? appendLocked(
            &state, type: Format.recordTypePadding,
            payload: UnsafeRawBufferPointer(rebasing: paddingZeros[0..<(target - end - Format.recordHeaderSize)]))
    }

    /// FORMAT.md §8.6 step 7: the records recovery kept are about to be called durable, so the
    /// next commit must not change a sector (or page) holding any of them. An end off the
    /// boundary is padded to it and synced now, while nothing there is acknowledged yet. The
    /// padding claims only `proven`: a crash may garble the unit it shares with the last records,
    /// and a claim covering them would turn that torn write into a corruption verdict.
    private func padRecoveredEndToCommitAlignment(claiming proven: LSN) throws(LogError) {
        try state.withLock { (state) throws(LogError) in
            let index = state.segments.count - 1
            guard paddingTarget(after: state.segments[index].end) != nil else { return }
            let durable = state.durableLSN
            state.durableLSN = min(proven, durable)
            padToCommitAlignment(&state)
            state.durableLSN = durable
            let segment = state.segments[index].segment
            do throws(Errno) { try segment.descriptor.dataSync() } catch {
                throw LogError.system(
                    error, "recovery could not sync the padding to the commit boundary", path: segment.path,
                    offset: UInt64(state.segments[index].syncedEnd))
            }
            state.segments[index].syncedEnd = state.segments[index].end
            state.segments[index].writeBehindEnd = state.segments[index].end
        }
    }

    /// Where a padding record written at `end` ends, so that the next record starts at the
    /// next `commitAlignment` boundary (or the one after, when less than a record header is
    /// left); nil when `end` is aligned already or there is no room for a padding record.
    func paddingTarget(after end: Int) -> Int? {
        let alignment = options.commitAlignment.bytes
        guard end % alignment != 0 else { return nil }
        var target = alignUp(end, to: alignment)
        if target - end < Format.recordHeaderSize { target += alignment }
        target = min(target, segmentSize)
        guard target - end >= Format.recordHeaderSize else { return nil }
        return target
    }

    private func appendLocked(_ state: inout State, type: UInt16, payload: UnsafeRawBufferPointer) throws(LogError)
        -> LSN
    {
        let footprint = Format.recordFootprint(payloadLength: payload.count)
        if state.segments[state.segments.count - 1].end + footprint > segmentSize {
            try roll(&state)
        }
        let index = state.segments.count - 1
        let offset = state.segments[index].end
        let lsn = type == Format.recordTypeData ? state.writtenLSN + 1 : state.writtenLSN
        let record = state.segments[index].base + offset
        RecordHeader(crc: 0, length: UInt32(payload.count), lsn: lsn, durableLSN: state.durableLSN, type: type)
            .storeFields(to: record)
        if let source = payload.baseAddress, payload.count > 0 {
            (record + Format.recordHeaderSize).copyMemory(from: source, byteCount: payload.count)
        }
        let padding = footprint - Format.recordHeaderSize - payload.count
        if padding > 0 {
            (record + Format.recordHeaderSize + payload.count).initializeMemory(as: UInt8.self, repeating: 0, count: padding)
        }
        let crc = RecordHeader.checksum(
            recordAt: record, payloadLength: payload.count, saltCRC: state.segments[index].saltCRC)
        record.storeBytes(of: crc.littleEndian, as: UInt32.self)
        if type == Format.recordTypeData {
            state.segments[index].recordOffsets.append(UInt32(offset))
            state.writtenLSN = lsn
            state.writtenCoveredBy = state.syncsStarted + 1
            state.unreportedAppends.records &+= 1
            state.unreportedAppends.bytes &+= payload.count
        }
        state.segments[index].end = offset + footprint
        FaultInjection.crashPoint("after append of LSN \(lsn)", directory: directory)
        if !state.nextSegmentRequested, offset + footprint > segmentSize / 2 {
            state.nextSegmentRequested = true
            preparer?.prepareNext()
        }
        if options.writeBehindBytes > 0 {
            let completePages = alignDown(offset + footprint, to: writeBehindUnit)
            let started = max(state.segments[index].writeBehindEnd, state.segments[index].syncedEnd)
            if completePages - started >= options.writeBehindBytes {
                // Write-back write-protects every mapped page it writes, one TLB flush (and, with
                // another thread of this process running, one IPI) per page. These pages are
                // complete and never written again, so their mappings go first, in one flush.
                state.segments[index].segment.mapping.unmapPageTables(
                    pages: alignDown(started, to: Format.pageSize)..<completePages)
                state.segments[index].segment.descriptor.startWriteback(offset: started, length: completePages - started)
                state.segments[index].writeBehindEnd = completePages
            }
        }
        if let prefaulter, offset + footprint >= state.segments[index].prefaultCheckAt {
            // Only while no sync runs between appends (a bulk load): syncs make the converter
            // write back the pages past the records, which write-protects them again, so that
            // mapping them first would only add work and TLB flushes on a busy machine.
            state.segments[index].prefaultCheckAt = offset + footprint + prefaultAheadBytes / 2
            if state.syncsStarted == state.syncsAtLastPrefaultCheck, !state.prefaultRequested {
                state.prefaultRequested = true
                prefaulter.wake.notifyAll()
            }
            state.syncsAtLastPrefaultCheck = state.syncsStarted
        }
        return lsn
    }

    /// Starts the next segment in a file prepared in the background (or preallocated now). The
    /// roll itself writes only the header; another thread then makes the file durable and gives
    /// it its name (file fsync, rename, directory fsync), and the next commit waits for that
    /// before it acknowledges any record in it, so appends never wait for those syncs. With `SyncMode.none`,
    /// whose commits sync nothing, the segment is installed durably right away instead.
    private func roll(_ state: inout State) throws(LogError) {
        let current = state.segments[state.segments.count - 1].segment
        var generator = SystemRandomNumberGenerator()
        let header = SegmentHeader(
            segmentID: current.id + 1, baseLSN: state.writtenLSN + 1, segmentSize: UInt64(segmentSize), logID: logID,
            salt: generator.next(), durableLSN: state.durableLSN)
        // With no file prepared in time, allocate one now, but leave zero-filling (an
        // optimization) out of the append path.
        let temporaryPath: String
        if let prepared = preparer?.take() {
            temporaryPath = prepared
        } else {
            let started = Log.monotonicNanoseconds()
            temporaryPath = try Segment.preallocateTemporary(
                directory: directory, id: header.segmentID, size: segmentSize, preallocation: options.preallocation,
                stopZeroFilling: { true })
            metrics?.preallocationInRoll.recordNanoseconds(Log.monotonicNanoseconds() - started)
        }
        let segment: Segment
        var pending: PendingInstall?
        if options.sync == .none {
            segment = try Segment.install(preallocatedAt: temporaryPath, directory: directory, header: header)
        } else {
            segment = try Segment.openUnnamed(temporaryPath: temporaryPath, directory: directory, header: header)
            pending = PendingInstall(segment: segment, temporaryPath: temporaryPath, directory: directory,
                                     on: installQueue)
        }
        state.nextSegmentRequested = false
        retentionWorker?.kick()
        FaultInjection.crashPoint("at the roll to segment \(header.segmentID)", directory: directory)
        state.segments.append(
            OpenSegment(segment: segment, base: segment.base, saltCRC: segment.saltCRC, recordOffsets: [],
                        end: Format.segmentHeaderSize, syncedEnd: Format.segmentHeaderSize,
                        writeBehindEnd: Format.segmentHeaderSize, pendingInstall: pending))
        reportRoll(&state, into: header)
    }

    // MARK: - Committing

    /// Returns once every record appended before this call is durable, and returns `durableLSN`.
    /// Concurrent callers share syncs (group commit, see GroupCommit.swift). With
    /// `SyncMode.none` it returns at once and nothing becomes durable.
    ///
    /// After a failed sync the log is poisoned: this and every later append or commit throws,
    /// and `durableLSN` never moves again, until the log is closed and reopened.
    @discardableResult
    public func commit() throws(LogError) -> LSN {
        guard !isReadOnly else { throw LogError(.readOnly, "the log was opened read-only", path: directory) }
        let (target, sync, cutsSeen) = try state.withLock { (state) throws(LogError) -> (LSN, UInt64, Int) in
            try state.checkUsable()
            return (state.writtenLSN, state.writtenCoveredBy, state.suffixCuts.count)
        }
        guard options.sync != .none else {
            reportAppendsSoFar()
            return durableLSN
        }
        return try waitUntilDurable(target, coveredBy: sync, cutsSeen: cutsSeen)
    }

    /// `commit()` for async callers: suspends until every record appended before the call is
    /// durable, without blocking a thread of the cooperative pool.
    @discardableResult
    public func commit() async throws(LogError) -> LSN {
        guard !isReadOnly else { throw LogError(.readOnly, "the log was opened read-only", path: directory) }
        let (target, cutsSeen) = try state.withLock { (state) throws(LogError) -> (LSN, Int) in
            try state.checkUsable()
            return (state.writtenLSN, state.suffixCuts.count)
        }
        guard options.sync != .none else {
            reportAppendsSoFar()
            return durableLSN
        }
        return try await awaitDurable(target, cutsSeen: cutsSeen)
    }

    /// Appends one record and returns its LSN once it is durable, suspending (not blocking) in
    /// between; records appended concurrently share one sync. With `SyncMode.none` it returns
    /// at once and the record is not durable.
    ///
    /// In async code this overload wins over the synchronous `append(_:)`, which does not wait;
    /// to append without waiting there, pass an `UnsafeRawBufferPointer`
    /// (`try bytes.withUnsafeBytes { try log.append($0) }`) and `commit` later.
    @discardableResult
    public func append(_ payload: some Sequence<UInt8> & Sendable) async throws(LogError) -> LSN {
        let (lsn, cutsSeen) = try appendWithoutWaiting(payload)
        guard options.sync != .none else { return lsn }
        _ = try await awaitDurable(lsn, cutsSeen: cutsSeen)
        return lsn
    }

    // MARK: - Reading

    /// The LSN of the oldest record in the log (1 for a new log).
    public var firstLSN: LSN { state.withLock { $0.firstLSN } }
    /// The last LSN appended (durable or not); `firstLSN - 1` when the log is empty.
    public var writtenLSN: LSN { state.withLock { $0.writtenLSN } }
    /// The last LSN covered by a completed sync. For a read-only open: the last LSN the log
    /// proves was durable.
    public var durableLSN: LSN { durableWatermark.load(ordering: .acquiring) }

    /// The record at `lsn`, which must be in `firstLSN...writtenLSN`.
    public func record(_ lsn: LSN) throws(LogError) -> Record {
        let (segment, offset, cutsSeen) = try locate(lsn)
        let payload = try checkingTruncation(of: lsn, cutsSeen: cutsSeen) { () throws(LogError) in
            try withExtendedLifetime(segment) { () throws(LogError) in
                Array(try segment.payload(ofRecordAt: offset, lsn: lsn))
            }
        }
        return Record(lsn: lsn, segment: segment.name, offset: offset, payload: payload)
    }

    /// Runs `read` (a copy of record `lsn`, found after `cutsSeen` suffix truncations) and
    /// throws `lsnOutOfRange` if a `removeAfter` removed the record meanwhile: it zeroes removed
    /// bytes in place, so the copy may be torn, or the read may have failed on the zeros (which
    /// is not corruption).
    func checkingTruncation<Value>(of lsn: LSN, cutsSeen: Int, _ read: () throws(LogError) -> Value)
        throws(LogError) -> Value
    {
        let removed = LogError(
            .lsnOutOfRange, "LSN \(lsn) was removed by removeAfter while it was read", path: directory, lsn: lsn)
        let value: Value
        do { value = try read() } catch {
            if truncationError(lsn, cutsSeen: cutsSeen) != nil { throw removed }
            throw error
        }
        if truncationError(lsn, cutsSeen: cutsSeen) != nil { throw removed }
        return value
    }

    /// The payload of the record at `lsn`.
    public func read(_ lsn: LSN) throws(LogError) -> [UInt8] { try record(lsn).payload }

    /// Records from `start` (default `firstLSN`) through `end` (default the `writtenLSN` of now),
    /// copied, one per `next()`:
    ///
    /// ```swift
    /// var records = log.records(from: 1)
    /// while let record = try records.next() { ... }
    /// ```
    ///
    /// `next()` throws what `record(_:)` throws, e.g. `corruption` for a sealed segment found
    /// damaged on its first read, or `lsnOutOfRange` for records removed meanwhile: a reader
    /// never mistakes damage for the end of the log. For reads without copies see
    /// `forEachRecord(in:verifyingChecksums:_:)`.
    public func records(from start: LSN? = nil, through end: LSN? = nil) -> Records {
        let (first, written) = state.withLock { ($0.firstLSN, $0.writtenLSN) }
        return Records(log: self, nextLSN: max(start ?? first, first), lastLSN: min(end ?? written, written))
    }

    /// The records of an LSN range, read one at a time (see `records(from:through:)`). Not a
    /// `Sequence`, because reading can fail and a `Sequence` could only end there.
    public struct Records: Sendable {
        let log: Log
        var nextLSN: LSN
        let lastLSN: LSN

        /// The next record, or nil past the end of the range; throws (and throws again if
        /// called again) when the next record cannot be read.
        public mutating func next() throws(LogError) -> Record? {
            guard nextLSN <= lastLSN else { return nil }
            let record = try log.record(nextLSN)
            nextLSN += 1
            return record
        }

        /// The remaining records, copied into an array.
        public consuming func collect() throws(LogError) -> [Record] {
            var records: [Record] = []
            while let record = try next() { records.append(record) }
            return records
        }
    }

    /// The segment holding `lsn`, the offset of its record and the number of suffix truncations
    /// so far: O(log segments) under the state lock, then O(1) (a segment not checked at open
    /// is first indexed, outside the lock).
    func locate(_ lsn: LSN) throws(LogError) -> (Segment, Int, cutsSeen: Int) {
        let (segment, offset, deferred, cutsSeen) = try state.withLock {
            (state) throws(LogError) -> (Segment, Int, DeferredSegmentIndex?, Int) in
            let index = try state.segmentIndex(of: lsn, directory: directory)
            let segment = state.segments[index].segment
            if let deferred = state.segments[index].deferredIndex {
                return (segment, 0, deferred, state.suffixCuts.count)
            }
            return (segment, Int(state.segments[index].recordOffsets[Int(lsn - segment.header.baseLSN)]), nil,
                    state.suffixCuts.count)
        }
        guard let deferred else { return (segment, offset, cutsSeen) }
        return (segment, try deferred.offset(of: lsn), cutsSeen)
    }

    /// The segments, oldest first. For a sealed segment not checked at open (after a clean
    /// close), `bytesUsed` indexes it first (one pass over its records).
    public var segments: [SegmentInfo] {
        let infos = state.withLock { state in
            state.segments.map {
                (SegmentInfo(
                    name: $0.segment.name, id: $0.segment.id, baseLSN: $0.segment.header.baseLSN,
                    recordCount: $0.recordCount, bytesUsed: $0.end, bytesAllocated: $0.segment.size),
                 $0.deferredIndex)
            }
        }
        // Outside the lock: indexing a deferred segment is a pass over all of it.
        return infos.map { info, deferred in
            var info = info
            if let deferred { info.bytesUsed = deferred.index.end }
            return info
        }
    }

    /// The pid of the process holding the writer lock of `directory`, or nil if none does.
    public static func lockHolder(_ directory: String) -> Int32? { DirectoryLock.holder(directory: directory) }

    // MARK: - Closing

    /// Commits, writes a close marker (which lets recovery prove every record durable), and
    /// releases the writer lock. Later calls on this log throw `closed`.
    public func close() throws(LogError) {
        defer {
            let unreported = state.withLock { state -> AppendCounts? in
                defer {
                    state.isClosed = true
                    state.segments.removeAll()
                }
                return state.isClosed ? nil : state.unreportedAppends.take()
            }
            // Whoever still waits for a record that did not become durable gets `closed`.
            refusing.store(true, ordering: .sequentiallyConsistent)
            syncer?.stop()
            waker?.stop()
            converter?.stop()
            prefaulter?.stop()
            retentionWorker?.stop()
            wakeEveryWaiter()
            preparer?.discard()
            watermarkFile.withLock { $0 = nil }
            // No installation may rename a file into the directory once another writer can own it.
            installQueue.sync {}
            syncEngine.withLock { engine in
                engine.ranges.removeAll()
                engine.installs.removeAll()
            }
            // A truncation carrying out its intent finishes before another writer may open.
            truncationLock.withLock { _ in }
            lock?.release()
            if !isReadOnly, let unreported { reportClose(unreported) }
        }
        guard !isReadOnly, state.withLock({ $0.poison == nil && !$0.isClosed }) else { return }
        try commit()
        guard options.sync != .none else { return }
        try syncEngine.withLock { (engine) throws(LogError) in
            let marker = try state.withLock { (state) throws(LogError) -> (Segment, Range<Int>)? in
                // Another thread may have closed the log meanwhile, or a failed `removeAfter`,
                // which held `syncEngine`, poisoned it since the check above.
                guard !state.isClosed, state.poison == nil, let last = state.segments.last else { return nil }
                guard state.durableLSN == state.writtenLSN,
                    last.end + Format.recordHeaderSize <= segmentSize
                else { return nil }
                _ = try appendLocked(&state, type: Format.recordTypeCloseMarker, payload: UnsafeRawBufferPointer(start: nil, count: 0))
                return (last.segment, last.syncedEnd..<(last.end + Format.recordHeaderSize))
            }
            guard let (segment, bytes) = marker else { return }
            engine.ranges.removeAll(keepingCapacity: true)
            engine.ranges.append((segment, bytes))
            do throws(LogError) { try sync(&engine) } catch {
                poison(error)
                throw error
            }
        }
    }
}

/// The installation of a rolled-into segment (file fsync, rename, directory fsync), running on
/// the log's installer queue while appends go on.
final class PendingInstall: Sendable {
    let segment: Segment
    private let done = DispatchGroup()
    private let outcome = Mutex<Errno?>(nil)

    init(segment: Segment, temporaryPath: String, directory: String, on queue: DispatchQueue) {
        self.segment = segment
        done.enter()
        queue.async { [self] in
            do throws(Errno) {
                try FaultInjection.check(.sync, directory: directory)
                try segment.install(from: temporaryPath)
                try FileSystem.syncDirectory(directory)
            } catch {
                outcome.withLock { $0 = error }
            }
            done.leave()
        }
    }

    /// Waits for the installation; nil when it succeeded.
    func wait() -> Errno? {
        done.wait()
        return outcome.withLock { $0 }
    }
}

/// The zero payload of padding records (at most two pages).
private nonisolated(unsafe) let paddingZeros: UnsafeRawBufferPointer = {
    let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: 2 * Format.pageSize, alignment: Format.pageSize)
    zeros.initializeMemory(as: UInt8.self, repeating: 0)
    return UnsafeRawBufferPointer(zeros)
}()

/// The directory holding `path` ("." for a relative name without a slash).
func parentDirectory(of path: String) -> String {
    let parent = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
    return parent.isEmpty ? (path.hasPrefix("/") ? "/" : ".") : parent
}
