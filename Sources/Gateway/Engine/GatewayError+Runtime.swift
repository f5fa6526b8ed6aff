import EventLog
import Foundation
import Hummingbird
import NIOHTTP1

extension Error {
    /// A `GatewayError` as itself; anything else as a 500 that names it.
    public func response(api: WireAPI) -> Response {
        if let error = self as? GatewayError { return error.response(api: api) }
        return GatewayError.internalError("unexpected error: \(self)").response(api: api)
    }

    /// The same in the HTTP front's shape.
    func frontResponse(api: WireAPI) -> FrontResponse {
        if let error = self as? GatewayError { return error.frontResponse(api: api) }
        return GatewayError.internalError("unexpected error: \(self)").frontResponse(api: api)
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
        if rejection.unit == .budget { return .budgetExceeded(scope: scope, rejection.status) }
        let state = RateLimitState(
            limit: Int(clamping: rejection.status.limit), remaining: Int(clamping: rejection.status.remaining),
            reset: .milliseconds(rejection.status.resetMillis))
        return .rateLimited(
            scope: "\(scope) (\(rejection.status.limit) \(rejection.unit.rawValue) per minute across the cluster)",
            retryAfter: .seconds(rejection.retryAfterSeconds),
            requests: rejection.unit == .requests ? state : nil, tokens: rejection.unit == .tokens ? state : nil)
    }
}

extension GatewayError {
    /// A 429 for a spent budget, in OpenAI's quota shape (`insufficient_quota` /
    /// `budget_exceeded`), with the budget, what is left of it and when its period resets.
    static func budgetExceeded(scope: String, _ status: LimitStatus) -> GatewayError {
        func usd(_ micros: UInt64) -> String { String(format: "%.6f", Double(micros) / 1_000_000) }
        var headers: [(name: String, value: String)] = [
            ("x-budget-limit-usd", usd(status.limit)), ("x-budget-remaining-usd", usd(status.remaining)),
        ]
        var when = "The budget has no period: raise it to go on."
        if let reset = status.resetAtMillis {
            let seconds = max(1, (status.resetMillis + 999) / 1000)
            headers.append(("x-budget-reset", EventJSON.rfc3339(millis: reset)))
            headers.append(("retry-after", String(seconds)))
            when = "It resets at \(EventJSON.rfc3339(millis: reset))."
        }
        return GatewayError(
            status: 429, type: "insufficient_quota",
            message:
                "The budget of \(scope) is spent: $\(usd(status.limit)) per period, $\(usd(status.remaining)) left, counting requests in flight. \(when)",
            code: "budget_exceeded", headers: headers)
    }
}

/// The `x-ratelimit-*` headers OpenAI clients read, for admitted responses.
enum RateLimitHeaders {
    /// The three header names of one unit, made once.
    struct Names {
        let limit: String
        let remaining: String
        let reset: String

        init(_ unit: RateLimitRejection.Unit) {
            limit = "x-ratelimit-limit-\(unit.rawValue)"
            remaining = "x-ratelimit-remaining-\(unit.rawValue)"
            reset = "x-ratelimit-reset-\(unit.rawValue)"
        }
    }

    static let requests = Names(.requests)
    static let tokens = Names(.tokens)

    static func add(_ status: LimitStatus, unit: RateLimitRejection.Unit, to headers: inout HTTPHeaders) {
        let names = unit == .requests ? requests : tokens
        headers.add(name: names.limit, value: String(status.limit))
        headers.add(name: names.remaining, value: String(status.remaining))
        headers.add(name: names.reset, value: GatewayError.goDuration(milliseconds: status.resetMillis))
    }
}
