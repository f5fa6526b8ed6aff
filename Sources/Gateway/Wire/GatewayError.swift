import EventLog

/// An error the gateway answers a client with, rendered in the client's API.
///
/// OpenAI body (`/v1/chat/completions`, `/v1/embeddings`):
///
///     {"error":{"code":"model_not_found","message":"…","param":"model","type":"not_found_error"}}
///
/// Anthropic body (`/v1/messages`), whose `type` follows from the status:
///
///     {"error":{"message":"…","type":"not_found_error"},"type":"error"}
///
/// The official SDKs pick their exception class from the status (400 `BadRequestError`,
/// 401 `AuthenticationError`, 403 `PermissionDeniedError`, 404 `NotFoundError`, 429
/// `RateLimitError`, ≥ 500 `InternalServerError`) and show `message`, so the message names the
/// field, model or limit a person has to change.
public struct GatewayError: Error, Sendable, Equatable, CustomStringConvertible {
    public var status: Int
    /// The OpenAI `error.type`.
    public var type: String
    public var message: String
    public var param: String?
    public var code: String?
    /// Extra response headers (`retry-after`, `x-ratelimit-*`).
    public var headers: [(name: String, value: String)]

    public init(
        status: Int, type: String, message: String, param: String? = nil, code: String? = nil,
        headers: [(name: String, value: String)] = []
    ) {
        self.status = status
        self.type = type
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers
    }

    public static func == (a: GatewayError, b: GatewayError) -> Bool {
        a.status == b.status && a.type == b.type && a.message == b.message && a.param == b.param && a.code == b.code
            && a.headers.map(\.name) == b.headers.map(\.name) && a.headers.map(\.value) == b.headers.map(\.value)
    }

    public var description: String { "\(status) \(type): \(message)" }

    /// The Anthropic `error.type` for this status.
    public var anthropicType: String {
        switch status {
        case 400: "invalid_request_error"
        case 401: "authentication_error"
        case 403: "permission_error"
        case 404: "not_found_error"
        case 413: "request_too_large"
        case 429: "rate_limit_error"
        case 503, 529: "overloaded_error"
        case 400..<500: "invalid_request_error"
        default: "api_error"
        }
    }

    public var openAIJSON: JSONValue {
        .object([
            "error": .object([
                "message": .string(message),
                "type": .string(type),
                "param": param.map(JSONValue.string) ?? .null,
                "code": code.map(JSONValue.string) ?? .null,
            ])
        ])
    }

    public var anthropicJSON: JSONValue {
        .object([
            "type": .string("error"),
            "error": .object(["type": .string(anthropicType), "message": .string(message)]),
        ])
    }

    public func openAIBody() -> [UInt8] { openAIJSON.renderedBytes() }

    public func anthropicBody() -> [UInt8] { anthropicJSON.renderedBytes() }
}

// MARK: - The errors the gateway produces

extension GatewayError {
    static func badRequest(_ message: String, param: String? = nil, code: String? = nil) -> GatewayError {
        GatewayError(status: 400, type: "invalid_request_error", message: message, param: param, code: code)
    }

    /// The body is not JSON (or not the JSON object a request must be).
    public static func malformedJSON(_ detail: String) -> GatewayError {
        badRequest("The request body is not valid JSON: \(detail).", code: "invalid_json")
    }

    public static func missingField(_ name: String) -> GatewayError {
        badRequest("Missing required parameter: '\(name)'.", param: name, code: "missing_required_parameter")
    }

    public static func invalidField(_ name: String, _ reason: String) -> GatewayError {
        badRequest("Invalid value for '\(name)': \(reason).", param: name, code: "invalid_value")
    }

    /// No virtual key, or one the gateway does not know.
    public static func unauthorized(
        _ detail: String =
            "Missing or unknown virtual key. Pass it as 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
    ) -> GatewayError {
        GatewayError(status: 401, type: "authentication_error", message: detail, code: "invalid_api_key")
    }

    /// The virtual key may not use this model.
    public static func modelNotAllowed(_ model: String) -> GatewayError {
        GatewayError(
            status: 403, type: "permission_error", message: "This key is not allowed to use the model '\(model)'.",
            param: "model", code: "model_not_allowed")
    }

    /// No configured provider serves this model.
    public static func unknownModel(_ model: String) -> GatewayError {
        GatewayError(
            status: 404, type: "not_found_error",
            message: "The model '\(model)' does not exist or is not served by this gateway.", param: "model",
            code: "model_not_found")
    }

    public static func bodyTooLarge(limit: Int) -> GatewayError {
        GatewayError(
            status: 413, type: "invalid_request_error",
            message: "The request body is larger than the gateway's limit of \(limit) bytes.",
            code: "request_too_large")
    }

    /// 408: the client did not send its request's head or body in time.
    public static func requestTimeout(part: String, after timeout: Duration) -> GatewayError {
        GatewayError(
            status: 408, type: "invalid_request_error",
            message:
                "The request's \(part) did not arrive within \(Self.goDuration(timeout)); the connection is closed.",
            code: "request_timeout")
    }

    /// 431: the request head is larger than the gateway accepts.
    public static func headersTooLarge(limit: Int) -> GatewayError {
        GatewayError(
            status: 431, type: "invalid_request_error",
            message: "The request's headers are larger than the gateway's limit of \(limit) bytes.",
            code: "headers_too_large")
    }

    /// 400: the bytes on the connection are not an HTTP/1.1 request.
    public static func malformedHTTP() -> GatewayError {
        badRequest("The request is not valid HTTP/1.1; the connection is closed.", code: "malformed_request")
    }

