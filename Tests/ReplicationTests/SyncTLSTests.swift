import EventLog
import Foundation
import Logging
import Synchronization
import Testing

@testable import Replication

/// Mutual TLS under the sync streams (`ClusterTLS`), over real sockets on 127.0.0.1 with
/// certificates made by the `openssl` CLI for each test.
@Suite struct SyncTLSTests {
    @Test func nodesWithCASignedCertificates_connectAndReplicate() async throws {
        let certs = try TLSTestCertificates()
        defer { certs.remove() }
        let keyring = try SyncTestNode.keyring()
        try await TLSTestNode.withCleanup { started in
            let a = try await TLSTestNode(name: "a", keyring: keyring, tls: try certs.tls("a"), in: started)
            let b = try await TLSTestNode(name: "b", keyring: keyring, tls: try certs.tls("b"), in: started)
            let nodes = [a, b]
            TLSTestNode.connect(nodes)
            #expect(
                try await SyncTestNode.eventually { nodes.allSatisfy { $0.service.metrics().connections.count == 1 } },
                "connections: \(nodes.map { "\($0.name): \($0.service.metrics().connections)" })")

            for node in nodes {
                for _ in 0..<10 { _ = try await node.store.append(contentsOf: SyncTestNode.payloads(10)) }
            }
            let converged = try await SyncTestNode.eventually {
                let stats = try nodes.map { try $0.store.reader.stats() }
                return stats.allSatisfy { $0.events == 200 && $0.root == stats[0].root }
            }
            let counts = try nodes.map { try $0.store.reader.stats().events }
            #expect(converged, "events: \(counts)")
            for node in nodes {
                let metrics = node.service.metrics()
                #expect(metrics.tlsHandshakeFailures == 0)
                #expect(metrics.rejectedFramesTotal == 0)
                #expect(metrics.protocolErrors == 0)
                #expect(metrics.eventsSent >= 100)
            }
        }
    }

    /// The rogue node holds the cluster keyring and trusts the cluster CA (both would let it in
    /// without TLS), but its certificate is signed by another CA. Whichever side dials, the
    /// good node refuses the handshake, counts it, and no frame reaches the keyring layer.
    @Test(arguments: [true, false])
    func nodeWithCertificateFromAnotherCA_neverConnects_andFailuresAreCounted(rogueDials: Bool) async throws {
        let certs = try TLSTestCertificates()
        defer { certs.remove() }
        let keyring = try SyncTestNode.keyring()
        // The node with the smaller name dials.
        let (goodName, rogueName) = rogueDials ? ("m", "a") : ("m", "z")
        try await TLSTestNode.withCleanup { started in
            let good = try await TLSTestNode(
                name: goodName, keyring: keyring, tls: try certs.tls("good"), in: started)
            let rogue = try await TLSTestNode(
                name: rogueName, keyring: keyring, tls: try certs.rogueTLS(), in: started)
            let nodes = [good, rogue]
            for node in nodes { _ = try await node.store.append(contentsOf: SyncTestNode.payloads(50)) }
            TLSTestNode.connect(nodes)

            #expect(try await SyncTestNode.eventually { good.service.metrics().tlsHandshakeFailures >= 2 })
            // Retries follow the dialer's backoff (100 ms doubling to 5 s): a handful a second.
            let before = good.service.metrics().tlsHandshakeFailures
            try await Task.sleep(for: .seconds(1))
            let inASecond = good.service.metrics().tlsHandshakeFailures - before
            #expect(inASecond <= 8, "\(inASecond) handshake failures in one second")

            for node in nodes {
                let metrics = node.service.metrics()
                #expect(metrics.connections.isEmpty)
                #expect(metrics.eventsReceived == 0)
                #expect(metrics.rejectedFramesTotal == 0, "a frame got past TLS: \(metrics.rejectedFrames)")
                #expect(metrics.protocolErrors == 0)
                #expect(node.service.transportStats.snapshot().opened == 0)
                #expect(try node.store.reader.stats().events == 50)
            }
            // The rogue side sees the refusal as well: its own check of the server's certificate
            // passes, then the alert of the server refusing its certificate arrives.
            #expect(rogue.service.metrics().tlsHandshakeFailures >= 1)
        }
    }

    /// A node without TLS cannot talk to a TLS node (so TLS really is on the wire).
    @Test func plainNode_andTLSNode_neverConnect() async throws {
        let certs = try TLSTestCertificates()
        defer { certs.remove() }
        let keyring = try SyncTestNode.keyring()
        try await TLSTestNode.withCleanup { started in
            let secure = try await TLSTestNode(name: "a", keyring: keyring, tls: try certs.tls("a"), in: started)
            let plain = try await TLSTestNode(name: "b", keyring: keyring, tls: nil, in: started)
            let nodes = [secure, plain]
            _ = try await secure.store.append(contentsOf: SyncTestNode.payloads(5))
            TLSTestNode.connect(nodes)

            #expect(try await SyncTestNode.eventually { secure.service.metrics().tlsHandshakeFailures >= 2 })
            for node in nodes {
                #expect(node.service.metrics().connections.isEmpty)
                #expect(node.service.metrics().eventsReceived == 0)
            }
            #expect(try plain.store.reader.stats().events == 0)
        }
    }

    @Test func missingFile_namesTheFieldAndThePath() throws {
        let certs = try TLSTestCertificates()
        defer { certs.remove() }
        let missing = certs.path("absent.pem")
        let cases: [(ClusterTLSError.File, () throws(ClusterTLSError) -> ClusterTLS)] = [
            (.certificate, { () throws(ClusterTLSError) in try certs.tls("a", certificate: missing) }),
            (.key, { () throws(ClusterTLSError) in try certs.tls("a", key: missing) }),
            (.ca, { () throws(ClusterTLSError) in try certs.tls("a", ca: missing) }),
        ]
        for (file, load) in cases {
            let error = #expect(throws: ClusterTLSError.self) { try load() }
            #expect(error?.file == file)
            #expect(error?.code == .unreadable)
            #expect(error?.path == missing)
            #expect(
                error?.description == "cluster.tls.\(file.rawValue): cannot read \(missing): No such file or directory")
        }
    }

    @Test func garbledOrMismatchedFile_namesTheFieldAndSaysWhatIsWrong() throws {
        let certs = try TLSTestCertificates()
        defer { certs.remove() }
        let garbled = certs.path("garbled.pem")
        try Data("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n".utf8)
            .write(to: URL(fileURLWithPath: garbled))
        let empty = certs.path("empty.pem")
        try Data().write(to: URL(fileURLWithPath: empty))

        func expectError(
            _ file: ClusterTLSError.File, _ path: String, mentioning: String,
            _ load: () throws(ClusterTLSError) -> ClusterTLS, sourceLocation: SourceLocation = #_sourceLocation
        ) {
            let error = #expect(throws: ClusterTLSError.self, sourceLocation: sourceLocation) { try load() }
            #expect(error?.file == file, sourceLocation: sourceLocation)
            #expect(error?.code == .invalid, sourceLocation: sourceLocation)
            #expect(error?.path == path, sourceLocation: sourceLocation)
            let description = error?.description ?? ""
            #expect(description.hasPrefix("cluster.tls.\(file.rawValue): "), sourceLocation: sourceLocation)
            #expect(description.contains(mentioning), "\(description)", sourceLocation: sourceLocation)
        }
        expectError(.certificate, garbled, mentioning: "\(garbled) is not a PEM certificate") {
            () throws(ClusterTLSError) in try certs.tls("a", certificate: garbled)
        }
        // A key where the certificate belongs.
        expectError(.certificate, certs.path("a.key"), mentioning: "is not a PEM certificate") {
            () throws(ClusterTLSError) in try certs.tls("a", certificate: certs.path("a.key"))
        }
        expectError(.key, certs.path("a.pem"), mentioning: "is not a usable PEM private key") {
            () throws(ClusterTLSError) in try certs.tls("a", key: certs.path("a.pem"))
        }
        expectError(.ca, empty, mentioning: "\(empty) is empty") {
            () throws(ClusterTLSError) in try certs.tls("a", ca: empty)
        }
        // Another node's key: only building the context notices.
        expectError(.key, certs.path("b.key"), mentioning: "with the certificate in \(certs.path("a.pem"))") {
            () throws(ClusterTLSError) in try certs.tls("a", key: certs.path("b.key"))
        }
    }
}

