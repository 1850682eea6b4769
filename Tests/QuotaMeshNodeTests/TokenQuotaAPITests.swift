import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
@testable import QuotaMeshCore
@testable import QuotaMeshNode

/// Token budgets, every dimension in `quota`, refunds and account rotation, all through the HTTP API.
@Suite struct TokenQuotaAPITests {
    let api = APITests()

    func dimension(_ quota: [String: Any]?, _ name: String) -> [String: Any]? {
        (quota?["limits"] as? [[String: Any]])?.first { $0["name"] as? String == name }
    }

    @Test func aCostByDimensionIsGrantedAllOrNoneAndUsageIsRefunded() async throws {
        let node = try await api.makeNode(services: [
            "openai": ServicePolicy(
                limit: 100, windowMillis: 3_600_000, burstFraction: 1,
                dimensionLimits: ["tokens": AdvertisedPolicy(limit: 10_000, windowMillis: 3_600_000)])
        ])
        let app = Application(router: NodeAPI.buildRouter(node: node))
        try await app.test(.router) { client in
            let body = #"{"service":"openai","priority":"urgent","cost":{"requests":1,"tokens":6000}}"#
            let (status, granted, _) = try await api.post(client, "/v1/acquire", body)
            #expect(status == 200)
            #expect(granted["cost"] as? [String: Int] == ["requests": 1, "tokens": 6000])
            // The top level is the tightest dimension: tokens, 40% left against 99% of requests.
            let quota = granted["quota"] as? [String: Any]
            #expect(quota?["dimension"] as? String == "tokens")
            #expect(quota?["remaining"] as? Int == 4000)
            #expect(dimension(quota, "requests")?["remaining"] as? Int == 99)
            #expect(dimension(quota, "tokens")?["window_s"] as? Double == 3600)

            // 6,000 more tokens do not fit: denied, and no request is charged either.
            let (denied, denial, _) = try await api.post(client, "/v1/acquire", body)
            #expect(denied == 429)
            #expect(denial["detail"] as? String == "tokens_window")
            #expect((dimension(denial["quota"] as? [String: Any], "requests")?["consumed"] as? [String: Any])?["local"] as? Int == 1)

            // The call used 1,000 tokens: reporting it gives the other 5,000 back, and 6,000 fit again.
            let (observed, report, _) = try await api.post(
                client, "/v1/observe",
                #"{"service":"openai","status":200,"cost":{"requests":1,"tokens":6000},"usage":{"tokens":1000}}"#)
            #expect(observed == 200)
            #expect(dimension(report["quota"] as? [String: Any], "tokens")?["remaining"] as? Int == 9000)
            #expect(try await api.post(client, "/v1/acquire", body).0 == 200)

            for (bad, message) in [
                (#"{"service":"openai","cost":{}}"#, "`cost` must name 1 to 16 dimensions"),
                (#"{"service":"openai","cost":{"tokens":"many"}}"#, "`cost.tokens` must be a whole number"),
                (#"{"service":"openai","cost":{"tokens":0}}"#, "`cost.tokens` must be between 1 and"),
                (#"{"service":"openai","cost":{"no spaces":1}}"#, "dimension names must be labels"),
            ] {
                let (code, error, _) = try await api.post(client, "/v1/acquire", bad)
                #expect(code == 400, "\(bad)")
                #expect((error["error"] as? String ?? "").contains(message), "\(bad): \(error)")
            }
            let (code, error, _) = try await api.post(client, "/v1/observe", #"{"service":"openai","status":200,"usage":7}"#)
            #expect(code == 400)
            #expect((error["error"] as? String ?? "").contains("`usage` must be an object"))
        }
    }

    @Test(arguments: [
        // OpenAI: requests and tokens, Go-style resets.
        ([("x-ratelimit-limit-requests", "5000"), ("x-ratelimit-remaining-requests", "4999"),
          ("x-ratelimit-reset-requests", "1m0s"), ("x-ratelimit-limit-tokens", "40000"),
          ("x-ratelimit-remaining-tokens", "1000"), ("x-ratelimit-reset-tokens", "6m0s")],
         ["requests": 4999, "tokens": 1000], "tokens"),
        // Anthropic: requests, input and output tokens, RFC 3339 resets (a day from now: a reset further
        // ahead than a learned service's longest window is not believed).
        ([("anthropic-ratelimit-requests-limit", "50"), ("anthropic-ratelimit-requests-remaining", "49"),
          ("anthropic-ratelimit-requests-reset", "TOMORROW"),
          ("anthropic-ratelimit-input-tokens-limit", "40000"), ("anthropic-ratelimit-input-tokens-remaining", "39000"),
          ("anthropic-ratelimit-input-tokens-reset", "TOMORROW"),
          ("anthropic-ratelimit-output-tokens-limit", "8000"), ("anthropic-ratelimit-output-tokens-remaining", "800"),
          ("anthropic-ratelimit-output-tokens-reset", "TOMORROW")],
         ["requests": 49, "input_tokens": 39000, "output_tokens": 800], "output_tokens"),
    ])
    func headersTeachEveryDimension(headers: [(String, String)], remaining: [String: Int], tightest: String) async throws {
        let node = try await api.makeNode(services: [:])
        let app = Application(router: NodeAPI.buildRouter(node: node))
        try await app.test(.router) { client in
            let tomorrow = ISO8601DateFormatter().string(from: Date().addingTimeInterval(86_400))
            let fields = headers.map { "\"\($0.0)\": \"\($0.1 == "TOMORROW" ? tomorrow : $0.1)\"" }.joined(separator: ", ")
            let (status, _, _) = try await api.post(client, "/v1/observe", "{\"service\": \"llm\", \"status\": 200, \"headers\": {\(fields)}}")
            #expect(status == 200)
            let (code, quota) = try await api.get(client, "/v1/quota/llm")
            #expect(code == 200)
            let limits = quota["limits"] as? [[String: Any]] ?? []
            #expect(Dictionary(uniqueKeysWithValues: limits.map { ($0["name"] as? String ?? "", $0["remaining"] as? Int ?? -1) }) == remaining)
            #expect(limits.allSatisfy { $0["limit"] is Int && $0["reset_at"] is Int })
            #expect(quota["dimension"] as? String == tightest)
            #expect(quota["remaining"] as? Int == remaining[tightest])
        }
    }

    /// Issue 23, as it was found: two IETF policies are two entries of `limits`, each enforced; a malformed
    /// field costs itself only.
    @Test func everyPolicyTheUpstreamStatesIsKeptAndEnforced() async throws {
        let node = try await api.makeNode(services: [:])
        let app = Application(router: NodeAPI.buildRouter(node: node))
        try await app.test(.router) { client in
            let observe = #"{"service": "api", "status": 200, "headers": {"RateLimit-Policy": "\"burst\";q=100;w=60, \"daily\";q=1000;w=86400", "RateLimit": "\"burst\";r=40;t=20, \"daily\";r=800;t=3600"}}"#
            let (status, answer, _) = try await api.post(client, "/v1/observe", observe)
            #expect(status == 200)
            #expect(answer["understood"] as? [String] == ["ratelimit", "ratelimit-policy"])
            let quota = answer["quota"] as? [String: Any]
            #expect(quota?["dimension"] as? String == "burst")
            #expect(quota?["remaining"] as? Int == 40)
            #expect(dimension(quota, "burst")?["limit"] as? Int == 100)
            #expect(dimension(quota, "burst")?["window_s"] as? Double == 60)
            #expect(dimension(quota, "daily")?["limit"] as? Int == 1000)
            #expect(dimension(quota, "daily")?["remaining"] as? Int == 800)
            #expect(dimension(quota, "daily")?["window_s"] as? Double == 86400)
            #expect(dimension(quota, "daily")?["reset_at"] is Int)

            // The day is spent while the burst window has room: no call passes, and the denial says which.
            let spent = observe.replacingOccurrences(of: "r=800", with: "r=0")
            #expect(try await api.post(client, "/v1/observe", spent).0 == 200)
            let (code, denial, headers) = try await api.post(client, "/v1/acquire", #"{"service": "api", "priority": "urgent"}"#)
            #expect(code == 429)
            #expect(denial["detail"] as? String == "daily_window")
            #expect(headers[.retryAfter] != nil)
        }
    }

    @Test func aMalformedRemainingStillTeachesTheLimit() async throws {
        let now: UnixMillis = 1_800_000_000_000
        let node = try await api.makeNode(services: [:], clock: { now })
        let app = Application(router: NodeAPI.buildRouter(node: node))
        try await app.test(.router) { client in
            let reset = now / 1000 + 60
            let (status, answer, _) = try await api.post(
                client, "/v1/observe",
                #"{"service": "gh", "status": 200, "headers": {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "abc", "x-ratelimit-reset": "\#(reset)"}}"#)
            #expect(status == 200)
            let ignored = answer["ignored"] as? [[String: String]] ?? []
            #expect(ignored.map { $0["header"] } == ["x-ratelimit-remaining"])
            #expect(ignored.first?["reason"]?.contains("abc") == true)
            let quota = answer["quota"] as? [String: Any]
            #expect(quota?["limit"] as? Int == 100)
            #expect(quota?["window_s"] as? Double == 60)
        }
    }

    @Test func accountsRotateAndOneThatAnswered429IsSkippedUntilItsReset() async throws {
        let node = try await api.makeNode(services: [
            "github": ServicePolicy(limit: 100, windowMillis: 3_600_000, accounts: ["app-a", "app-b"], burstFraction: 1)
        ])
        let app = Application(router: NodeAPI.buildRouter(node: node))
        try await app.test(.router) { client in
            let acquire = #"{"service":"github","priority":"urgent"}"#
            let (_, first, _) = try await api.post(client, "/v1/acquire", acquire)
            let used = first["account"] as? String ?? ""
            #expect(["app-a", "app-b"].contains(used))
            // That account is limited until its reset: every call goes to the other one meanwhile.
            let (_, observed, _) = try await api.post(
                client, "/v1/observe", "{\"service\":\"github\",\"account\":\"\(used)\",\"status\":429,\"headers\":{\"retry-after\":\"60\"}}")
            #expect(observed["breaker_opened"] as? Bool == true)
            for _ in 0..<3 {
                let (status, next, _) = try await api.post(client, "/v1/acquire", acquire)
                #expect(status == 200)
                #expect(next["account"] as? String != used)
            }
            // Q lists each account with its own state.
            let (_, quota) = try await api.get(client, "/v1/quota/github")
            let accounts = quota["accounts"] as? [[String: Any]] ?? []
            #expect(Set(accounts.compactMap { $0["account"] as? String }) == ["app-a", "app-b"])
            let limited = accounts.first { $0["account"] as? String == used }
            #expect((limited?["breaker"] as? [String: Any])?["state"] as? String == "open")
            #expect(accounts.allSatisfy { ($0["limits"] as? [[String: Any]])?.first?["name"] as? String == "requests" })
        }
    }

    @Test func anObserveNamingAnAccountTheConfigurationDoesNotListIsRefusedAndCreatesNoAccount() async throws {
        let node = try await api.makeNode(services: [
            "github": ServicePolicy(limit: 100, windowMillis: 3_600_000, accounts: ["app-a", "app-b"], burstFraction: 1)
        ])
        let app = Application(router: NodeAPI.buildRouter(node: node))
        try await app.test(.router) { client in
            let (status, refusal, _) = try await api.post(
                client, "/v1/observe",
                #"{"service":"github","account":"app-typo","status":200,"headers":{"x-ratelimit-limit":"5000","x-ratelimit-remaining":"5000"}}"#)
            #expect(status == 400)
            let message = refusal["error"] as? String ?? ""
            #expect(message.contains("app-typo") && message.contains("app-a, app-b"), "\(message)")
            #expect(refusal["reason"] as? String == "unconfigured_account")
            // Before, the phantom account (with the most headroom) took every later acquire.
            for _ in 0..<5 {
                let (_, granted, _) = try await api.post(client, "/v1/acquire", #"{"service":"github","priority":"urgent"}"#)
                #expect(["app-a", "app-b"].contains(granted["account"] as? String ?? ""), "\(granted)")
            }
            let (_, quota) = try await api.get(client, "/v1/quota/github")
            let accounts = (quota["accounts"] as? [[String: Any]] ?? []).compactMap { $0["account"] as? String }
            #expect(Set(accounts) == ["app-a", "app-b"])
            // A listed account is taken as before.
            let (ok, _, _) = try await api.post(client, "/v1/observe", #"{"service":"github","account":"app-b","status":200,"headers":{}}"#)
            #expect(ok == 200)
        }
    }

    @Test func accountsOfOneScopeShareItsLimitAndItsBreaker() async throws {
        let policy = ServicePolicy(
            limit: 2, windowMillis: 3_600_000, accounts: ["a", "b", "c"], burstFraction: 1, scopes: ["org": ["a", "b"]])
        let node = try await api.makeNode(services: ["github": policy])
        let app = Application(router: NodeAPI.buildRouter(node: node))
        try await app.test(.router) { client in
            let acquire = #"{"service":"github","priority":"urgent"}"#
            // Three accounts of 2 calls each, but a and b are one organization's: 4 calls, not 6.
            var used: [String] = []
            for _ in 0..<4 {
                let (status, granted, _) = try await api.post(client, "/v1/acquire", acquire)
                #expect(status == 200)
                used.append(granted["account"] as? String ?? "")
            }
            #expect(used.filter { $0 == "c" }.count == 2, "\(used)")
            let (denied, denial, _) = try await api.post(client, "/v1/acquire", acquire)
            #expect(denied == 429, "\(denial)")
            let (_, quota) = try await api.get(client, "/v1/quota/github")
            let scopes = quota["scopes"] as? [[String: Any]] ?? []
            #expect(scopes.first?["scope"] as? String == "org")
            #expect((scopes.first?["consumed"] as? [String: Any])?["global"] as? Int == 2)
            #expect(scopes.first?["remaining"] as? Int == 0)
        }
    }

    @Test func a429OnOneAccountOfAScopeHoldsBackTheWholeScope() async throws {
        let policy = ServicePolicy(
            limit: 100, windowMillis: 3_600_000, accounts: ["a", "b", "c"], burstFraction: 1, scopes: ["org": ["a", "b"]])
        let node = try await api.makeNode(services: ["github": policy])
        let app = Application(router: NodeAPI.buildRouter(node: node))
        try await app.test(.router) { client in
            let (_, observed, _) = try await api.post(
                client, "/v1/observe", #"{"service":"github","account":"a","status":429,"headers":{"retry-after":"60"}}"#)
            #expect(observed["breaker_opened"] as? Bool == true)
            for _ in 0..<3 {
                let (status, granted, _) = try await api.post(client, "/v1/acquire", #"{"service":"github","priority":"urgent"}"#)
                #expect(status == 200)
                #expect(granted["account"] as? String == "c", "b is limited with a: \(granted)")
            }
        }
    }
}
