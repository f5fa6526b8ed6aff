import Hummingbird

extension Error {
    /// A `GatewayError` as itself; anything else as a 500 that names it.
    public func response(api: WireAPI) -> Response {
        if let error = self as? GatewayError { return error.response(api: api) }
        return GatewayError.internalError("unexpected error: \(self)").response(api: api)
    }
}

extension GatewayError {
    /// A 429 for a limiter rejection, with `retry-after` and the `x-ratelimit-*` headers.
    static func rateLimited(_ rejection: RateLimitRejection) -> GatewayError {
        let scope =
            switch rejection.rule.key.prefix(3) {
            case "vk:": "virtual key '\(rejection.rule.key.dropFirst(3))'"
            case "pk:": "provider key '\(rejection.rule.key.dropFirst(3))'"
            case "pm:": "model '\(rejection.rule.key.dropFirst(3))'"
            default: "'\(rejection.rule.key)'"
            }
        let state = RateLimitState(
            limit: Int(clamping: rejection.status.limit), remaining: Int(clamping: rejection.status.remaining),
            reset: .milliseconds(rejection.status.resetMillis))
        return .rateLimited(
            scope: "\(scope) (\(rejection.status.limit) \(rejection.unit.rawValue) per minute across the cluster)",
            retryAfter: .seconds(rejection.retryAfterSeconds),
            requests: rejection.unit == .requests ? state : nil, tokens: rejection.unit == .tokens ? state : nil)
    }
}

/// The `x-ratelimit-*` headers OpenAI clients read, for admitted responses.
enum RateLimitHeaders {
    static func headers(_ status: LimitStatus, unit: RateLimitRejection.Unit) -> [(String, String)] {
        let suffix = unit.rawValue
        return [
            ("x-ratelimit-limit-\(suffix)", String(status.limit)),
            ("x-ratelimit-remaining-\(suffix)", String(status.remaining)),
            ("x-ratelimit-reset-\(suffix)", GatewayError.goDuration(.milliseconds(status.resetMillis))),
        ]
    }
}
