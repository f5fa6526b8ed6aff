/// Where an upstream connection goes: scheme, host and port. Connections are pooled per origin.
struct UpstreamOrigin: Hashable, Sendable, CustomStringConvertible {
    let secure: Bool
    let host: String
    let port: Int
    /// The certificate authorities `https` connections are verified against; nil: the system's.
    var caFile: String?
    /// The `Host` header: the port only when it is not the scheme's default. Made once, since
    /// every call sends it.
    let hostHeader: String

    init(secure: Bool, host: String, port: Int, caFile: String? = nil) {
        self.secure = secure
        self.host = host
        self.port = port
        self.caFile = caFile
        let name = host.utf8.contains(UInt8(ascii: ":")) ? "[\(host)]" : host
        hostHeader = port == (secure ? 443 : 80) ? name : "\(name):\(port)"
    }

    /// The origin of an absolute `http` or `https` URL and the request target (path and query,
    /// `/` when empty); nil for anything else.
    static func parse(_ url: String) -> (origin: UpstreamOrigin, target: String)? {
        let secure: Bool
        var rest: Substring
        if url.hasPrefix("https://") {
            secure = true
            rest = url.dropFirst(8)
        } else if url.hasPrefix("http://") {
            secure = false
            rest = url.dropFirst(7)
        } else {
            return nil
        }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        rest = rest[authorityEnd...]
        let target = rest.isEmpty ? "/" : (rest.first == "?" ? "/" + rest : String(rest))
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        var host = authority
        var port = secure ? 443 : 80
        if authority.first == "[" {
            // An IPv6 literal: [::1]:8080
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[authority.index(after: authority.startIndex)..<close]
            let after = authority[authority.index(after: close)...]
            if after.first == ":" {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { return nil }
                port = p
            } else if !after.isEmpty {
                return nil
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            port = p
        }
        guard !host.isEmpty else { return nil }
        return (UpstreamOrigin(secure: secure, host: String(host), port: port), target)
    }

    /// Whether the host is an IP literal (no SNI is sent for those).
    var isIPAddress: Bool {
        host.utf8.contains(UInt8(ascii: ":"))
            || host.split(separator: ".").count == 4 && host.allSatisfy { $0.isNumber || $0 == "." }
    }

    var description: String { "\(secure ? "https" : "http")://\(hostHeader)" }
}
