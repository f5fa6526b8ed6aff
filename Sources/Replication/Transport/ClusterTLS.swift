import Foundation
import NIOCore
import NIOSSL

/// Mutual TLS for the sync streams (`cluster.tls`): this node's certificate chain and key, and
/// the cluster CA that must have signed every peer's certificate.
///
/// TLS sits between TCP and the frame codec; each frame it carries is still an `Envelope`
/// sealed with the cluster keyring. TLS adds what the seal cannot: peers prove possession of a
/// CA-signed key before any frame is read, and the stream (frame sizes, timing aside) is
/// confidential even in a cluster that runs without a keyring.
///
/// Both sides verify the other's chain against the CA only (`.noHostnameVerification`): nodes
/// dial each other by whatever address membership reports, which need not appear in the
/// certificate, so the CA is what authenticates. The server requires a client certificate
/// (NIOSSL sets `SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT` whenever verification is
/// on). TLS 1.3 only: every node runs this code, so there is no older peer to serve.
///
/// The files are read and both `NIOSSLContext`s built once, at init; a context is thread-safe
/// and serves every connection.
public struct ClusterTLS: Sendable {
    public let certificatePath: String
    public let keyPath: String
    public let caPath: String
    /// Certificates in the CA file (all are trusted).
    public let caCertificateCount: Int
    let clientContext: NIOSSLContext
    let serverContext: NIOSSLContext

    /// Larger than any PEM certificate chain or key a node should hold.
    static let fileBytesMax = 1 << 20

    /// Reads the three PEM files and builds the client and server contexts.
    /// - Throws: `ClusterTLSError` naming the file (`cluster.tls.cert`, `.key` or `.ca`) that
    ///   cannot be read or parsed, or the key that does not belong to the certificate.
    public init(certificatePath: String, keyPath: String, caPath: String) throws(ClusterTLSError) {
        let chain = try Self.certificates(.certificate, at: certificatePath)
        let key = try Self.privateKey(at: keyPath)
        let ca = try Self.certificates(.ca, at: caPath)

        func mutual(_ configuration: inout TLSConfiguration) {
            configuration.trustRoots = .certificates(ca)
            configuration.certificateVerification = .noHostnameVerification
            configuration.minimumTLSVersion = .tlsv13
        }
        var server = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        mutual(&server)
        var client = TLSConfiguration.makeClientConfiguration()
        client.certificateChain = chain.map { .certificate($0) }
        client.privateKey = .privateKey(key)
        mutual(&client)
        do {
            serverContext = try NIOSSLContext(configuration: server)
            clientContext = try NIOSSLContext(configuration: client)
        } catch {
            // Loading the key into a context checks it against the leaf certificate.
            throw ClusterTLSError(
                .invalid, .key, path: keyPath,
                "cannot use \(keyPath) with the certificate in \(certificatePath) (is it that certificate's key?): \(error)"
            )
        }
        self.certificatePath = certificatePath
        self.keyPath = keyPath
        self.caPath = caPath
        self.caCertificateCount = ca.count
    }

    func makeClientHandler() throws -> NIOSSLClientHandler {
        // No SNI: peers are dialed by address, and NIOSSL refuses an IP address as SNI.
        try NIOSSLClientHandler(context: clientContext, serverHostname: nil)
    }

    func makeServerHandler() -> NIOSSLServerHandler {
        NIOSSLServerHandler(context: serverContext)
    }

