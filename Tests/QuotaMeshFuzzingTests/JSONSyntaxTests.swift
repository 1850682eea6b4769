import Foundation
import QuotaMeshAPI
import QuotaMeshRequests
import Testing

/// `JSONSyntax` finds where a text stops being JSON, for the messages of configuration and request
/// errors. Its oracle is Foundation's own decoder: on valid documents and thousands of mutations of them,
/// the scanner calls a text valid exactly when `JSONDecoder` decodes it.
@Suite struct JSONSyntaxTests {
    static let documents = [
        #"{"services": {"openai": {"limit": 500, "window": "60s", "accounts": ["a", "b"]}}}"#,
        #"{"service":"openai","priority":"urgent","cost":{"requests":1,"tokens":1800},"wait_ms":0}"#,
        #"[1, -2.5e3, 0, 0.125, true, false, null, "\u00e9\n\"", {}, []]"#,
        #"{"headers": {"x-ratelimit-limit": "100", "retry-after": ["1", "2"]}, "status": 429}"#,
    ]

    func decodes(_ bytes: [UInt8]) -> Bool {
        (try? JSONDecoder().decode(JSONValue.self, from: Data(bytes))) != nil
    }

    @Test func validDocumentsHaveNoError() {
        for document in Self.documents {
            #expect(JSONSyntax.firstError(in: Array(document.utf8)) == nil, "\(document)")
        }
    }

    @Test func theErrorIsWhereTheTextBreaks() throws {
        let text = "{\"services\": {\n  \"openai\": {\"limit\": 5\n \"window\": \"1m\"}\n}}"
        let error = try #require(JSONSyntax.firstError(in: Array(text.utf8)))
        #expect(error.line == 3)
        #expect(error.column == 2)
        #expect(error.expected == "`,` or `}`")
        #expect(JSONSyntax.firstError(in: Array(#"{"a": tru}"#.utf8))?.expected == "`true`")
        #expect(JSONSyntax.firstError(in: Array("".utf8))?.expected == "a value")
        #expect(JSONSyntax.firstError(in: Array("{} x".utf8))?.expected == "the end of the text")
    }

    /// Deleting, inserting or replacing bytes of a valid document: whenever the decoder refuses the
    /// result, the scanner finds where it breaks (so every error message can name a place), and the
    /// scanner refuses nothing else but what the decoder tolerates beyond the grammar (seeded, so a
    /// failure replays).
    @Test func theScannerAgreesWithTheDecoderOnMutations() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        let alphabet = Array(#"{}[]":,.-+eE0123456789 tfnulrsa\"#.utf8) + [0x0A, 0x01, 0xC3]
        var disagreements: [String] = []
        var tolerated: [String] = []
        var invalid = 0
        for round in 0..<4_000 {
            var bytes = Array(Self.documents[round % Self.documents.count].utf8)
            for _ in 0...(round % 3) {
                let position = Int(next() % UInt64(bytes.count + 1))
                let byte = alphabet[Int(next() % UInt64(alphabet.count))]
                switch next() % 3 {
                case 0 where position < bytes.count: bytes.remove(at: position)
                case 1: bytes.insert(byte, at: position)
                default: if position < bytes.count { bytes[position] = byte }
                }
            }
            let scannerSaysValid = JSONSyntax.firstError(in: bytes) == nil
            if !scannerSaysValid { invalid += 1 }
            let decoded = decodes(bytes)
            if scannerSaysValid && !decoded {
                disagreements.append(String(decoding: bytes, as: UTF8.self))
            }
            if !scannerSaysValid && decoded { tolerated.append(String(decoding: bytes, as: UTF8.self)) }
        }
        #expect(disagreements.isEmpty, "\(disagreements.prefix(5))")
        // What Foundation's decoder takes beyond RFC 8259: a trailing comma, at most; nothing else.
        #expect(tolerated.allSatisfy { $0.contains(",}") || $0.contains(",]") || $0.contains(", }") || $0.contains(", ]") }, "\(tolerated.prefix(5))")
        // The mutations did break documents: the test is not passing on valid texts alone.
        #expect(invalid > 1_000)
    }
}
