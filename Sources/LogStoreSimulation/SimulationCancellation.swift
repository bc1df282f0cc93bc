import Foundation
import Synchronization

/// Stops a simulation from another thread (logctl on SIGINT) and tells when nothing of it is
/// touching its files any more, so that they can be removed without a state being written
/// into a directory being removed.
package final class SimulationCancellation: Sendable {
    private let cancelled = Atomic<Bool>(false)
    private let active = Atomic<Int>(0)

    package init() {}

    package var isCancelled: Bool { cancelled.load(ordering: .sequentiallyConsistent) }

    /// Marks the start of a piece of work on the simulation's files; false (and nothing to
    /// `leave`) once cancelled. Counting first, then checking, is what makes `cancel` safe: it
    /// either sees the count or the work sees the flag.
    package func enter() -> Bool {
        active.add(1, ordering: .sequentiallyConsistent)
        guard !cancelled.load(ordering: .sequentiallyConsistent) else {
            active.subtract(1, ordering: .sequentiallyConsistent)
            return false
        }
        return true
    }

    package func leave() { active.subtract(1, ordering: .sequentiallyConsistent) }

    /// Stops new work and waits (up to `timeout` seconds) for the work under way to finish.
    package func cancel(timeout: Double = 2) {
        cancelled.store(true, ordering: .sequentiallyConsistent)
        var waited = 0.0
        while active.load(ordering: .sequentiallyConsistent) > 0 && waited < timeout {
            usleep(1_000)
            waited += 0.001
        }
    }
}
