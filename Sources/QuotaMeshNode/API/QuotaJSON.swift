import Foundation
import QuotaMeshCore

/// The JSON shapes of the local API (snake_case; times in Unix seconds or seconds from now, as named).
public enum QuotaJSON {
    /// Q: the merged view of one key.
    public static func object(_ view: QuotaView, now: UnixMillis) -> [String: Any] {
        var nextAvailable: [String: Any] = [:]
        for priority in Priority.allCases {
            nextAvailable[priority.rawValue] = seconds(view.nextAvailableMillis[priority] ?? 0)
        }
        // The top level describes the tightest dimension (requests when it is the only one).
        let tightest = view.tightest ?? DimensionView(
            name: QuotaKey.requests, limit: view.limit, windowMillis: view.windowMillis, remaining: view.remaining,
            resetAt: view.resetAt, consumedGlobal: view.consumedGlobal, consumedLocal: view.consumedLocal)
        var object: [String: Any] = [
            "service": view.key.service,
            "account": view.key.account,
            "dimension": tightest.name,
            "limit": tightest.limit.map { NSNumber(value: $0) } ?? NSNull(),
            "window_s": tightest.windowMillis.map { seconds($0) } ?? NSNull(),
            "remaining": tightest.remaining.map { NSNumber(value: $0) } ?? NSNull(),
            "reset_at": tightest.resetAt.map { NSNumber(value: ceilSeconds($0)) } ?? NSNull(),
            "reset_at_ms": tightest.resetAt.map { NSNumber(value: $0) } ?? NSNull(),
            "limits": view.dimensions.map { QuotaJSON.object($0) } as [Any],
            "next_available": nextAvailable,
            "consumed": ["global": NSNumber(value: view.consumedGlobal), "local": NSNumber(value: view.consumedLocal)],
            "breaker": [
                "state": view.breakerState.rawValue,
                "open_until": view.breakerOpenUntil.map { NSNumber(value: ceilSeconds($0)) } ?? NSNull(),
            ] as [String: Any],
            "peers": ["live": view.peersLive, "known": view.peersKnown],
            "share": (view.share * 1000).rounded() / 1000,
            "rights": view.rights.map { NSNumber(value: $0) } ?? NSNull(),
        ]
        if let observation = view.observation {
            object["observed"] = [
                "remaining": NSNumber(value: observation.remaining),
                "limit": NSNumber(value: observation.limit),
                "reset_at": NSNumber(value: ceilSeconds(observation.resetAt)),
                "observed_at": NSNumber(value: observation.observedAt / 1000),
            ]
        } else {
            object["observed"] = NSNull()
        }
        return object
    }

    /// One entry of Q's `limits`: a dimension's own limit, remaining, reset and consumption.
    public static func object(_ dimension: DimensionView) -> [String: Any] {
        [
            "name": dimension.name,
            "limit": dimension.limit.map { NSNumber(value: $0) } ?? NSNull(),
            "remaining": dimension.remaining.map { NSNumber(value: $0) } ?? NSNull(),
            "reset_at": dimension.resetAt.map { NSNumber(value: ceilSeconds($0)) } ?? NSNull(),
            "window_s": dimension.windowMillis.map { seconds($0) } ?? NSNull(),
            "consumed": ["global": NSNumber(value: dimension.consumedGlobal), "local": NSNumber(value: dimension.consumedLocal)],
        ]
    }

    /// A peer entry.
    public static func object(_ peer: PeerView, now: UnixMillis) -> [String: Any] {
        [
            "name": peer.name,
            "key": peer.key.base64,
            "endpoint": peer.endpoint.map { $0.description } ?? NSNull(),
            "live": peer.live,
            "last_heard_s_ago": peer.lastHeardAt.map { seconds(now - $0) } ?? NSNull(),
            "records": peer.records,
            "quarantined": peer.quarantined?.rawValue ?? NSNull(),
            "observation_score": (peer.observationScore * 100).rounded() / 100,
            "graylisted": peer.graylisted,
            "members": peer.members ?? NSNull(),
            "members_agree": peer.membersAgree,
        ]
    }

    /// Milliseconds as seconds with millisecond precision.
    public static func seconds(_ millis: Int64) -> Double { Double(millis) / 1000 }

    /// A Unix-ms time as whole Unix seconds, rounded up (never earlier than the true time).
    public static func ceilSeconds(_ millis: Int64) -> Int64 { (millis + 999) / 1000 }

    /// Serialises a JSON object with sorted keys.
    public static func data(_ object: Any) -> Data {
        (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
    }
}
