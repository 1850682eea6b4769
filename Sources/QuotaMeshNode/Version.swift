/// This build's version, as `quotamesh --version` and `/healthz` say it.
public enum QuotaMeshVersion {
    /// Semantic versioning; the wire format's own version is in every packet header.
    public static let current = "0.9.0"
}
