// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "QuotaMesh",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "quotamesh", targets: ["quotamesh"]),
        .library(name: "QuotaMeshCrypto", targets: ["QuotaMeshCrypto"]),
        .library(name: "QuotaMeshCore", targets: ["QuotaMeshCore"]),
        .library(name: "QuotaMeshNode", targets: ["QuotaMeshNode"]),
        .library(name: "QuotaMeshSimulator", targets: ["QuotaMeshSimulator"]),
        .library(name: "QuotaMeshRequests", targets: ["QuotaMeshRequests"]),
        .library(name: "QuotaMeshFuzzing", targets: ["QuotaMeshFuzzing"]),
        .library(name: "QuotaMeshClient", targets: ["QuotaMeshClient"]),
        .library(name: "QuotaMeshAPI", targets: ["QuotaMeshAPI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        // `swift package generate-documentation`: DocC for the public API (docs/README in each .docc).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-http-structured-headers", from: "1.7.0"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-openapi-runtime", from: "1.13.4"),
        .package(url: "https://github.com/apple/swift-openapi-urlsession", from: "1.4.0"),
        .package(url: "https://github.com/hummingbird-project/swift-openapi-hummingbird", from: "2.1.0"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0"),
        // Child processes in the integration tests (nodes, the CLI, strace, mount, ip netns).
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
    ],
    targets: [
        // libsodium, the only source of cryptography.
        .systemLibrary(
            name: "CSodium",
            pkgConfig: "libsodium",
            providers: [.apt(["libsodium-dev"]), .brew(["libsodium"])]
        ),
        // The Swift facade over libsodium: keys, signatures, sealed boxes. The only importer of CSodium.
        .target(name: "QuotaMeshCrypto", dependencies: ["CSodium"]),
        // The sans-IO protocol core: CRDTs, records, wire codec, gossip, enforcement policy, headers.
        .target(
            name: "QuotaMeshCore",
            dependencies: [
                "QuotaMeshCrypto",
                .product(name: "StructuredFieldValues", package: "swift-http-structured-headers"),
            ]
        ),
        // Decoding and validation of the local API's JSON bodies (Foundation only, no server).
        .target(name: "QuotaMeshRequests", dependencies: ["QuotaMeshCore", "QuotaMeshAPI"]),
        // Fuzz targets over every decoder of untrusted input; driven by libFuzzer (Fuzz/) and by a
        // corpus-replay test.
        .target(name: "QuotaMeshFuzzing", dependencies: ["QuotaMeshCore", "QuotaMeshCrypto", "QuotaMeshRequests"]),
        // The local API from openapi.yaml: its answers as Codable types shared by the node and its clients,
        // and the client swift-openapi-generator makes of the document (Generated/, scripts/generate-api.sh).
        // A client needs neither the core nor libsodium.
        .target(
            name: "QuotaMeshAPI",
            dependencies: [
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            exclude: ["openapi-generator-config.yaml"]
        ),
        // A client of a node's local API for Swift agents (Foundation only).
        .target(
            name: "QuotaMeshClient",
            dependencies: [
                "QuotaMeshAPI",
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIURLSession", package: "swift-openapi-urlsession"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        ),
        // The shell: UDP, timers, persistence, trust store, configuration and the local HTTP API.
        .target(
            name: "QuotaMeshNode",
            dependencies: [
                "QuotaMeshCore",
                "QuotaMeshCrypto",
                "QuotaMeshRequests",
                "QuotaMeshAPI",
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIHummingbird", package: "swift-openapi-hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // A deterministic network simulator driving many real protocol cores in virtual time.
        .target(
            name: "QuotaMeshSimulator",
            dependencies: [
                "QuotaMeshCore", "QuotaMeshCrypto", .product(name: "HeapModule", package: "swift-collections"),
            ]
        ),
        // `quotamesh demo`: embedded nodes, a stand-in upstream and agents using the client library.
        .target(
            name: "QuotaMeshDemo",
            dependencies: [
                "QuotaMeshNode",
                "QuotaMeshClient",
                "QuotaMeshCore",
                "QuotaMeshCrypto",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The command-line interface: parses and wires, nothing else.
        .executableTarget(
            name: "quotamesh",
            dependencies: [
                "QuotaMeshNode",
                "QuotaMeshCore",
                "QuotaMeshCrypto",
                "QuotaMeshSimulator",
                "QuotaMeshDemo",
                "QuotaMeshAPI",
                "QuotaMeshClient",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIURLSession", package: "swift-openapi-urlsession"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "QuotaMeshCryptoTests", dependencies: ["QuotaMeshCrypto"]),
        .testTarget(
            name: "QuotaMeshCoreTests",
            dependencies: [
                "QuotaMeshCore",
                "QuotaMeshCrypto",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]
        ),
        .testTarget(
            name: "QuotaMeshNodeTests",
            dependencies: [
                "QuotaMeshNode",
                "QuotaMeshCore",
                "QuotaMeshCrypto",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(name: "QuotaMeshFuzzingTests", dependencies: ["QuotaMeshFuzzing", "QuotaMeshRequests", "QuotaMeshAPI"]),
        .testTarget(name: "QuotaMeshSimulatorTests", dependencies: ["QuotaMeshSimulator", "QuotaMeshCore"]),
        .testTarget(
            name: "QuotaMeshIntegrationTests",
            dependencies: [
                "QuotaMeshCrypto", "QuotaMeshClient", "QuotaMeshDemo", "quotamesh",
                .product(name: "Subprocess", package: "swift-subprocess"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
