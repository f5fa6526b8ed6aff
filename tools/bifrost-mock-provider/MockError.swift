import NIOCore

/// Which provider's conventions a path follows: its key header and its error shape.
enum Flavor: Sendable {
    /// `Authorization: Bearer <key>`; errors `{"error":{"message","type","param","code"}}`.
    case openAI
    /// `x-api-key: <key>`; errors `{"type":"error","error":{"type","message"}}`.
    case anthropic
}

/// An error answer, rendered in the shape of the provider whose path was called, with the
/// `type` each provider uses for the status (OpenAI's error codes guide, Anthropic's
/// "Errors" page: `invalid_request_error`, `authentication_error`, `rate_limit_error`, …).
struct MockError: Error, Sendable {
    var status: Int
    var message: String
    /// OpenAI's `error.param`: the request field at fault.
    var param: String?
    /// OpenAI's `error.code`; `nil` picks the usual one for the status.
    var code: String?

    init(status: Int, message: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.param = param
        self.code = code
    }

    var openAIType: String {
        switch status {
        case 403: "permission_error"
        case 429: "rate_limit_exceeded"
        case 500...: "server_error"
        default: "invalid_request_error"
        }
    }

    var openAICode: String? {
        if let code { return code }
        switch status {
        case 429: return "rate_limit_exceeded"
        default: return nil
        }
    }

    var anthropicType: String {
        switch status {
        case 401: "authentication_error"
        case 403: "permission_error"
        case 404: "not_found_error"
        case 413: "request_too_large"
        case 429: "rate_limit_error"
        case 503, 529: "overloaded_error"
        case 504: "timeout_error"
        case 500...: "api_error"
        default: "invalid_request_error"
        }
    }

    func body(_ flavor: Flavor) -> ByteBuffer {
        var out = ByteBufferAllocator().buffer(capacity: 160 + message.utf8.count)
        switch flavor {
        case .openAI:
            out.writeStaticString(#"{"error":{"message":"#)
            out.writeJSONString(message)
            out.writeStaticString(#","type":"#)
            out.writeJSONString(openAIType)
            out.writeStaticString(#","param":"#)
            out.writeJSONStringOrNull(param)
            out.writeStaticString(#","code":"#)
            out.writeJSONStringOrNull(openAICode)
            out.writeStaticString("}}")
        case .anthropic:
            out.writeStaticString(#"{"type":"error","error":{"type":"#)
            out.writeJSONString(anthropicType)
            out.writeStaticString(#","message":"#)
            out.writeJSONString(message)
            out.writeStaticString("}}")
        }
        return out
    }
}

extension MockError {
    static func missingKey(_ flavor: Flavor) -> MockError {
        switch flavor {
        case .openAI:
            MockError(
                status: 401,
                message: "You didn't provide an API key. You need to provide your API key in an Authorization header "
                    + "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        case .anthropic:
            MockError(status: 401, message: "x-api-key header is required (or Authorization: Bearer <key>)")
        }
    }

    /// A key starting with `bad-`, which the mock treats as revoked; names only its last 4 characters.
    static func invalidKey(_ flavor: Flavor, suffix: String) -> MockError {
        switch flavor {
        case .openAI:
            MockError(
                status: 401,
                message: "Incorrect API key provided: ...\(suffix) (the mock rejects keys starting with bad-).",
                code: "invalid_api_key")
        case .anthropic:
            MockError(status: 401, message: "invalid x-api-key (the mock rejects keys starting with bad-)")
        }
    }

    static func rateLimited(_ status: RateLimitStatus) -> MockError {
        MockError(
            status: 429,
            message: "Rate limit reached for requests (mock limit: \(status.limit.map(String.init) ?? "forced") "
                + "per minute). Please try again in \(status.resetAfterSeconds)s.")
    }

    static func injected(_ flavor: Flavor) -> MockError {
        switch flavor {
        case .openAI:
            MockError(
                status: 500,
                message: "The server had an error while processing your request. Sorry about that! (mock --error-rate)")
        case .anthropic:
            MockError(status: 500, message: "Internal server error (mock --error-rate)")
        }
    }

    static func forced(_ status: Int) -> MockError {
        MockError(status: status, message: "Mock error \(status) forced by the x-mock-status header.")
    }

    static func malformedJSON(_ flavor: Flavor, detail: String) -> MockError {
        switch flavor {
        case .openAI:
            MockError(
                status: 400,
                message: "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                    + "using your HTTP library correctly. The OpenAI API expects a JSON payload.) (\(detail))")
        case .anthropic:
            MockError(status: 400, message: "There was an error parsing the body of your request: \(detail)")
        }
    }

    /// A required field is absent, in each provider's wording.
    static func missing(_ field: String, _ flavor: Flavor) -> MockError {
        switch flavor {
        case .openAI:
            MockError(
                status: 400, message: "Missing required parameter: '\(field)'.", param: field,
                code: "missing_required_parameter")
        case .anthropic:
            MockError(status: 400, message: "\(field): Field required")
        }
    }

    /// A field has the wrong type or value.
    static func invalid(_ field: String, _ detail: String, _ flavor: Flavor) -> MockError {
        switch flavor {
        case .openAI:
            MockError(status: 400, message: "Invalid '\(field)': \(detail)", param: field, code: "invalid_value")
        case .anthropic:
            MockError(status: 400, message: "\(field): \(detail)")
        }
    }
}
