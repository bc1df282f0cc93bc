import Dispatch
import Synchronization

/// Preallocates the next segment's file in the background (allocated, zero-filled too with
/// `.zeroFill`, fsync'd, under a `*.seg.tmp` name), so that a roll only writes a header page
/// into it instead of creating a whole file inside an append. It also reads the file's first
/// `warmBytes` into the page cache (clean pages of zeros, so nothing more to write): the first
/// stores after the roll then find their pages cached instead of each allocating and
/// zero-filling a read-ahead window, while the prefaulter (Prefault.swift) only starts.
final class SegmentPreparer: Sendable {
    private enum Slot: Sendable {
        case empty
        case preparing
        case ready(path: String)
    }

    private let directory: String
    private let size: Int
    private let preallocation: Preallocation
    private let warmBytes: Int
    private let slot = Mutex<Slot>(.empty)
    private let queue = DispatchQueue(label: "LogStore.SegmentPreparer")
    private let inFlight = DispatchGroup()
    /// Set by `take()`: a roll needs the file now, so zero-filling stops where it is.
    private let hurry = Atomic<Bool>(false)
    private let metrics: LogMetrics?

    init(directory: String, size: Int, preallocation: Preallocation, warmBytes: Int = 0, metrics: LogMetrics? = nil) {
        self.metrics = metrics
        self.warmBytes = min(max(warmBytes, 0), size)
        self.directory = directory
        self.size = size
        self.preallocation = preallocation
    }

    /// Starts preparing a file unless one is ready or being prepared.
    func prepareNext() {
        let start = slot.withLock { slot in
            guard case .empty = slot else { return false }
            slot = .preparing
            return true
        }
        guard start else { return }
        inFlight.enter()
        queue.async { [self] in
            defer { inFlight.leave() }
            var generator = SystemRandomNumberGenerator()
            let path = directory + "/prepared-" + String(generator.next() as UInt64, radix: 16) + "."
                + Format.segmentFileExtension + "." + Format.temporaryFileExtension
            do {
                let started = Log.monotonicNanoseconds()
                try Segment.preallocate(
                    path, size: size, preallocation: preallocation, directory: directory,
                    stopZeroFilling: { hurry.load(ordering: .relaxed) })
                metrics?.preallocationInBackground.recordNanoseconds(Log.monotonicNanoseconds() - started)
                // A roll waiting for the file stops it (`take()`).
                Segment.warmPageCache(path, bytes: warmBytes) { hurry.load(ordering: .relaxed) }
                slot.withLock { $0 = .ready(path: path) }
            } catch {
                // The roll creates the segment itself and reports the error (e.g. a full disk).
                slot.withLock { $0 = .empty }
            }
        }
    }

    /// Waits for a preparation in flight to finish without hurrying it.
    func waitUntilPrepared() { inFlight.wait() }

    /// Waits for a preparation in flight and hands over the prepared file's path, if any.
    func take() -> String? {
        hurry.store(true, ordering: .relaxed)
        inFlight.wait()
        hurry.store(false, ordering: .relaxed)
        return slot.withLock { slot in
            defer { slot = .empty }
            if case .ready(let path) = slot { return path }
            return nil
        }
    }

    /// Waits for a preparation in flight and deletes what it prepared.
    func discard() {
        if let path = take() { try? FileSystem.unlink(path) }
    }
}
