import ArgumentParser
import Foundation
import QuotaMeshCore
import QuotaMeshCrypto
import QuotaMeshNode

/// `quotamesh invite`: prints a token with which a new node joins this one's mesh.
struct Invite: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print an invitation token for a new node to join this one's mesh (`quotamesh join TOKEN`).",
        discussion: """
            The token (its first line of output) carries this node's key, the address peers reach it at and a \
            secret, signed with this node's identity; it expires. Whoever holds it may join until then, so hand \
            it over like a password. The running node accepts the join and writes the newcomer to its trust \
            store; its other peers learn of the newcomer where their `vouching` takes this node's introductions.
            """)

    @Option(help: "The identity file. Default: the configuration's, else .quotamesh/identity")
    var identity: String?

    @Option(help: "The gossip address new nodes reach this one at, HOST:PORT. Default: the configuration's gossip address, with this machine's address for 0.0.0.0")
    var endpoint: String?

    @Option(help: "How long the token is valid: 10m, 24h, 7d (1 minute to 30 days).")
    var expires: String = "24h"

    @Option(help: "A JSON configuration file (for the mesh's name and the gossip address). Default: $QUOTAMESH_CONFIG.")
    var config: String?

    func validate() throws {
        if let endpoint {
            guard let parsed = Endpoint(parsing: endpoint), parsed.port > 0 else {
                throw ValidationError("--endpoint must be HOST:PORT, got '\(endpoint)'")
            }
        }
        guard let millis = DurationText.milliseconds(expires), (60_000...30 * 86_400_000).contains(millis) else {
            throw ValidationError("--expires must be a duration from 1m to 30d, such as 10m, 24h or 7d; got '\(expires)'")
        }
    }

    func run() async throws {
        let configuration = try Run.loadConfiguration(file: config)
        let identityPath = identity ?? configuration.identityPath
        let key: SigningKey
        do {
            key = try IdentityStore.load(from: identityPath)
        } catch {
            printError("error: \(error) (create one with `quotamesh keygen`, or start the node once)")
            throw ExitCode(ExitCodes.dataError)
        }
        guard let address = endpoint.flatMap(Endpoint.init(parsing:)) ?? ReachableAddress.guess(listen: configuration.gossip) else {
            printError("""
                error: cannot tell which address other machines reach this node at: gossip listens on \
                \(configuration.gossip) and this machine has no address but loopback; pass --endpoint HOST:PORT
                """)
            throw ExitCode(ExitCodes.usage)
        }
        let millis = DurationText.milliseconds(expires) ?? 86_400_000
        let expiry = (wallClockMillis() + millis) / 1000
        let invitation = Invitation(from: key, endpoint: address, cluster: configuration.mesh.cluster, expires: expiry)
        print(invitation.token(signedBy: key))
        let until = Date(timeIntervalSince1970: TimeInterval(expiry)).formatted(.iso8601)
        print("joins \(key.publicKey.shortID)… at \(address) in mesh \"\(configuration.mesh.cluster)\" until \(until)")
        print("on the new node: quotamesh join <token> (this node's gossip must be running and reachable at \(address))")
    }
}