    /// A 429 with `retry-after` (whole seconds, at least 1) and, when given, the OpenAI-style
    /// `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` headers. `scope` says which limit
    /// (for example "key 'team-a', model 'gpt-4o'").
    public static func rateLimited(
        scope: String, retryAfter: Duration, requests: RateLimitState? = nil, tokens: RateLimitState? = nil
    ) -> GatewayError {
        let seconds = max(
            1,
            Int((Double(retryAfter.components.seconds) + Double(retryAfter.components.attoseconds) / 1e18).rounded(.up))
        )
        var headers: [(name: String, value: String)] = [("retry-after", String(seconds))]
        for (kind, state) in [("requests", requests), ("tokens", tokens)] {
            guard let state else { continue }
            headers.append(("x-ratelimit-limit-\(kind)", String(state.limit)))
            headers.append(("x-ratelimit-remaining-\(kind)", String(state.remaining)))
            headers.append(("x-ratelimit-reset-\(kind)", Self.goDuration(state.reset)))
        }
        return GatewayError(
            status: 429, type: "rate_limit_exceeded",
            message: "Rate limit reached for \(scope). Please try again in \(seconds)s.", code: "rate_limit_exceeded",
            headers: headers)
    }

    /// The provider answered with an error the client cannot fix by changing its request.
    public static func upstreamFailed(status: Int, detail: String) -> GatewayError {
        GatewayError(
            status: 502, type: "upstream_error", message: "The provider returned HTTP \(status): \(detail)",
            code: "upstream_error")
    }

    /// Every key (and every fallback) was tried; `summary` lists what each attempt got.
    public static func allKeysFailed(model: String, summary: String) -> GatewayError {
        GatewayError(
            status: 502, type: "upstream_error",
            message: "Every provider key for the model '\(model)' failed: \(summary)", code: "all_keys_failed")
    }

    public static func upstreamTimeout(after timeout: Duration? = nil) -> GatewayError {
        let after = timeout.map { " within \(Self.goDuration($0))" } ?? ""
        return GatewayError(
            status: 504, type: "upstream_error", message: "The provider did not answer\(after).",
            code: "upstream_timeout")
    }

    /// Every key for the model is open-circuited or unusable right now.
    public static func noHealthyKey(model: String) -> GatewayError {
        GatewayError(
            status: 503, type: "api_error",
            message: "No healthy provider key is available for the model '\(model)' right now; try again shortly.",
            code: "no_healthy_key")
    }

    /// The node's event writer is behind: the request was not started, and a retry (here
    /// after `Retry-After`, or on another node) is safe.
    public static func overloaded(retryAfterSeconds: Int = 1) -> GatewayError {
        GatewayError(
            status: 503, type: "api_error",
            message: "This gateway node is overloaded (its event log is behind) and did not start the request; "
                + "retry in \(retryAfterSeconds)s or send it to another node.",
            code: "overloaded", headers: [("retry-after", String(retryAfterSeconds))])
    }

    /// The node's event log is full (`retention.max_log_bytes` or its disk): it starts nothing
    /// it could not record, and a retry on another node is safe.
    public static func logFull(retryAfterSeconds: Int = 5) -> GatewayError {
        GatewayError(
            status: 503, type: "api_error",
            message:
                "This gateway node cannot write its event log (the log reached its size limit or its disk is full) "
                + "and did not start the request; send it to another node, or retry in \(retryAfterSeconds)s.",
            code: "log_full", headers: [("retry-after", String(retryAfterSeconds))])
    }

    /// A request the gateway understands but cannot carry to the chosen provider (for example
    /// tools for a model of the other API).
    public static func unsupported(_ message: String, param: String? = nil) -> GatewayError {
        badRequest(message, param: param, code: "unsupported")
    }

    /// A broken invariant inside the gateway; the message says which.
    public static func internalError(_ message: String) -> GatewayError {
        GatewayError(status: 500, type: "api_error", message: message, code: "internal_error")
    }

    /// Go's `time.Duration` text (`1s`, `6m0s`, `250ms`), the format of OpenAI's
    /// `x-ratelimit-reset-*` headers.
    static func goDuration(_ d: Duration) -> String {
        let (s, atto) = d.components
        return goDuration(milliseconds: UInt64(max(0, s * 1000 + atto / 1_000_000_000_000_000)))
    }

    static func goDuration(milliseconds millis: UInt64) -> String {
        if millis < 1000 { return "\(millis)ms" }
        let hours = millis / 3_600_000
        let minutes = millis / 60_000 % 60
        let secondsMillis = millis % 60_000
        var seconds = String(secondsMillis / 1000)
        if secondsMillis % 1000 != 0 {
            var fraction = String(secondsMillis % 1000)
            fraction = String(repeating: "0", count: 3 - fraction.count) + fraction
            while fraction.hasSuffix("0") { fraction.removeLast() }
            seconds += "." + fraction
        }
        if hours > 0 { return "\(hours)h\(minutes)m\(seconds)s" }
        if minutes > 0 { return "\(minutes)m\(seconds)s" }
        return "\(seconds)s"
    }
}

/// One limit's state, for the `x-ratelimit-*` headers of a 429.
public struct RateLimitState: Sendable, Hashable {
    public var limit: Int
    public var remaining: Int
    /// Until the window frees capacity.
    public var reset: Duration

    public init(limit: Int, remaining: Int, reset: Duration) {
        self.limit = limit
        self.remaining = remaining
        self.reset = reset
    }
}
