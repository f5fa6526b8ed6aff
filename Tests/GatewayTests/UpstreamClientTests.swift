import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing

@testable import Gateway

/// The upstream client against a provider on a real loopback socket that answers with scripted
/// bytes: answers read whole for calls that do not stream, heads at once for streams, and what
/// a call does when the answer stops, overflows or is abandoned.
@Suite(.timeLimit(.minutes(3))) struct UpstreamClientTests {
    /// A provider that answers the first request bytes of its connection with `answer`, then
    /// `rest`: after `delay`, or only when `release()` is called when `delay` is nil. Then it
    /// closes if told to.
    final class ScriptedProvider: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        let answer: String
        let rest: String?
        let delay: TimeAmount?
        let closeAfter: Bool
        /// Connections the client closed.
        let closedByClient = Atomic<Int>(0)
        /// When the client closed the connection, seen on the provider's loop.
        let closedAt = Mutex<ContinuousClock.Instant?>(nil)
        let requests = Atomic<Int>(0)
        /// The answering connection, while it waits for `release()`.
        private let held = Mutex<(any EventLoop, NIOLoopBound<ChannelHandlerContext>)?>(nil)

        init(answer: String, rest: String? = nil, delay: TimeAmount? = .milliseconds(50), closeAfter: Bool = false) {
            self.answer = answer
            self.rest = rest
            self.delay = delay
            self.closeAfter = closeAfter
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard requests.add(1, ordering: .relaxed).newValue == 1 else { return }
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer)), promise: nil)
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            guard let delay else {
                held.withLock { $0 = (context.eventLoop, bound) }
                return
            }
            context.eventLoop.scheduleTask(in: delay) { [self] in finish(bound.value) }
        }

        /// Sends the rest of a held answer.
        func release() {
            guard let (loop, bound) = held.withLock({ $0 }) else { return }
            loop.execute { [self] in finish(bound.value) }
        }

        private func finish(_ context: ChannelHandlerContext) {
            if let rest { context.writeAndFlush(NIOAny(ByteBuffer(string: rest)), promise: nil) }
            if closeAfter { context.close(promise: nil) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            guard !closeAfter else { return }
            closedAt.withLock { $0 = $0 ?? .now }
            closedByClient.add(1, ordering: .relaxed)
        }
    }

    /// The provider's and the client's loop, their own: other suites running beside these cannot
    /// hold it up.
    static let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    /// Serves `provider` on 127.0.0.1 and returns the channel and its URL.
    static func serve(_ provider: ScriptedProvider) async throws -> (any Channel, String) {
        let channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(provider) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return (channel, "http://127.0.0.1:\(channel.localAddress!.port!)/v1/chat/completions")
    }

    static func call(_ url: String, wholeBodyLimit: Int?) -> UpstreamCall {
        UpstreamCall(
            url: url, headers: ["content-type": "application/json"], body: Array(#"{"model":"m"}"#.utf8),
            timeout: .seconds(10), wholeBodyLimit: wholeBodyLimit)
    }

    static func text(_ body: UpstreamBody) async throws -> String {
        String(buffer: try await body.collect(upTo: 1 << 20))
    }

    @Test func aCallThatDoesNotStream_returnsOnceTheAnswerIsWhole() async throws {
        let provider = ScriptedProvider(answer: "HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhello", rest: " world")
        let (server, url) = try await Self.serve(provider)
        defer { server.close(promise: nil) }
        let client = try UpstreamClient(group: Self.group)
        let response = try await client.send(Self.call(url, wholeBodyLimit: 1024))
        #expect(response.status == 200)
        // Complete when the call returns: the body is held, not streamed.
        #expect(response.body.whole.map { String(buffer: $0) } == "hello world")
        #expect(try await Self.text(response.body) == "hello world")
    }

    @Test func aStream_returnsAtTheHead_andItsBodyFollows() async throws {
        let provider = ScriptedProvider(
            answer: "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 11\r\n\r\nhello",
            rest: " world", delay: nil)
        let (server, url) = try await Self.serve(provider)
        defer { server.close(promise: nil) }
        let client = try UpstreamClient(group: Self.group)
        // The provider holds the rest of the body until the call has returned: a call that
        // waited for the whole answer would end in its timeout instead.
        let response = try await client.send(Self.call(url, wholeBodyLimit: nil))
        #expect(response.body.whole == nil)
        provider.release()
        #expect(try await Self.text(response.body) == "hello world")
    }

    /// Expects a whole-answer call to `provider`, with `limit`, to fail with a detail naming `detail`.
    static func expectFailure(of provider: ScriptedProvider, limit: Int, naming detail: String) async throws {
        let (server, url) = try await serve(provider)
        defer { server.close(promise: nil) }
        let client = try UpstreamClient(group: group)
        await #expect {
            _ = try await client.send(call(url, wholeBodyLimit: limit))
        } throws: { error in
            guard case UpstreamFailure.other(let message) = error else { return false }
            return message.contains(detail)
        }
    }

    @Test func anAnswerOverTheLimit_failsTheCall_namingTheLimit() async throws {
        let provider = ScriptedProvider(
            answer: "HTTP/1.1 200 OK\r\ncontent-length: 40\r\n\r\n" + String(repeating: "x", count: 40))
        try await Self.expectFailure(of: provider, limit: 16, naming: "larger than 16 bytes")
    }

    @Test func aProviderThatClosesMidBody_failsTheCall() async throws {
        let provider = ScriptedProvider(
            answer: "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart", closeAfter: true)
        try await Self.expectFailure(of: provider, limit: 1024, naming: "mid-body")
    }

    @Test func aCallCancelledWhileItsAnswerIsGathered_closesTheConnection() async throws {
        let provider = ScriptedProvider(answer: "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart")
        let (server, url) = try await Self.serve(provider)
        defer { server.close(promise: nil) }
        let client = try UpstreamClient(group: Self.group)
        let call = Task { try await client.send(Self.call(url, wholeBodyLimit: 1024)) }
        let deadline = ContinuousClock.now + .seconds(30)
        while provider.requests.load(ordering: .relaxed) == 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        try await Task.sleep(for: .milliseconds(100))
        let cancelled = ContinuousClock.now
        call.cancel()
        await #expect {
            _ = try await call.value
        } throws: { error in
            guard case UpstreamFailure.cancelled = error else { return false }
            return true
        }
        while provider.closedByClient.load(ordering: .relaxed) == 0 && ContinuousClock.now < cancelled + .seconds(10) {
            try await Task.sleep(for: .milliseconds(5))
        }
        #expect(provider.closedByClient.load(ordering: .relaxed) == 1)
        // Timed on the loops, not by this task (which the parallel suites may hold up): well
        // before the call's 10 s timeout.
        let closedAt = provider.closedAt.withLock { $0 }
        #expect(closedAt.map { $0 - cancelled < .seconds(2) } == true, "closed at \(String(describing: closedAt))")
    }

    @Test func aConnectionThatOutlivesItsClient_closesOnItsIdleTimeout_quietly() async throws {
        let provider = ScriptedProvider(answer: "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        let (server, url) = try await Self.serve(provider)
        defer { server.close(promise: nil) }
        do {
            let client = try UpstreamClient(idleTimeout: .milliseconds(100), group: Self.group)
            let response = try await client.send(Self.call(url, wholeBodyLimit: 1024))
            #expect(try await Self.text(response.body) == "ok")
        }
        // The client and its pool are gone; the pooled connection closes on its idle timeout.
        let deadline = ContinuousClock.now + .seconds(30)
        while provider.closedByClient.load(ordering: .relaxed) == 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(provider.closedByClient.load(ordering: .relaxed) == 1)
    }
}
