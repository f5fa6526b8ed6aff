/// The life of one client connection on the HTTP port, as a pure state machine: the channel
/// handler feeds it what happened and performs the actions it returns (the shape of
/// Hummingbird's `HTTPConnectionStateHandler.StateMachine` and swift-nio's
/// `HTTPServerPipelineHandler`). One request at a time: NIO's pipelining handler holds a
/// pipelined request back until the previous response ended.
///
/// ```
///   idle ──first byte──▶ head ──head──▶ body ──end──▶ responding ──response end──▶ idle
///    │ idle timeout       │ header timeout  │ body timeout / too large     (or close)
///    ▼                    ▼                 ▼
///  close           408 and close     408 / 413 and close
/// ```
struct HTTPConnectionMachine: Equatable {
    enum Timer: Equatable {
        /// Waiting for the next request on a kept-alive connection.
        case idle
        /// A request's head started and must be complete in time.
        case header
        /// The body must be complete in time.
        case body
    }

    /// Why a request is answered with an error and the connection closed.
    enum Refusal: Equatable {
        /// 413: the announced or received body is larger than the limit.
        case bodyTooLarge
        /// 408: the head did not arrive within `header_timeout`.
        case headerTimeout
        /// 408: the body did not arrive within `body_timeout`.
        case bodyTimeout
        /// 431: the head is larger than `max_header_bytes`.
        case headersTooLarge
        /// 400: the bytes are not HTTP/1.1.
        case malformed
    }

    enum Action: Equatable {
        /// Replace the armed timer with this one.
        case arm(Timer)
        /// Write `100 Continue`: the client waits for it before sending its body.
        case sendContinue
        /// The whole request is here: answer it.
        case dispatch(keepAlive: Bool)
        /// Answer with this error (no keep-alive), then close.
        case refuse(Refusal)
        /// Close the connection (idle, or the response asked for it).
        case close
        /// The client went away while its request was being answered.
        case cancelRequest
        /// Stop the timer.
        case disarm
    }

    enum State: Equatable {
        case idle
        case head
        case body(received: Int, limit: Int, keepAlive: Bool)
        case responding(keepAlive: Bool)
        case closed
    }

    private(set) var state = State.idle

    /// The connection is open: wait for a request.
    mutating func activated() -> [Action] { [.arm(.idle)] }

    /// Bytes arrived from the client: on an idle connection a request's head starts.
    mutating func bytesArrived() -> [Action] {
        guard state == .idle else { return [] }
        state = .head
        return [.arm(.header)]
    }

    /// A request head was parsed.
    mutating func head(
        contentLength: Int?, expectsContinue: Bool, keepAlive: Bool, headerBytes: Int, maxHeaderBytes: Int,
        maxBodyBytes: Int
    ) -> [Action] {
        switch state {
        case .idle, .head:
            if headerBytes > maxHeaderBytes { return refuse(.headersTooLarge) }
            if let contentLength, contentLength > maxBodyBytes { return refuse(.bodyTooLarge) }
            state = .body(received: 0, limit: maxBodyBytes, keepAlive: keepAlive)
            return expectsContinue ? [.arm(.body), .sendContinue] : [.arm(.body)]
        case .body, .responding, .closed:
            return []
        }
    }

    /// Body bytes arrived.
    mutating func body(bytes: Int) -> [Action] {
        guard case .body(let received, let limit, let keepAlive) = state else { return [] }
        let total = received + bytes
        if total > limit { return refuse(.bodyTooLarge) }
        state = .body(received: total, limit: limit, keepAlive: keepAlive)
        return []
    }

    /// The request ended.
    mutating func end() -> [Action] {
        guard case .body(_, _, let keepAlive) = state else { return [] }
        state = .responding(keepAlive: keepAlive)
        return [.disarm, .dispatch(keepAlive: keepAlive)]
    }

    mutating func timerFired(_ timer: Timer) -> [Action] {
        switch (state, timer) {
        case (.idle, .idle):
            state = .closed
            return [.close]
        case (.head, .header):
            return refuse(.headerTimeout)
        case (.body, .body):
            return refuse(.bodyTimeout)
        default:
            return []
        }
    }

    /// The bytes could not be parsed as HTTP.
    mutating func parseError(headerOverflow: Bool) -> [Action] {
        switch state {
        case .responding, .closed:
            state = .closed
            return [.close]
        case .idle, .head, .body:
            return refuse(headerOverflow ? .headersTooLarge : .malformed)
        }
    }

    /// The response's last part is being written; `keepAlive` false when the response closes
    /// the connection.
    mutating func responseEnded(keepAlive: Bool) -> [Action] {
        guard case .responding(let requested) = state else { return [] }
        if requested && keepAlive {
            state = .idle
            return [.arm(.idle)]
        }
        state = .closed
        return [.close]
    }

    /// The connection closed.
    mutating func inactive() -> [Action] {
        defer { state = .closed }
        if case .responding = state { return [.disarm, .cancelRequest] }
        return [.disarm]
    }

    private mutating func refuse(_ refusal: Refusal) -> [Action] {
        state = .closed
        return [.disarm, .refuse(refusal)]
    }
}
