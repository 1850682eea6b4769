/// Acquires that wait for a grant (an agent's `wait_ms`, or a short wait for rights asked of peers):
/// served urgent first and in arrival order within a priority; within a service, lower priorities wait
/// while a higher one still does.
struct WaitQueue: Sendable {
    private var waiters: [Waiter] = []
    private var nextOrder: UInt64 = 0

    var count: Int { waiters.count }
    var isEmpty: Bool { waiters.isEmpty }

    /// Queues an acquire that was refused with `decision` and may wait until `deadline`.
    mutating func enqueue(ticket: UInt64, request: AcquireRequest, deadline: UnixMillis, decision: AcquireDecision) {
        waiters.append(Waiter(ticket: ticket, request: request, deadline: deadline, order: nextOrder, lastDecision: decision))
        nextOrder += 1
    }

    /// Drops a waiting acquire (its agent went away).
    mutating func cancel(ticket: UInt64) { waiters.removeAll { $0.ticket == ticket } }

    /// The cost waiting for `service` at `priority` or above.
    func cost(of service: String, atOrAbove priority: Priority) -> Double {
        waiters.reduce(0.0) { total, waiter in
            waiter.request.service == service && waiter.request.priority <= priority
                ? total + Double(waiter.request.cost) : total
        }
    }

    /// The earliest time a waiter must be looked at again: its deadline, or when its last refusal said
    /// to ask again (never before `now + 1`); `nil` when none waits.
    func wake(after now: UnixMillis) -> UnixMillis? {
        // Asked after every input: a plain pass, no array built.
        var earliest: UnixMillis?
        for waiter in waiters {
            let due = min(waiter.deadline, max(now + 1, waiter.lastDecision.retryAt ?? waiter.deadline))
            earliest = min(earliest ?? due, due)
        }
        return earliest
    }

    /// One pass over the waiters in order, each decided by `decide` unless a higher priority of its service
    /// still waits; returns the answers, in order: a grant, or a refusal once the waiter's deadline came
    /// (or its next chance falls past it).
    mutating func serve(
        now: UnixMillis, decide: (AcquireRequest) -> AcquireDecision
    ) -> [(ticket: UInt64, decision: AcquireDecision)] {
        guard !waiters.isEmpty else { return [] }
        waiters.sort { ($0.request.priority.rank, $0.order) < ($1.request.priority.rank, $1.order) }
        // Per service, the highest waiting priority and when it may next pass.
        var blocked: [String: (priority: Priority, retryAt: UnixMillis)] = [:]
        var kept: [Waiter] = []
        var answers: [(ticket: UInt64, decision: AcquireDecision)] = []
        for var waiter in waiters {
            if let blocker = blocked[waiter.request.service], blocker.priority < waiter.request.priority {
                if now >= waiter.deadline {
                    answers.append((waiter.ticket, waiter.lastDecision))
                } else {
                    waiter.lastDecision.retryAt = max(waiter.lastDecision.retryAt ?? now, blocker.retryAt)
                    kept.append(waiter)
                }
                continue
            }
            let decision = decide(waiter.request)
            if decision.granted {
                answers.append((waiter.ticket, decision))
                continue
            }
            waiter.lastDecision = decision
            if now >= waiter.deadline || (decision.retryAt ?? .max) > waiter.deadline {
                answers.append((waiter.ticket, decision))
            } else {
                kept.append(waiter)
                if blocked[waiter.request.service] == nil {
                    blocked[waiter.request.service] = (waiter.request.priority, decision.retryAt ?? now + 1)
                }
            }
        }
        waiters = kept
        return answers
    }
}

/// One waiting acquire: its ticket, request, deadline, arrival order and the last refusal.
struct Waiter: Sendable {
    var ticket: UInt64
    var request: AcquireRequest
    var deadline: UnixMillis
    var order: UInt64
    var lastDecision: AcquireDecision
}
