import EventLog
import Testing

@testable import Gateway

@Suite struct GatewayErrorTests {
    func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    @Test func openAIBody_hasTheSDKShape() {
        let error = GatewayError.unknownModel("gpt-99")
        #expect(
            text(error.openAIBody())
                == #"{"error":{"code":"model_not_found","message":"The model 'gpt-99' does not exist or is not served by this gateway.","param":"model","type":"not_found_error"}}"#
        )
    }

    @Test func openAIBody_rendersAbsentParamAndCodeAsNull() {
        let error = GatewayError(status: 500, type: "api_error", message: "boom")
        #expect(
            text(error.openAIBody()) == #"{"error":{"code":null,"message":"boom","param":null,"type":"api_error"}}"#)
    }

    @Test func anthropicBody_hasTheSDKShape() {
        #expect(
            text(GatewayError.missingField("max_tokens").anthropicBody())
                == #"{"error":{"message":"Missing required parameter: 'max_tokens'.","type":"invalid_request_error"},"type":"error"}"#
        )
    }

    @Test func anthropicType_followsTheStatus() {
        let expected: [Int: String] = [
            400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
            413: "request_too_large", 422: "invalid_request_error", 429: "rate_limit_error", 500: "api_error",
            502: "api_error", 503: "overloaded_error", 504: "api_error", 529: "overloaded_error",
        ]
        for (status, type) in expected {
            #expect(GatewayError(status: status, type: "x", message: "m").anthropicType == type, "\(status)")
        }
    }

    @Test func namedConstructors_haveTheDocumentedStatusTypeAndCode() {
        let cases: [(GatewayError, Int, String, String?, String?)] = [
            (.malformedJSON("expected ':' at byte 5"), 400, "invalid_request_error", "invalid_json", nil),
            (.missingField("messages"), 400, "invalid_request_error", "missing_required_parameter", "messages"),
            (
                .invalidField("stream", "expected true or false"), 400, "invalid_request_error", "invalid_value",
                "stream"
            ),
            (.unauthorized(), 401, "authentication_error", "invalid_api_key", nil),
            (.modelNotAllowed("gpt-4o"), 403, "permission_error", "model_not_allowed", "model"),
            (.unknownModel("gpt-99"), 404, "not_found_error", "model_not_found", "model"),
            (.bodyTooLarge(limit: 65536), 413, "invalid_request_error", "request_too_large", nil),
            (
                .rateLimited(scope: "key 'a'", retryAfter: .seconds(2)), 429, "rate_limit_exceeded",
                "rate_limit_exceeded", nil
            ),
            (.upstreamFailed(status: 500, detail: "oops"), 502, "upstream_error", "upstream_error", nil),
            (
                .allKeysFailed(model: "gpt-4o", summary: "k1: 500; k2: timeout"), 502, "upstream_error",
                "all_keys_failed", nil
            ),
            (.upstreamTimeout(), 504, "upstream_error", "upstream_timeout", nil),
            (.noHealthyKey(model: "gpt-4o"), 503, "api_error", "no_healthy_key", nil),
            (
                .unsupported("tools cannot be translated", param: "tools"), 400, "invalid_request_error", "unsupported",
                "tools"
            ),
            (.internalError("invariant"), 500, "api_error", "internal_error", nil),
        ]
        for (error, status, type, code, param) in cases {
            #expect(error.status == status, "\(error)")
            #expect(error.type == type, "\(error)")
            #expect(error.code == code, "\(error)")
            #expect(error.param == param, "\(error)")
        }
    }

    @Test func messages_nameWhatThePersonMustChange() {
        #expect(GatewayError.missingField("messages").message.contains("'messages'"))
        #expect(GatewayError.invalidField("messages[2].role", "expected a string").message.contains("messages[2].role"))
        #expect(GatewayError.modelNotAllowed("claude-3-5-haiku-latest").message.contains("claude-3-5-haiku-latest"))
        #expect(GatewayError.bodyTooLarge(limit: 65536).message.contains("65536 bytes"))
        #expect(GatewayError.allKeysFailed(model: "m", summary: "k1: 500").message.contains("k1: 500"))
        #expect(GatewayError.upstreamTimeout(after: .seconds(60)).message == "The provider did not answer within 1m0s.")
    }

    @Test func rateLimited_carriesRetryAfterAndOpenAIHeaders() {
        let error = GatewayError.rateLimited(
            scope: "virtual key 'team-small'", retryAfter: .milliseconds(1500),
            requests: RateLimitState(limit: 3, remaining: 0, reset: .milliseconds(1500)),
            tokens: RateLimitState(limit: 1000, remaining: 10, reset: .seconds(360)))
        #expect(
            error.headers.map(\.name) == [
                "retry-after", "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
                "x-ratelimit-limit-tokens", "x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens",
            ])
        #expect(error.headers.map(\.value) == ["2", "3", "0", "1.5s", "1000", "10", "6m0s"])
        #expect(error.message == "Rate limit reached for virtual key 'team-small'. Please try again in 2s.")
    }

    @Test func rateLimited_retryAfterIsAtLeastOneSecond() {
        #expect(GatewayError.rateLimited(scope: "x", retryAfter: .zero).headers.first?.value == "1")
        #expect(GatewayError.rateLimited(scope: "x", retryAfter: .milliseconds(1)).headers.first?.value == "1")
        #expect(GatewayError.rateLimited(scope: "x", retryAfter: .seconds(7)).headers.first?.value == "7")
    }

    @Test func goDuration_matchesOpenAIResetHeaderFormat() {
        #expect(GatewayError.goDuration(.milliseconds(20)) == "20ms")
        #expect(GatewayError.goDuration(.seconds(1)) == "1s")
        #expect(GatewayError.goDuration(.milliseconds(1250)) == "1.25s")
        #expect(GatewayError.goDuration(.seconds(360)) == "6m0s")
        #expect(GatewayError.goDuration(.seconds(3723)) == "1h2m3s")
        #expect(GatewayError.goDuration(.seconds(-1)) == "0ms")
    }

    @Test func response_usesTheClientsAPIAndHeaders() {
        let error = GatewayError.rateLimited(scope: "x", retryAfter: .seconds(3))
        let openAI = error.response(api: .openAI)
        #expect(openAI.status.code == 429)
        #expect(openAI.headers[.contentType] == "application/json")
        #expect(openAI.headers[.retryAfter] == "3")
        #expect(error.response(api: .anthropic).status.code == 429)
    }
}
