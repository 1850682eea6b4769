import Dispatch
import Foundation

/// Runs CPU-bound work on a thread of its own and awaits its result.
///
/// A simulation is seconds of uninterrupted CPU work. Run on the test runner's cooperative pool (one
/// thread a core) a few of them hold every thread, and each async test of the process — a node answering
/// HTTP, a breaker counting down a `Retry-After` — stalls until they end: CI once saw a 30 s breaker
/// expire between two calls of one test that way. On threads of their own the kernel shares the cores
/// between the simulations and everything else. At most one simulation a core runs at a time.
func onASimulationThread<Result: Sendable>(_ work: @escaping @Sendable () -> Result) async -> Result {
    await withCheckedContinuation { continuation in
        let thread = Thread {
            SimulationThreads.permits.wait()
            defer { SimulationThreads.permits.signal() }
            continuation.resume(returning: work())
        }
        thread.name = "simulation"
        thread.start()
    }
}

/// The permits that bound how many simulations run at once.
private enum SimulationThreads {
    static let permits = DispatchSemaphore(value: max(1, ProcessInfo.processInfo.activeProcessorCount))
}