/// `quotamesh join`: trusts the inviter in a token and asks it to trust this node.
struct Join: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Join a mesh with a token from `quotamesh invite`: trust the inviter and introduce this node to it.",
        discussion: """
            Writes the inviter to this node's trust store (a running node picks it up within two seconds), then \
            sends the inviter a join request over UDP, proving this node holds the token, and waits for its \
            signed welcome. Exit 0 once welcomed; 65 for a damaged or expired token; 69 when the inviter does \
            not answer (this node then trusts it already: run join again once it is reachable).
            """)

    @Argument(help: "The token `quotamesh invite` printed.")
    var token: String

    @Option(help: "The identity file (created if missing). Default: the configuration's, else .quotamesh/identity")
    var identity: String?

    @Option(help: "The trust store folder. Default: the configuration's, else Peers")
    var peers: String?

    @Option(help: "The gossip address the inviter reaches this node at, HOST:PORT. Default: the configuration's gossip address, with the address this machine reaches the inviter from for 0.0.0.0")
    var endpoint: String?

    @Option(help: "The name to give the inviter in the trust store. Default: inviter- and its key's first 8 hex digits")
    var name: String?

    @Option(help: "How long to wait for the inviter's answer (1s to 5m).")
    var timeout: String = "10s"

    @Option(help: "A JSON configuration file (for the mesh's name, the gossip address and the folders). Default: $QUOTAMESH_CONFIG.")
    var config: String?

    func validate() throws {
        if let endpoint {
            guard let parsed = Endpoint(parsing: endpoint), parsed.port > 0 else {
                throw ValidationError("--endpoint must be HOST:PORT, got '\(endpoint)'")
            }
        }
        if let name, !TrustStore.isValidPeerName(name) {
            throw ValidationError("--name must be 1-64 letters, digits, '-', '_' or '.'")
        }
        guard let millis = DurationText.milliseconds(timeout), (1_000...300_000).contains(millis) else {
            throw ValidationError("--timeout must be a duration from 1s to 5m, got '\(timeout)'")
        }
    }

    func run() async throws {
        let invitation: Invitation
        do {
            invitation = try Invitation(token: token, now: wallClockMillis())
        } catch {
            printError("error: \(error)")
            throw ExitCode(ExitCodes.dataError)
        }
        let configuration = try Run.loadConfiguration(file: config)
        guard configuration.mesh.cluster == invitation.cluster else {
            printError("""
                error: the invitation is for mesh "\(invitation.cluster)"; this node's configuration names \
                "\(configuration.mesh.cluster)" (set `cluster` to join it)
                """)
            throw ExitCode(ExitCodes.configuration)
        }
        let identityPath = identity ?? configuration.identityPath
        let key: SigningKey
        do {
            if FileManager.default.fileExists(atPath: identityPath) {
                key = try IdentityStore.load(from: identityPath)
            } else {
                key = try IdentityStore.create(at: identityPath)
                print("created \(identityPath) (this node's identity)")
            }
        } catch {
            printError("error: \(error)")
            throw ExitCode(ExitCodes.dataError)
        }
        guard key.publicKey != invitation.inviter else {
            printError("error: this token is this node's own invitation; run join on the new node")
            throw ExitCode(ExitCodes.usage)
        }
        guard let address = endpoint.flatMap(Endpoint.init(parsing:))
            ?? ReachableAddress.guess(listen: configuration.gossip, toward: invitation.endpoint)
        else {
            printError("""
                error: cannot tell which address the inviter reaches this node at (gossip listens on \
                \(configuration.gossip)); pass --endpoint HOST:PORT
                """)
            throw ExitCode(ExitCodes.usage)
        }
        let store = TrustStore(directory: peers ?? configuration.peersDirectory)
        let listed = store.load().peers
        if let known = listed.first(where: { $0.key == invitation.inviter }) {
            print("already trusted: \(known.name) (\(invitation.inviter.shortID)…)")
        } else {
            let inviterName = name ?? PeerInfo.derivedName("inviter", for: invitation.inviter)
            do {
                try store.add(PeerInfo(name: inviterName, key: invitation.inviter, endpoint: invitation.endpoint))
            } catch {
                printError("error: \(error)")
                throw ExitCode(ExitCodes.cannotCreate)
            }
            print("trusted \(inviterName) (\(invitation.inviter.shortID)…) at \(invitation.endpoint) in \(store.path(for: inviterName))")
        }
        let millis = DurationText.milliseconds(timeout) ?? 10_000
        do {
            try await JoinClient.join(invitation, identity: key, endpoint: address, timeout: .milliseconds(millis))
        } catch {
            printError("error: \(error); this node trusts the inviter already: run join again once it is reachable")
            throw ExitCode(ExitCodes.unavailable)
        }
        print("joined: the inviter trusts this node (\(key.publicKey.shortID)…) at \(address)")
        print("""
            to trust the peers the inviter introduces, set "vouching": "introduced-by: \(invitation.inviter.base64)" \
            in this node's configuration
            """)
    }
}
