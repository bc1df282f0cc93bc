import SystemPackage

// Mapping the active segment's pages ahead of the appends.
//
// An append copies its record into the segment's mapping. A store into a page not mapped yet
// faults, and on a fresh segment (unwritten extents) that fault also reads ahead: it allocates
// page-cache folios for the whole read-ahead window (read_ahead_kb, 8 MiB here) and zero-fills
// them, in the appending thread. A bulk load of 128-byte records spent about half of its
// appending time there (`perf`; BENCHMARKS.md, "Prefaulting"). So a background thread keeps the pages up to
// `Options.prefaultAheadBytes` past the last record mapped writable in the writer's own mapping
// with madvise(MADV_POPULATE_WRITE), which faults them in as a store would but stores nothing
// (a record copied into the same page meanwhile is left as it is). It writes nothing back: the
// pages are dirty only in memory, and whichever sync or write-back reaches them later writes
// whatever they hold then, as the crash model already allows for any dirty page.
//
// Only for bulk loads: each time the records pass half of `prefaultAheadBytes`, an append asks
// for more only if no sync started since the last time (the first time only counts). With syncs between appends the
// converter writes the pages past the records back (ExtentConversion.swift), which
// write-protects them again, so the appends would fault on them anyway; and on a machine busy
// with durable writers the fault work moved to another thread is not free (BENCHMARKS.md).
//
// It must use the writer's mapping: faulting the pages in through another mapping would fill
// the page cache but leave the writer's page tables empty, so every store would still fault.

extension Log {
    /// `Options.prefaultAheadBytes`, at most a segment (so that adding it cannot overflow).
    var prefaultAheadBytes: Int { min(max(options.prefaultAheadBytes, 0), segmentSize) }

    /// Takes an append's request: the range of the active segment to map next, claimed (so a
    /// new request while it is being mapped asks only for what lies past it).
    func claimPrefault(_ state: inout State) -> (segment: Segment, pages: Range<Int>)? {
        guard state.prefaultRequested else { return nil }
        state.prefaultRequested = false
        guard !state.isClosed, !state.isPoisoned, let index = state.segments.indices.last else { return nil }
        let active = state.segments[index]
        let tail = alignUp(active.end, to: Format.pageSize)
        let start = max(active.prefaultedEnd, tail)
        let limit = min(segmentSize, alignUp(active.end + prefaultAheadBytes, to: Format.pageSize))
        guard start < limit else { return nil }
        state.segments[index].prefaultedEnd = limit
        return (active.segment, start..<limit)
    }

    /// The prefaulter thread's loop: maps what an append asked for, else sleeps until the next
    /// request. Stops for good at the first failure (prefaulting is only an optimization).
    static func runPrefaulter(_ prefaulter: LoopThread, log weakLog: WeakLog) {
        prefaulter.runRounds(log: weakLog) { log in
            guard let (segment, pages) = log.state.withLock({ log.claimPrefault(&$0) }) else { return .idle }
            let directory = log.directory
            // Zero-filling 16 MiB is slow enough to outlast a reopen's wait for the lock.
            return .withoutLog({ () throws(Errno) in
                FaultInjection.prefaultStarting(directory: directory, pages: pages)
                try segment.mapping.populateWritable(pages: pages)
            }, then: { log, failure in
                if let failure {
                    log.reportStoppedAhead(
                        "stopped mapping pages ahead of the appends", segment: segment, offset: pages.lowerBound,
                        error: failure)
                    // A request left pending means no append wakes this thread again.
                    log.state.withLock { $0.prefaultRequested = true }
                    return .finished
                }
                log.metrics?.prefaultedBytes.increment(by: pages.count)
                return .worked
            })
        }
    }
}
