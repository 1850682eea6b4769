import Foundation
import Hummingbird
import HummingbirdTesting
import QuotaMeshCore
import QuotaMeshNode
import Testing

/// openapi.yaml is the API's contract: it must name every path the node serves, every `reason` and
/// `detail` the node can answer, and every field of its real answers.
@Suite struct APIContractTests {
    /// The document's text (the repository's `openapi.yaml`).
    static let document: String = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return (try? String(contentsOf: root.appendingPathComponent("openapi.yaml"), encoding: .utf8)) ?? ""
    }()

    /// Whether the document names `word` as a key, a list item or an enum value.
    static func names(_ word: String) -> Bool {
        ["\(word):", "[\(word),", "[\(word)]", " \(word),", " \(word)]", "- \(word)\n"].contains { document.contains($0) }
    }

    @Test func everyReasonAndDetailTheNodeCanAnswerIsDocumented() {
        #expect(!Self.document.isEmpty, "openapi.yaml was not found")
        for reason in DenialReason.allCases { #expect(Self.names(reason.rawValue), "reason \(reason.rawValue)") }
        // Each detail case is an item of `Detail`'s `x-quotamesh-cases` list.
        for detail in DecisionCase.allCases {
            #expect(Self.document.contains("        - \(detail.rawValue)\n"), "detail \(detail.rawValue)")
        }
        for refusal in NameRefusal.allCases { #expect(Self.names(refusal.rawValue), "refusal \(refusal.rawValue)") }
        for state in [BreakerState.closed, .open, .halfOpen] { #expect(Self.names(state.rawValue), "breaker \(state.rawValue)") }
    }

    @Test func everyPathTheNodeServesIsDocumented() {
        for path in ["/v1/acquire:", "/v1/observe:", "/v1/quota:", "/v1/quota/{service}:", "/v1/peers:", "/healthz:", "/metrics:"] {
            #expect(Self.document.contains("\n  \(path)\n"), "\(path)")
        }
    }

    @Test func realAnswersUseOnlyDocumentedFields() async throws {
        let api = APITests()
        let node = try await api.makeNode()
        let app = Application(router: NodeAPI.buildRouter(node: node))
        try await app.test(.router) { client in
            var answers: [(String, Any)] = []
            for body in [
                #"{"service":"openai","priority":"urgent","cost":{"requests":9,"tokens":10}}"#,
                #"{"service":"openai","cost":5}"#,
                #"{"service":"nobody"}"#,
                #"{"service":"openai","priorty":"urgent"}"#,
            ] {
                answers.append(("acquire \(body)", try await api.post(client, "/v1/acquire", body).1))
            }
            let observed = #"{"service":"openai","status":429,"headers":{"retry-after":"30","x-odd":"1"}}"#
            answers.append(("observe", try await api.post(client, "/v1/observe", observed).1))
            for path in ["/v1/quota", "/v1/quota/openai", "/v1/quota/nobody", "/v1/peers", "/healthz"] {
                answers.append((path, try await api.get(client, path).1))
            }
            for (name, answer) in answers {
                for key in Self.keys(of: answer) { #expect(Self.names(key), "\(name): field `\(key)` is not in openapi.yaml") }
            }
        }
    }

    /// Every object key in a JSON value, except inside `counters` (named counters, documented as a map).
    static func keys(of value: Any) -> Set<String> {
        var found: Set<String> = []
        if let object = value as? [String: Any] {
            for (key, inner) in object {
                found.insert(key)
                if key != "counters" { found.formUnion(keys(of: inner)) }
            }
        } else if let list = value as? [Any] {
            for inner in list { found.formUnion(keys(of: inner)) }
        }
        return found
    }
}
