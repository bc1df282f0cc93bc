#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLinuxShims
import SystemPackage

// Converting the active segment's extents ahead of the appends.
//
// A segment preallocated with fallocate(2) alone is unwritten extents. The first write-back of
// each block converts its extent, and a sync that converted one must also make that metadata
// durable (ext4: a journal commit, or without a journal a write of the inode's extents). With
// small durable commits that is every sync whose records reach a new block: one in 25 with one
// writer, nearly all of them with 64 (BENCHMARKS.md, "Converting extents ahead"). So a background thread keeps the
// `Options.convertAheadBytes` past the last record converted: it faults those pages in
// writable with madvise(MADV_POPULATE_WRITE), which stores nothing (a record a writer copies
// into the same page meanwhile is left as it is), then msyncs them. That writes the pages
// (zeros, or records not yet committed: an early write-back, which the crash model allows)
// and makes the conversions durable, off every commit's path.
//
// It uses a descriptor and a mapping of its own (the segment reopened through /proc/self/fd).
// The kernel reports a write-back error once per open file description (errseq_t), so an
// error its msync consumes is still reported to the writer's own next sync: the conversion
// cannot hide a lost page from a commit (fsyncgate).

extension Log {
    /// The next range of the active segment to convert, when the converted part reaches less
    /// than half of `convertAheadBytes` past the last record.
    func nextConversion(_ state: borrowing State) -> (segment: Segment, bytes: Range<Int>)? {
        // Called after every sync: fields by index, since copying the OpenSegment retains and
        // releases its references.
        guard !state.isClosed, !state.isPoisoned, let index = state.segments.indices.last else { return nil }
        let tail = alignUp(state.segments[index].end, to: Format.pageSize)
        let start = max(state.segments[index].convertedEnd, tail)
        let ahead = min(options.convertAheadBytes, segmentSize)
        let limit = min(segmentSize, alignUp(tail + ahead, to: Format.pageSize))
        guard start < limit, start < tail + ahead / 2 else { return nil }
        return (state.segments[index].segment, start..<limit)
    }

    /// The converter thread's loop: converts once per request of a sync (when `nextConversion`
    /// finds something), else sleeps until the next request. Stops for good at the first
    /// failure (conversion is only an optimization; syncs convert by themselves).
    static func runConverter(_ converter: LoopThread, log weakLog: WeakLog) {
        converter.runRounds(log: weakLog) { log in
            // Only when a sync asked: chasing a bulk load's tail on its own would double its
            // disk writes for no commit's benefit.
            guard log.conversionRequested.exchange(false, ordering: .acquiringAndReleasing),
                let (segment, bytes) = log.state.withLock({ log.nextConversion($0) })
            else { return .idle }
            let directory = log.directory
            // A megabyte written back can take longer than a reopen waits for a dropped
            // writer's lock (DirectoryLock.acquire).
            return .withoutLog({ () throws(Errno) in
                FaultInjection.conversionStarting(directory: directory, bytes: bytes)
                try convertExtents(of: segment, bytes: bytes)
            }, then: { log, failure in
                if let failure {
                    log.reportStoppedAhead(
                        "stopped converting extents ahead of the appends", segment: segment, offset: bytes.lowerBound,
                        error: failure)
                    return .finished
                }
                log.metrics?.convertedBytes.increment(by: bytes.count)
                log.state.withLock { state in
                    if let index = state.segments.lastIndex(where: { $0.segment === segment }) {
                        state.segments[index].convertedEnd = max(state.segments[index].convertedEnd, bytes.upperBound)
                    }
                }
                return .worked
            })
        }
    }

    /// Writes `bytes` (page-aligned offsets) of `segment` back through a descriptor and mapping
    /// of its own, converting their extents; changes no byte.
    static func convertExtents(of segment: Segment, bytes: Range<Int>) throws(Errno) {
        // The segment, alive for the whole call, keeps its descriptor number from being reused.
        let descriptor = try withExtendedLifetime(segment) { () throws(Errno) in
            try OwnedDescriptor(path: "/proc/self/fd/\(segment.descriptor.raw.rawValue)", flags: O_RDWR)
        }
        let mapping = try Mapping(descriptor, offset: bytes.lowerBound, length: bytes.count, writable: true)
        try mapping.populateWritable()
        try mapping.sync(pages: 0..<bytes.count)
    }
}
