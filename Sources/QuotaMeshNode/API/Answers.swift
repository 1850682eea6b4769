import Foundation
import QuotaMeshAPI
import QuotaMeshCore

/// The core's views as the local API's typed answers (snake_case on the wire; times in Unix seconds or
/// seconds from now, as each field names).
public enum Answers {
    /// Q: the merged view of one key.
    public static func quota(_ view: QuotaView, now: UnixMillis) -> QuotaAnswer {
        func next(_ priority: Priority) -> Double { seconds(view.nextAvailableMillis[priority] ?? 0) }
        // The top level describes the tightest dimension (requests when it is the only one).
        let tightest = view.tightest ?? DimensionView(
            name: QuotaKey.requests, limit: view.limit, windowMillis: view.windowMillis, remaining: view.remaining,
            resetAt: view.resetAt, consumedGlobal: view.consumedGlobal, consumedLocal: view.consumedLocal)
        let breakerState: QuotaAnswer.Breaker.State = switch view.breakerState {
        case .closed: .closed
        case .open: .open
        case .halfOpen: .halfOpen
        }
        return QuotaAnswer(
            service: view.key.service, account: view.key.account, dimension: tightest.name, limit: tightest.limit,
            windowSeconds: tightest.windowMillis.map(seconds), remaining: tightest.remaining,
            resetAt: tightest.resetAt.map(ceilSeconds), resetAtMillis: tightest.resetAt,
            limits: view.dimensions.map(dimension),
            nextAvailable: .init(urgent: next(.urgent), normal: next(.normal), low: next(.low)),
            consumed: .init(global: view.consumedGlobal, local: view.consumedLocal),
            breaker: .init(state: breakerState, openUntil: view.breakerOpenUntil.map(ceilSeconds)),
            peers: .init(live: view.peersLive, known: view.peersKnown),
            share: (view.share * 1000).rounded() / 1000, rights: view.rights,
            observed: view.observation.map {
                .init(remaining: $0.remaining, limit: $0.limit, resetAt: ceilSeconds($0.resetAt), observedAt: $0.observedAt / 1000)
            })
    }

    /// One entry of Q's `limits`: a dimension's own limit, remaining, reset and consumption.
    public static func dimension(_ dimension: DimensionView) -> QuotaAnswer.DimensionAnswer {
        QuotaAnswer.DimensionAnswer(
            name: dimension.name, limit: dimension.limit, remaining: dimension.remaining,
            resetAt: dimension.resetAt.map(ceilSeconds), windowSeconds: dimension.windowMillis.map(seconds),
            consumed: .init(global: dimension.consumedGlobal, local: dimension.consumedLocal))
    }

    /// A peer entry.
    public static func peer(_ peer: PeerView, now: UnixMillis) -> PeersAnswer.Peer {
        var answer = PeersAnswer.Peer(
            name: peer.name, key: peer.key.base64, endpoint: peer.endpoint?.description, live: peer.live,
            lastHeardSecondsAgo: peer.lastHeardAt.map { seconds(now - $0) }, records: peer.records,
            quarantined: peer.quarantined?.rawValue, observationScore: (peer.observationScore * 100).rounded() / 100,
            graylisted: peer.graylisted, members: peer.members, membersAgree: peer.membersAgree)
        answer.weight = peer.weight.value
        answer.claimedWeight = peer.claimedWeight.value
        answer.vouchedWeight = peer.vouchedWeight.value
        return answer
    }

    /// Milliseconds as seconds with millisecond precision.
    public static func seconds(_ millis: Int64) -> Double { Double(millis) / 1000 }

    /// A Unix-ms time as whole Unix seconds, rounded up (never earlier than the true time).
    public static func ceilSeconds(_ millis: Int64) -> Int64 { (millis + 999) / 1000 }

    /// The encoder of every answer: sorted keys, slashes as they are.
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()

    /// An answer as JSON.
    public static func data(_ answer: some Encodable) -> Data {
        // Every answer type encodes plain values only: encoding cannot fail.
        (try? encoder.encode(answer)) ?? Data("{}".utf8)
    }
}
