import Synchronization
import SystemPackage

/// A test seam: makes the N-th call at a named point fail with a chosen errno, so tests can
/// produce ENOSPC or EIO where a real disk cannot be made to fail on demand; and the events the
/// power-loss simulator (the LogStoreSimulation target, used by the tests and by
/// `logctl crashtest`) observes. Package access, not public: it is no part of the library's API.
///
/// Every hook on a hot path (append, commit, pwrite, sync) first loads one atomic flag and
/// returns when nothing is armed or observed; its arguments (the crash point's name, the
/// event) are autoclosures, built only when something listens.
package enum FaultInjection {
    enum Point: Hashable, Sendable {
        case segmentPreallocation
        case sync
        /// Creating the io_uring of a log opened with `SyncMode.uring`.
        case uringSetup
    }

    struct Rule: Sendable {
        var point: Point
        var remainingBeforeFailure: Int
        var remainingFailures: Int
        var errno: Errno
        var directory: String
    }

    private static let rules = Mutex<[Rule]>([])
    /// Directories whose syncs are being recorded, with what was synced: (segment, byte range).
    private static let observed = Mutex<[String: [(segment: String, bytes: Range<Int>)]]>([:])
    private static let armed = Atomic<Bool>(false)

    /// Lets `after` calls at `point` for the log in `directory` pass, then fails the next
    /// `times` calls with `errno`. Rules are per directory so that tests running in parallel do
    /// not see each other's.
    static func arm(_ point: Point, directory: String, after: Int = 0, times: Int = 1, errno: Errno) {
        // The flag changes under the rules' lock, or a parallel test's `disarm` that found
        // nothing left could clear it after this rule was added.
        rules.withLock {
            $0.append(
                Rule(point: point, remainingBeforeFailure: after, remainingFailures: times, errno: errno,
                     directory: directory))
            armed.store(true, ordering: .releasing)
        }
    }

    /// Starts recording every sync the log in `directory` issues.
    static func observeSyncs(directory: String) {
        rules.withLock { _ in
            observed.withLock { $0[directory] = [] }
            armed.store(true, ordering: .releasing)
        }
    }

    /// The syncs recorded since `observeSyncs`: segment file name and the byte range passed
    /// to msync (page-aligned) or, for fdatasync, the dirty range it was issued for.
    static func recordedSyncs(directory: String) -> [(segment: String, bytes: Range<Int>)] {
        observed.withLock { $0[directory] ?? [] }
    }

    @inline(__always)
    static func noteSync(directory: String, segment: String, bytes: Range<Int>) {
        guard armed.load(ordering: .acquiring) else { return }
        observed.withLock { if $0[directory] != nil { $0[directory]!.append((segment, bytes)) } }
    }

    // MARK: Holding the converter thread (ExtentConversionTests)

    private static let conversionHooks = Mutex<[String: @Sendable (Range<Int>) -> Void]>([:])

    /// Runs `hook` on the converter thread of the log in `directory` with the bytes it is about
    /// to write back, before it touches them (nil removes it).
    static func beforeConversion(directory: String, _ hook: (@Sendable (Range<Int>) -> Void)?) {
        conversionHooks.withLock { $0[directory] = hook }
    }

    static func conversionStarting(directory: String, bytes: Range<Int>) {
        conversionHooks.withLock { $0[directory] }?(bytes)
    }

    // MARK: Holding the prefaulter thread (PrefaultTests)

    private static let prefaultHooks = Mutex<[String: @Sendable (Range<Int>) -> Void]>([:])

    /// Runs `hook` on the prefaulter thread of the log in `directory` with the pages it is about
    /// to map, before it touches them (nil removes it).
    static func beforePrefault(directory: String, _ hook: (@Sendable (Range<Int>) -> Void)?) {
        prefaultHooks.withLock { $0[directory] = hook }
    }

    static func prefaultStarting(directory: String, pages: Range<Int>) {
        prefaultHooks.withLock { $0[directory] }?(pages)
    }

    // MARK: What the disk holds (the power-loss simulator)

    private static let diskReaders = Mutex<[(prefix: String, read: @Sendable (String, Range<Int>) -> [UInt8])]>([])

    /// Makes `read` answer, for files under `prefix`, what the disk holds of a byte range, in
    /// place of a direct read (the simulator's durable image, where a failed sync may have left
    /// pages that are not what the cache shows); nil removes it.
    package static func readDisk(under prefix: String, _ read: (@Sendable (_ path: String, _ bytes: Range<Int>) -> [UInt8])?) {
        diskReaders.withLock { readers in
            readers.removeAll { $0.prefix == prefix }
            if let read { readers.append((prefix, read)) }
        }
    }

    /// What the simulator says the disk holds of `bytes` of the file at `path` (nil when no
    /// simulator models it).
    static func simulatedDiskContents(path: String, bytes: Range<Int>) -> [UInt8]? {
        diskReaders.withLock { readers in readers.first { path.hasPrefix($0.prefix) }?.read }?(path, bytes)
    }

    // MARK: Observing syncs and crash points (the power-loss simulator)

    /// What the power-loss simulator needs to know to keep a durable image of every file: each
    /// completed sync, and the places where it may crash the log.
    package enum Event: Sendable {
        /// `fsync`/`fdatasync` of the whole file now at `path` completed.
        case fileSynced(path: String)
        /// A sync of these page-aligned bytes of the file at `path` completed (msync, or the
        /// range-bounded io_uring fdatasync).
        case pagesSynced(path: String, pages: Range<Int>)
        /// A sync of these pages failed (what happens to them depends on the kernel; the
        /// simulator models the behaviours "Can Applications Recover from fsync Failures?"
        /// describes).
        case syncFailed(path: String, pages: Range<Int>)
        /// `pwrite` of these bytes returned: their pages are dirty, even where the bytes are the
        /// ones the file held.
        case written(path: String, bytes: Range<Int>)
        /// `fsync` of the directory completed: its entries are durable.
        case directorySynced(path: String)
        /// A named place where a crash is interesting (after an append, around a sync, at a
        /// roll, between recovery steps).
        case crashPoint(name: String, directory: String)
    }

    private static let observers = Mutex<[(prefix: String, handler: @Sendable (Event) -> Void)]>([])
    private static let observing = Atomic<Bool>(false)

    /// Calls `handler`, synchronously on the thread concerned, for every event about a path
    /// under `prefix` (a crash point's log directory counts as its path).
    package static func observe(under prefix: String, _ handler: @escaping @Sendable (Event) -> Void) {
        observers.withLock {
            $0.append((prefix, handler))
            observing.store(true, ordering: .releasing)
        }
    }

    package static func stopObserving(under prefix: String) {
        observers.withLock { list in
            list.removeAll { $0.prefix == prefix }
            if list.isEmpty { observing.store(false, ordering: .releasing) }
        }
    }

    static var isObserving: Bool { observing.load(ordering: .acquiring) }

    @inline(__always)
    static func emit(_ event: @autoclosure () -> Event) {
        guard observing.load(ordering: .acquiring) else { return }
        let event = event()
        let path: String
        switch event {
        case .fileSynced(let p), .pagesSynced(let p, _), .syncFailed(let p, _), .written(let p, _),
            .directorySynced(let p):
            path = p
        case .crashPoint(_, let directory): path = directory
        }
        let handlers = observers.withLock { list in list.filter { path.hasPrefix($0.prefix) }.map(\.handler) }
        for handler in handlers { handler(event) }
    }

    @inline(__always)
    static func crashPoint(_ name: @autoclosure () -> String, directory: String) {
        guard observing.load(ordering: .acquiring) else { return }
        emit(.crashPoint(name: name(), directory: directory))
    }

    static func disarm(directory: String) {
        rules.withLock { rules in
            rules.removeAll { $0.directory == directory }
            let noneObserved = observed.withLock { observed in
                _ = observed.removeValue(forKey: directory)
                return observed.isEmpty
            }
            if rules.isEmpty && noneObserved { armed.store(false, ordering: .releasing) }
        }
    }

    @inline(__always)
    static func check(_ point: Point, directory: String) throws(Errno) {
        guard armed.load(ordering: .acquiring) else { return }
        let failure: Errno? = rules.withLock { rules in
            guard let index = rules.firstIndex(where: { $0.point == point && $0.directory == directory }) else { return nil }
            if rules[index].remainingBeforeFailure > 0 {
                rules[index].remainingBeforeFailure -= 1
                return nil
            }
            rules[index].remainingFailures -= 1
            let errno = rules[index].errno
            if rules[index].remainingFailures == 0 { rules.remove(at: index) }
            return errno
        }
        if let failure { throw failure }
    }
}