/// A cluster CA with node certificates `a`, `b`, `good` signed by it, and a rogue CA with one
/// node certificate `rogue`, made by the `openssl` CLI in a temporary directory.
struct TLSTestCertificates {
    let directory: String

    init() throws {
        directory =
            FileManager.default.temporaryDirectory.appendingPathComponent("bifrost-tls-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        do {
            try Data(
                """
                basicConstraints = critical, CA:FALSE
                keyUsage = critical, digitalSignature
                extendedKeyUsage = serverAuth, clientAuth

                """.utf8
            ).write(to: URL(fileURLWithPath: path("node.ext")))
            try makeCA("ca")
            try makeCA("rogue-ca")
            for name in ["a", "b", "good"] { try makeNode(name, signedBy: "ca") }
            try makeNode("rogue", signedBy: "rogue-ca")
        } catch {
            remove()
            throw error
        }
    }

    func path(_ file: String) -> String { "\(directory)/\(file)" }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }

    /// Node `name`'s files, trusting the cluster CA; any path can be swapped.
    func tls(
        _ name: String, certificate: String? = nil, key: String? = nil, ca: String? = nil
    ) throws(ClusterTLSError) -> ClusterTLS {
        try ClusterTLS(
            certificatePath: certificate ?? path("\(name).pem"), keyPath: key ?? path("\(name).key"),
            caPath: ca ?? path("ca.pem"))
    }

    /// A certificate the cluster CA did not sign, trusting the cluster CA (whose certificate
    /// is public).
    func rogueTLS() throws(ClusterTLSError) -> ClusterTLS { try tls("rogue") }

    private func makeCA(_ name: String) throws {
        try openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", path("\(name).key"), "-out", path("\(name).pem"), "-days", "2", "-subj", "/CN=bifrost-\(name)",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    }

    private func makeNode(_ name: String, signedBy ca: String) throws {
        try openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", path("\(name).key"),
            "-out", path("\(name).csr"), "-subj", "/CN=\(name)")
        try openssl(
            "x509", "-req", "-in", path("\(name).csr"), "-CA", path("\(ca).pem"), "-CAkey", path("\(ca).key"),
            "-CAcreateserial", "-days", "2", "-extfile", path("node.ext"), "-out", path("\(name).pem"))
    }

    private func openssl(_ arguments: String...) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw SyncServiceError(
                "openssl \(arguments.joined(separator: " ")) exited with \(process.terminationStatus) "
                    + "(is the openssl CLI installed? `make deps`): \(text)")
        }
    }
}

