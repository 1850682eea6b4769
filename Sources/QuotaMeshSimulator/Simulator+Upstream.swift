import QuotaMeshCore
import QuotaMeshCrypto

/// The stand-in upstream: a real quota (a fixed window or a token bucket) that answers with rate-limit
/// headers and 429s.
extension Simulator {
    func upstreamWindow(_ time: Int64) -> Int64 { time / configuration.windowMillis }

    /// Whether a task made at `created` and served at `done` waited while the mesh had a right it could
    /// spend: made outside its window's closing edge and opening lead (where no node spends), and served
    /// before the window's last right was spent (a window never spent in full had rights left all along).
    func rightsExisted(whileWaiting created: Int64, until done: Int64) -> Bool {
        let length = configuration.windowMillis
        let edge = min(max(50, configuration.clockSkewMillis + configuration.upstreamLatencyMillis), length / 20)
        let lead = min(configuration.clockSkewMillis, length / 20)
        let window = upstreamWindow(created)
        let offset = created - window * length
        guard offset >= lead, offset < length - edge else { return false }
        if let spentAt = windowSpentAt[window], spentAt <= done { return false }
        return true
    }

    mutating func callUpstream(_ task: Int) {
        upstreamCalls += 1
        upstreamCallTimes.append(now)
        let window = upstreamWindow(now)
        if backlogAtWindowStart[window] == nil { backlogAtWindowStart[window] = pending }
        windowSent[window, default: 0] += 1
        if windowSent[window, default: 0] == Int(configuration.limit) { windowSpentAt[window] = now }
        let limit = configuration.limit
        var headers: [(name: String, value: String)] = [("date", Self.httpDate(now))]
        var status = 200
        switch configuration.upstream {
        case .fixedWindow:
            let accepted = windowAccepted[window, default: 0]
            let windowEnd = (window + 1) * configuration.windowMillis
            if accepted < limit {
                windowAccepted[window] = accepted + 1
            } else {
                status = 429
                headers.append(("retry-after", "\(max(1, (windowEnd - now + 999) / 1000))"))
            }
            headers += [
                ("x-ratelimit-limit", "\(limit)"),
                ("x-ratelimit-remaining", "\(max(0, limit - Int64(windowAccepted[window, default: 0])))"),
                ("x-ratelimit-reset", "\((windowEnd + 999) / 1000)"),
            ]
        case .tokenBucket:
            let refill = Double(limit) / Double(configuration.windowMillis)
            tokens = min(Double(limit), tokens + Double(now - tokensAt) * refill)
            tokensAt = now
            if tokens >= 1 {
                tokens -= 1
                windowAccepted[window, default: 0] += 1
            } else {
                status = 429
                headers.append(("retry-after-ms", "\(Int64(((1 - tokens) / refill).rounded(.up)))"))
            }
            headers += [
                ("ratelimit-policy", "\"default\";q=\(limit);w=\(configuration.windowMillis / 1000)"),
                ("ratelimit", "\"default\";r=\(Int64(tokens));t=\(Int64(((Double(limit) - tokens) / refill / 1000).rounded(.up)))"),
            ]
        }
        let second = (now - start) / 1000
        callsPerSecond[second, default: (0, 0)].sent += 1
        if status == 429 {
            upstream429s += 1
            callsPerSecond[second, default: (0, 0)].rejected += 1
        }
        schedule(.response(task: task, status: status, headers: headers), at: now + configuration.upstreamLatencyMillis / 2)
    }
}
