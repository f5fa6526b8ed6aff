import ArgumentParser
import AsyncHTTPClient
import Hummingbird
import NIOCore

/// The floor of the gateway's stack: a Hummingbird server whose one route forwards the body
/// through AsyncHTTPClient (pooled keep-alive connections, tasks on the event loops, as in
/// `bifrost`) and returns the answer, with no parsing, routing, limits, events or metrics. The
/// gateway bench runs it beside the node, so the report shows which part of the cost is the
/// gateway's own work and which part the server and client underneath it.
struct PassthroughProxy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passthrough",
        abstract: "A Hummingbird + AsyncHTTPClient pass-through proxy (the gateway bench's stack floor).",
        shouldDisplay: false)

    @Option(help: "Upstream base URL, e.g. http://127.0.0.1:18080.")
    var upstream: String

    @Option(help: "Port to listen on (127.0.0.1).")
    var port: Int

    func run() async throws {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 256)
        configuration.decompression = .disabled
        configuration.tracing.tracer = nil
        let http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let router = Router()
        router.get("health") { _, _ in HTTPResponse.Status.ok }
        let target = upstream + "/v1/chat/completions"
        router.post("v1/chat/completions") { request, _ -> Response in
            var call = HTTPClientRequest(url: target)
            call.method = .POST
            call.headers.add(name: "content-type", value: "application/json")
            call.headers.add(name: "authorization", value: "Bearer sk-passthrough")
            call.body = .bytes(try await request.body.collect(upTo: 1 << 20))
            let answer = try await http.execute(call, deadline: .now() + .seconds(30))
            let body = try await answer.body.collect(upTo: 64 << 20)
            return Response(
                status: .init(code: Int(answer.status.code)), headers: [.contentType: "application/json"],
                body: .init(byteBuffer: body))
        }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: port)))
        do {
            try await app.runService()
        } catch {
            try? await http.shutdown()
            throw error
        }
        try await http.shutdown()
    }
}
