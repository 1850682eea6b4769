import ArgumentParser
import Foundation
import QuotaMeshCore
import QuotaMeshCrypto
import QuotaMeshNode

/// `--peers DIR`, shared by the peer subcommands.
struct PeersOption: ParsableArguments {
    @Option(help: "The trust store folder.")
    var peers: String = "Peers"
}

/// `quotamesh peer`: manage the trust store.
struct Peer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage vouched peers (the trust store).", subcommands: [Add.self, List.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Trust a peer's key.")

        @Argument(help: "A name for the peer (file name NAME.peer).")
        var name: String

        @Option(help: "The peer's Ed25519 public key in base64 (from `quotamesh id`).")
        var key: String

        @Option(help: "The peer's gossip address, HOST:PORT.")
        var endpoint: String

        @Option(help: "The weight this node vouches for the peer (0.001 to 1000): the most of its own claim believed.")
        var weight: Double = 1

        @OptionGroup var store: PeersOption

        func validate() throws {
            guard TrustStore.isValidPeerName(name) else {
                throw ValidationError("NAME must be 1-64 letters, digits, '-', '_' or '.'")
            }
            do { _ = try VerifyingKey(base64: key) } catch { throw ValidationError("--key: \(error)") }
            guard let parsed = Endpoint(parsing: endpoint), parsed.port > 0 else {
                throw ValidationError("--endpoint must be HOST:PORT, got '\(endpoint)'")
            }
            guard Weight(weight) != nil else { throw ValidationError("--weight must be a number from 0.001 to 1000") }
        }

        func run() async throws {
            let peer = PeerInfo(
                name: name, key: try VerifyingKey(base64: key), endpoint: Endpoint(parsing: endpoint),
                weight: Weight(weight) ?? .one)
            do {
                try TrustStore(directory: store.peers).add(peer)
                print("trusted \(name) (\(peer.key.shortID)…) at \(endpoint) in \(TrustStore(directory: store.peers).path(for: name))")
            } catch {
                printError("error: \(error)")
                throw ExitCode(ExitCodes.cannotCreate)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List trusted peers and any malformed peer files.")

        @OptionGroup var store: PeersOption

        @Flag(help: "Print JSON.")
        var json = false

        func run() async throws {
            let contents = TrustStore(directory: store.peers).load()
            if json {
                let listing = PeerListing(
                    peers: contents.peers.map {
                        .init(name: $0.name, key: $0.key.base64, endpoint: $0.endpoint?.description, weight: $0.weight.value)
                    },
                    problems: contents.problems.map(\.description))
                print(try renderJSON(encoding: listing))
            } else {
                if contents.peers.isEmpty { print("no peers in \(store.peers)") }
                for peer in contents.peers {
                    print("\(peer.name)\t\(peer.key.base64)\t\(peer.endpoint?.description ?? "-")\tweight \(peer.weight)")
                }
                for problem in contents.problems { printError("skipped: \(problem)") }
            }
            if !contents.problems.isEmpty { throw ExitCode(ExitCodes.dataError) }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop trusting a peer.")

        @Argument(help: "The peer's name.")
        var name: String

        @OptionGroup var store: PeersOption

        func run() async throws {
            let removed: Bool
            do {
                removed = try TrustStore(directory: store.peers).remove(name: name)
            } catch {
                printError("error: \(error)")
                throw ExitCode(ExitCodes.cannotCreate)
            }
            guard removed else {
                printError("error: no peer named '\(name)' in \(store.peers)")
                throw ExitCode(ExitCodes.dataError)
            }
            print("removed \(name)")
        }
    }
}

/// What `peer list --json` prints: every trusted peer, and the peer files that could not be read.
struct PeerListing: Encodable {
    struct Peer: Encodable {
        var name: String
        var key: String
        /// `null` for a peer with no configured endpoint (it is learned when the peer is heard from).
        var endpoint: String?
        /// The weight this node vouches for the peer.
        var weight: Double

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(name, forKey: .name)
            try container.encode(key, forKey: .key)
            try container.encode(endpoint, forKey: .endpoint)
            try container.encode(weight, forKey: .weight)
        }

        enum CodingKeys: String, CodingKey { case name, key, endpoint, weight }
    }

    var peers: [Peer]
    var problems: [String]
}
