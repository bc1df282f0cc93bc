extension Log {
    /// The records from `start` on (default: `firstLSN`; an earlier LSN starts there too), each
    /// yielded only once it is durable — covered by a completed sync, `lsn <= durableLSN` —
    /// never when it is merely appended. A tail of the log inside the writing process.
    ///
    /// Waiting costs no thread: the iterator suspends until a sync covering its next record
    /// completes, and the log's syncer (or the committing caller) resumes it, as it resumes
    /// `commit() async` callers. It never asks for a sync itself: records appended but never
    /// committed are never yielded.
    ///
    /// - The sequence ends (`next()` returns nil) when the log is closed, at the first record
    ///   not yet yielded then, even if it was durable (read the rest after reopening, or with a
    ///   `LogFollower`); and when the task is cancelled.
    /// - When the log is poisoned by a failed sync, it yields the records that were durable
    ///   before the failure, then throws the `poisoned` error.
    /// - With `SyncMode.none` nothing becomes durable after the log is opened: the sequence
    ///   yields the records recovered at open and then waits until the log is closed or the
    ///   task is cancelled.
    /// - Records removed by `removeBefore` (or retention) before they are yielded make it throw
    ///   `lsnOutOfRange`. A `removeAfter` below a record it already yielded makes it throw `truncated` (the
    ///   caller then knows what it saw is gone, and can start again from the new end); a
    ///   `removeAfter` above does not disturb it, and records appended in place of removed
    ///   ones are yielded once durable.
    ///
    /// To follow a log another process writes, use `LogFollower`.
    public func durableRecords(from start: LSN? = nil) -> DurableRecords {
        DurableRecords(log: self, start: start)
    }

    /// See `Log.durableRecords(from:)`.
    public struct DurableRecords: AsyncSequence, Sendable {
        public typealias Element = Record
        public typealias Failure = LogError

        let log: Log
        let start: LSN?

        public func makeAsyncIterator() -> Iterator {
            Iterator(log: log, nextLSN: Swift.max(start ?? 0, log.firstLSN),
                     cutsSeen: log.suffixCutCount.load(ordering: .sequentiallyConsistent))
        }

        public struct Iterator: AsyncIteratorProtocol {
            public typealias Element = Record
            public typealias Failure = LogError

            let log: Log
            /// The LSN this iterator yields next.
            public private(set) var nextLSN: LSN
            /// The number of `removeAfter` calls the iterator has accounted for.
            var cutsSeen: Int
            /// The highest LSN yielded (0: none).
            var yielded: LSN = 0

            public mutating func next() async throws(LogError) -> Record? { try await next(isolation: nil) }

            public mutating func next(isolation actor: isolated (any Actor)?) async throws(LogError) -> Record? {
                while !Task.isCancelled {
                    let cuts = log.suffixCutCount.load(ordering: .sequentiallyConsistent)
                    if cuts != cutsSeen {
                        let lowest = log.state.withLock { $0.suffixCuts[cutsSeen...].min() }
                        cutsSeen = cuts
                        if let lowest, lowest < yielded {
                            throw LogError(
                                .truncated, "removeAfter(\(lowest)) removed records up to LSN \(yielded) that this "
                                    + "sequence already yielded", path: log.directory, lsn: lowest + 1)
                        }
                    }
                    if nextLSN <= log.durableLSN {
                        let record: Record
                        do { record = try log.record(nextLSN) } catch {
                            if error.code == .closed { return nil }
                            // Removed between the check and the read: the loop sorts it out.
                            if log.suffixCutCount.load(ordering: .sequentiallyConsistent) != cuts { continue }
                            throw error
                        }
                        // A removeAfter meanwhile may have put a record that is not durable yet
                        // in place of the one that was.
                        if log.suffixCutCount.load(ordering: .sequentiallyConsistent) != cuts { continue }
                        nextLSN += 1
                        yielded = record.lsn
                        return record
                    }
                    if log.refusing.load(ordering: .acquiring) {
                        do { try log.state.withLock { (state) throws(LogError) in try state.checkUsable() } } catch {
                            if error.code == .closed { return nil }
                            throw error
                        }
                    }
                    // Resumed by the sync that makes `nextLSN` durable, or by close or a failure,
                    // which the loop then tells apart.
                    guard await log.awaitDurableWithoutSyncing(nextLSN, cutsSeen: cuts) != nil else { return nil }
                }
                return nil
            }
        }
    }
}
