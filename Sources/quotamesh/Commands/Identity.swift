import ArgumentParser
import Foundation
import QuotaMeshCrypto
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

    @Option(help: "The gossip address other nodes should use (HOST:PORT). Default: the configuration's gossip address, with this machine's address for 0.0.0.0")
    var endpoint: String?

    @Option(help: "A JSON configuration file (for the gossip address). Default: $QUOTAMESH_CONFIG.")
    var config: String?

    func run() async throws {
        let key: SigningKey
        do {
            key = try IdentityStore.load(from: identity)
        } catch {
            printError("error: \(error)")
            throw ExitCode(ExitCodes.dataError)
        }
        let peerName = name ?? defaultName()
        print(key.publicKey.base64)
        let gossip = try Run.loadConfiguration(file: config).gossip
        if let address = endpoint ?? ReachableAddress.guess(listen: gossip)?.description {
            print("quotamesh peer add \(peerName) --key \(key.publicKey.base64) --endpoint \(address)")
        } else {
            print("quotamesh peer add \(peerName) --key \(key.publicKey.base64) --endpoint HOST:\(gossip.port)")
            printError("""
                note: cannot tell which address other machines reach this node at (gossip listens on \(gossip) and \
                this machine has no address but loopback): give HOST yourself, or pass --endpoint HOST:PORT
                """)
        }
    }

    private func defaultName() -> String {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "node"
        let cleaned = host.filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" }
        return cleaned.isEmpty ? "node" : String(cleaned.prefix(64))
    }
}

/// `quotamesh fingerprint`: an account label for an API key, computed locally with a keyed hash.
struct Fingerprint: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a stable account label for an API key read from standard input; the key never leaves this process.",
        discussion: """
            The label is fp- and 32 hex digits: BLAKE2b (libsodium crypto_generichash, 16-byte digest) of the key, \
            keyed with the salt in --salt-file (16-64 bytes, shared by your agents and kept secret). Python computes \
            the same label with "fp-" + hashlib.blake2b(key, key=salt, digest_size=16).hexdigest(). Give the label as \
            `account` to acquire and observe; the node never sees the key.
            """)

    @Option(help: "A file holding the salt (16-64 bytes, e.g. from `head -c 32 /dev/urandom`).")
    var saltFile: String

    func run() async throws {
        guard let salt = FileManager.default.contents(atPath: saltFile) else {
            printError("error: cannot read the salt file \(saltFile)")
            throw ExitCode(ExitCodes.usage)
        }
        let range = AccountFingerprint.minimumSaltBytes...AccountFingerprint.maximumSaltBytes
        guard range.contains(salt.count) else {
            printError("error: the salt must be \(range.lowerBound) to \(range.upperBound) bytes; \(saltFile) has \(salt.count)")
            throw ExitCode(ExitCodes.usage)
        }
        var secret = [UInt8](FileHandle.standardInput.readDataToEndOfFile())
        // A trailing newline from `echo` or a here-string is not part of the key.
        while let last = secret.last, last == 0x0A || last == 0x0D { secret.removeLast() }
        guard !secret.isEmpty else {
            printError("error: no key on standard input")
            throw ExitCode(ExitCodes.usage)
        }
        do {
            print(try AccountFingerprint.label(secret: secret, salt: [UInt8](salt)))
        } catch {
            printError("error: \(error)")
            throw ExitCode(ExitCodes.usage)
        }
    }
}
