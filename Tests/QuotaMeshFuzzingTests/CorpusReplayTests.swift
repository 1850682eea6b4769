import Foundation
import QuotaMeshFuzzing
import QuotaMeshRequests
import Testing

/// Replays the fuzzing corpus (`Fuzz/Corpus`, seeds plus every input libFuzzer found interesting) through
/// the same targets libFuzzer drives, so that a regression on any of them fails `swift test`.
@Suite struct CorpusReplayTests {
    static var corpus: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz/Corpus")
    }

    @Test func everyCorpusInputRunsCleanly() throws {
        let files = try FileManager.default.contentsOfDirectory(at: Self.corpus, includingPropertiesForKeys: nil)
            .filter { !$0.lastPathComponent.hasPrefix(".") }
        // Every target has seeds, so a lost corpus folder fails here instead of passing vacuously.
        let targets = Set(try files.compactMap { try Data(contentsOf: $0).first.map { Int($0) % FuzzTargets.Target.allCases.count } })
        #expect(targets.count == FuzzTargets.Target.allCases.count, "targets with seeds: \(targets.sorted())")
        for file in files {
            FuzzTargets.run([UInt8](try Data(contentsOf: file)))
        }
    }

    @Test func booleansAreNotNumbers() throws {
        guard case .success(let object) = RequestBodies.object(from: Array(#"{"service":"api","cost":true}"#.utf8)) else {
            Issue.record("valid JSON refused")
            return
        }
        guard case .failure(let error) = RequestBodies.acquire(object) else {
            Issue.record("`cost: true` was accepted as a number")
            return
        }
        #expect(error.status == 400)
        #expect(error.message.contains("cost"))
    }

    @Test func oversizedBodiesAreRefusedWith413() {
        let body = [UInt8](repeating: 0x20, count: RequestBodies.maxBytes + 1)
        guard case .failure(let error) = RequestBodies.object(from: body) else {
            Issue.record("an oversized body was accepted")
            return
        }
        #expect(error.status == 413)
    }
}
