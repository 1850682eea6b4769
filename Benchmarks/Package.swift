// swift-tools-version: 6.1
// The micro-benchmarks (ordo-one/benchmark), kept in their own package so that `swift test` on the main
// package does not build the benchmark toolchain. Run: `swift package --package-path Benchmarks benchmark`.
import Foundation
import PackageDescription

// A path dependency is identified by its folder's name, which depends on where the repository was
// cloned; read it rather than guess.
let rootIdentity = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .lastPathComponent.lowercased()

let package = Package(
    name: "QuotaMeshBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "QuotaMeshBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "QuotaMeshCore", package: rootIdentity),
                .product(name: "QuotaMeshCrypto", package: rootIdentity),
            ],
            path: "QuotaMeshBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        )
    ],
    swiftLanguageModes: [.v6]
)
