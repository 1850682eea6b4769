import QuotaMeshCrypto

/// An invitation to join a mesh (`quotamesh invite`): the inviter's key and the address its peers reach
/// it at, the mesh's name, when it expires, and a secret the joiner proves it holds
/// (``InvitationSecrets``), all signed by the inviter. Anyone holding the token may join until it
/// expires, so it is handed over like a password.
///
/// Token: `qm-invite-1.` and base64url (no padding) of `inviter [32] | expires i64 (Unix s) | nonce [16] |
/// secret [32] | cluster (u8 length, UTF-8) | endpoint (u8 length, "HOST:PORT") | signature [64]`, the
/// inviter's Ed25519 signature over `"quotamesh/invite/v1\0"` and everything before it.
public struct Invitation: Hashable, Sendable {
    public var inviter: VerifyingKey
    public var endpoint: Endpoint
    public var cluster: String
    /// Unix seconds.
    public var expires: Int64
    public var nonce: [UInt8]
    public var secret: [UInt8]

    /// What every token starts with.
    public static let tokenPrefix = "qm-invite-1."
    static let domain = Array("quotamesh/invite/v1".utf8) + [0]

    /// A new invitation from `key`, reachable at `endpoint`, valid until `expires` (Unix seconds).
    public init(from key: SigningKey, endpoint: Endpoint, cluster: String, expires: Int64,
                nonce: [UInt8] = secureRandomBytes(count: InvitationSecrets.nonceBytes)) {
        self.inviter = key.publicKey
        self.endpoint = endpoint
        self.cluster = cluster
        self.expires = expires
        self.nonce = nonce
        self.secret = InvitationSecrets.secret(of: key, nonce: nonce, expires: expires)
    }

    /// The token, signed by `key` (the inviter's).
    public func token(signedBy key: SigningKey) -> String {
        var writer = ByteWriter(capacity: 200)
        writer.write(key: inviter)
        writer.write(expires)
        writer.write(bytes: nonce)
        writer.write(bytes: secret)
        writer.write(shortString: cluster)
        writer.write(shortString: endpoint.description)
        let signature = key.signature(for: Self.domain + writer.bytes)
        writer.write(bytes: signature.rawRepresentation)
        return Self.tokenPrefix + Base64.encodeURLSafe(writer.bytes)
    }

    /// Why a token was refused.
    public enum TokenError: Error, Equatable, Sendable, CustomStringConvertible {
        case notAToken
        case malformed(String)
        case badSignature
        case expired(at: Int64)

        public var description: String {
            switch self {
            case .notAToken: "not an invitation token (it starts with \(Invitation.tokenPrefix))"
            case .malformed(let field): "the token is damaged (\(field)); copy it again, whole"
            case .badSignature: "the token's signature does not verify: it was altered"
            case .expired(let at): "the invitation expired at \(at) (Unix seconds); ask for a new one"
            }
        }
    }

    /// The invitation in `token`, once its signature verifies and unless it expired before `now` (Unix ms).
    public init(token: String, now: UnixMillis) throws(TokenError) {
        let text = token.trimmingASCIIWhitespace()
        guard text.hasPrefix(Self.tokenPrefix) else { throw .notAToken }
        guard let bytes = try? Base64.decodeURLSafe(String(text.dropFirst(Self.tokenPrefix.count))),
            bytes.count > Signature.byteCount
        else { throw .malformed("base64") }
        let signed = Array(bytes.dropLast(Signature.byteCount))
        var reader = ByteReader(signed)
        do throws(DecodeError) {
            inviter = try reader.readKey()
            expires = try reader.readInt64()
            nonce = try reader.readBytes(InvitationSecrets.nonceBytes)
            secret = try reader.readBytes(InvitationSecrets.secretBytes)
            cluster = try reader.readShortString(field: "cluster")
            let address = try reader.readShortString(field: "endpoint")
            guard reader.isAtEnd else { throw DecodeError.trailingBytes }
            guard let parsed = Endpoint(parsing: address), parsed.port > 0 else { throw .malformed("endpoint") }
            endpoint = parsed
        } catch {
            throw .malformed(error.reason)
        }
        guard let signature = try? Signature(rawRepresentation: Array(bytes.suffix(Signature.byteCount))),
            inviter.isValidSignature(signature, for: Self.domain + signed)
        else { throw .badSignature }
        guard expires.saturatingMultiply(1000) > now else { throw .expired(at: expires) }
    }
}
