#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import QuotaMeshCore

/// Which address other machines reach this node's gossip at, for `quotamesh id`, `invite` and `join`.
public enum ReachableAddress {
    /// The address to give peers for gossip listening at `listen`: `listen` itself when it names a host;
    /// for a wildcard (`0.0.0.0`, `::`), the address this machine sends from toward `peer` when one is
    /// known, else its first IPv4 address that is up and not loopback. `nil` when it cannot tell (only
    /// loopback, or no route).
    public static func guess(listen: Endpoint, toward peer: Endpoint? = nil) -> Endpoint? {
        guard ["0.0.0.0", "::", "[::]", ""].contains(listen.host) else { return listen }
        if let peer, let source = sourceAddress(toward: peer) { return Endpoint(host: source, port: listen.port) }
        return firstInterfaceAddress().map { Endpoint(host: $0, port: listen.port) }
    }

    /// The local address the routing table picks to reach `peer` (an IPv4 literal), found by connecting
    /// a UDP socket, which sends nothing.
    static func sourceAddress(toward peer: Endpoint) -> String? {
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = in_port_t(UInt16(peer.port).bigEndian)
        guard inet_pton(AF_INET, peer.host, &target.sin_addr) == 1 else { return nil }
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_DGRAM, 0)
        #endif
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        var local = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { return nil }
        return text(of: local.sin_addr)
    }

    /// The first IPv4 address of an interface that is up and not loopback.
    static func firstInterfaceAddress() -> String? {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0, let first = list else { return nil }
        defer { freeifaddrs(list) }
        var cursor: UnsafeMutablePointer<ifaddrs>? = first
        while let entry = cursor {
            defer { cursor = entry.pointee.ifa_next }
            let flags = Int32(entry.pointee.ifa_flags)
            guard let address = entry.pointee.ifa_addr, address.pointee.sa_family == sa_family_t(AF_INET),
                flags & Int32(IFF_UP) != 0, flags & Int32(IFF_LOOPBACK) == 0
            else { continue }
            let ipv4 = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr }
            if let text = text(of: ipv4) { return text }
        }
        return nil
    }

    private static func text(of address: in_addr) -> String? {
        var address = address
        var buffer = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
        guard inet_ntop(AF_INET, &address, &buffer, socklen_t(buffer.count)) != nil else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
