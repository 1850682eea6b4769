import ArgumentParser
import Foundation
import QuotaMeshNode

/// `quotamesh keygen`: creates the node's Ed25519 identity.
struct Keygen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create an Ed25519 identity (secret file mode 0600).")

    @Option(help: "Where to write the identity.")
    var identity: String = IdentityStore.defaultPath

    @Flag(help: "Replace an existing identity (its peers will no longer trust this node).")
    var force = false

    func run() async throws {
        do {
            let key = try IdentityStore.create(at: identity, overwrite: force)
            print("created \(identity)")
            print("public key: \(key.publicKey.base64)")
        } catch {
            printError("error: \(error)")
            throw ExitCode(ExitCodes.cannotCreate)
        }
    }
}

/// `quotamesh id`: prints the public key and a `peer add` line for other nodes.
struct Identity: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "id", abstract: "Print this node's public key, then a ready-to-paste `peer add` line.")

    @Option(help: "The identity file.")
    var identity: String = IdentityStore.defaultPath

    @Option(help: "The name other nodes should give this one.")
    var name: String?

    @Option(help: "The gossip address other nodes should use (HOST:PORT).")
    var endpoint: String = "127.0.0.1:9720"

    func run() async throws {
        do {
            let key = try IdentityStore.load(from: identity)
            let peerName = name ?? defaultName()
            print(key.publicKey.base64)
            print("quotamesh peer add \(peerName) --key \(key.publicKey.base64) --endpoint \(endpoint)")
        } catch {
            printError("error: \(error)")
            throw ExitCode(ExitCodes.dataError)
        }
    }

    private func defaultName() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "node"
        let cleaned = host.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
        return cleaned.isEmpty ? "node" : String(cleaned.prefix(64))
    }
}