/// One node with mutual TLS: a store in a temporary directory and a running sync service.
final class TLSTestNode: Sendable {
    let name: String
    let directory: String
    let store: EventStore
    let service: SyncService
    let task: Task<Void, any Error>
    let port: Int

    init(name: String, keyring: Keyring?, tls: ClusterTLS?, in started: Started) async throws {
        self.name = name
        directory =
            FileManager.default.temporaryDirectory.appendingPathComponent("bifrost-tls-\(name)-\(UUID().uuidString)")
            .path
        var settings = EventStore.Settings()
        settings.mapSizeBytes = 64 << 20
        store = try EventStore.open(directory: directory, nodeName: name, settings: settings)
        let service = SyncService(
            store: store, localNode: name, host: "127.0.0.1", port: 0, keyring: keyring, tls: tls,
            faults: FaultInjector(), logger: SyncTestNode.logger)
        self.service = service
        let task = Task { try await service.run() }
        self.task = task
        guard let port = await service.waitUntilBound() else {
            task.cancel()
            let result = await task.result
            try? await store.close()
            try? FileManager.default.removeItem(atPath: directory)
            try result.get()
            throw SyncServiceError("\(name) stopped before binding")
        }
        self.port = port
        started.add(self)
    }

    static func connect(_ nodes: [TLSTestNode]) {
        let peers = nodes.map { SyncPeer(name: $0.name, host: "127.0.0.1", port: $0.port) }
        for node in nodes { node.service.updatePeers(peers) }
    }

    /// What a test started.
    final class Started: Sendable {
        fileprivate let nodes = Mutex<[TLSTestNode]>([])

        func add(_ node: TLSTestNode) { nodes.withLock { $0.append(node) } }
    }

    /// Runs `body`, then stops every node it started and removes their directories.
    static func withCleanup(_ body: (Started) async throws -> Void) async throws {
        let started = Started()
        let result: Result<Void, any Error>
        do {
            try await body(started)
            result = .success(())
        } catch {
            result = .failure(error)
        }
        let nodes = started.nodes.withLock { $0 }
        for node in nodes { node.task.cancel() }
        for node in nodes { _ = await node.task.result }
        for node in nodes {
            try? await node.store.close()
            try? FileManager.default.removeItem(atPath: node.directory)
        }
        try result.get()
    }
}
