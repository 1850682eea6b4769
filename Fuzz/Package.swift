// swift-tools-version: 6.1
// Coverage-guided fuzzing with libFuzzer, in its own package so that `swift test` on the main package
// does not build it. Run: `bash Fuzz/run.sh` (see Fuzz/README.md).
import Foundation
import PackageDescription

// A path dependency is identified by its folder's name, which depends on where the repository was
// cloned; read it rather than guess.
let rootIdentity = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .lastPathComponent.lowercased()

let package = Package(
    name: "QuotaMeshFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: "..")],
    targets: [
        // The libFuzzer entry point; build only with `--sanitize=fuzzer` (libFuzzer supplies `main`).
        .executableTarget(
            name: "QuotaMeshFuzzer",
            dependencies: [.product(name: "QuotaMeshFuzzing", package: rootIdentity)],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
        // Writes the seed corpus: valid packets, bodies and headers for every target.
        .executableTarget(
            name: "QuotaMeshFuzzSeeds",
            dependencies: [
                .product(name: "QuotaMeshCore", package: rootIdentity),
                .product(name: "QuotaMeshCrypto", package: rootIdentity),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
