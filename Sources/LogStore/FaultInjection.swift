import Synchronization
import SystemPackage

/// A test seam: makes the N-th call at a named point fail with a chosen errno, so tests can
/// produce ENOSPC or EIO where a real disk cannot be made to fail on demand.
enum FaultInjection {
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
        rules.withLock {
            $0.append(
                Rule(point: point, remainingBeforeFailure: after, remainingFailures: times, errno: errno,
                     directory: directory))
        }
        armed.store(true, ordering: .releasing)
    }

    /// Starts recording every sync the log in `directory` issues.
    static func observeSyncs(directory: String) {
        observed.withLock { $0[directory] = [] }
        armed.store(true, ordering: .releasing)
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

    static func disarm(directory: String) {
        observed.withLock { _ = $0.removeValue(forKey: directory) }
        let empty = rules.withLock { rules in
            rules.removeAll { $0.directory == directory }
            return rules.isEmpty && observed.withLock { $0.isEmpty }
        }
        if empty { armed.store(false, ordering: .releasing) }
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