    private static func certificates(
        _ file: ClusterTLSError.File, at path: String
    ) throws(ClusterTLSError) -> [NIOSSLCertificate] {
        let bytes = try contents(file, at: path)
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMBytes(bytes)
        } catch {
            throw ClusterTLSError(
                .invalid, file, path: path,
                "\(path) is not a PEM certificate file (expected \"-----BEGIN CERTIFICATE-----\" blocks): \(error)")
        }
        guard !certificates.isEmpty else {
            throw ClusterTLSError(.invalid, file, path: path, "\(path) holds no PEM certificate")
        }
        return certificates
    }

    private static func privateKey(at path: String) throws(ClusterTLSError) -> NIOSSLPrivateKey {
        let bytes = try contents(.key, at: path)
        do {
            return try NIOSSLPrivateKey(bytes: bytes, format: .pem)
        } catch {
            let text = String(decoding: bytes, as: UTF8.self)
            let hint =
                text.contains("ENCRYPTED")
                ? "it is encrypted; store it unencrypted (`openssl pkey -in KEY -out KEY.plain`) and restrict its permissions"
                : "expected a \"-----BEGIN PRIVATE KEY-----\" block"
            throw ClusterTLSError(
                .invalid, .key, path: path, "\(path) is not a usable PEM private key (\(hint)): \(error)")
        }
    }

    private static func contents(_ file: ClusterTLSError.File, at path: String) throws(ClusterTLSError) -> [UInt8] {
        func unreadable(_ reason: String) -> ClusterTLSError {
            ClusterTLSError(.unreadable, file, path: path, "cannot read \(path): \(reason)")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw unreadable(String(cString: strerror(errno))) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw unreadable(String(cString: strerror(errno)))
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[..<n])
            guard bytes.count <= fileBytesMax else {
                throw unreadable("larger than \(fileBytesMax) bytes; not a PEM file?")
            }
        }
        guard !bytes.isEmpty else { throw ClusterTLSError(.invalid, file, path: path, "\(path) is empty") }
        return bytes
    }
}

/// A `cluster.tls` file that cannot be used. `description` reads
/// `cluster.tls.cert: cannot read /etc/bifrost/node.pem: No such file or directory`.
public struct ClusterTLSError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The file cannot be opened or read (missing, permissions, a directory, too large).
        case unreadable = "tls_file_unreadable"
        /// The file was read but holds no usable certificate or key, or the key does not match.
        case invalid = "tls_file_invalid"
    }

    /// Which of the three files; the raw value is its `cluster.tls` field.
    public enum File: String, Sendable {
        case certificate = "cert"
        case key
        case ca
    }

    public var code: Code
    public var file: File
    public var path: String
    /// What is wrong, naming the path.
    public var message: String

    public init(_ code: Code, _ file: File, path: String, _ message: String) {
        self.code = code
        self.file = file
        self.path = path
        self.message = message
    }

    /// The configuration field the file came from, e.g. `cluster.tls.cert`.
    public var configPath: String { "cluster.tls.\(file.rawValue)" }

    public var description: String { "\(configPath): \(message)" }
}

/// Completes `handshake` when the first decrypted bytes arrive, or fails it with the first error
/// before that (or when the channel closes first). Passes everything on untouched.
///
/// The first bytes, not NIOSSL's handshake-completed event, because in TLS 1.3 a client
/// finishes its side of the handshake before the server has checked the client's certificate:
/// a dialer whose certificate is refused learns it from the alert that follows. Only the peer's
/// first application data (its hello, sent at once) shows that both sides accepted each other.
/// The sync service uses the outcome to tell a refused handshake (counted, logged with the
/// peer's address) from a connection that broke later.
final class TLSHandshakeObserver: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let handshake: EventLoopPromise<Void>
    private var resolved = false

    init(handshake: EventLoopPromise<Void>) {
        self.handshake = handshake
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        resolve(.success(()))
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        resolve(.failure(error))
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        resolve(.failure(ChannelError.eof))
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        resolve(.failure(ChannelError.ioOnClosedChannel))
    }

    private func resolve(_ result: Result<Void, any Error>) {
        guard !resolved else { return }
        resolved = true
        handshake.completeWith(result)
    }

    /// An error of TLS itself (a refused or malformed handshake, an alert), not the connection
    /// merely closing (`uncleanShutdown`: the peer went away without a TLS close).
    static func isTLSFailure(_ error: any Error) -> Bool {
        if case NIOSSLError.uncleanShutdown = error { return false }
        return error is NIOSSLError || error is BoringSSLError
    }
}

@available(*, unavailable)
extension TLSHandshakeObserver: Sendable {}
