import NIOCore
import NIOHTTP1

/// An upstream response whose body is still streaming.
public struct UpstreamResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: UpstreamBody
}

/// Why an upstream call produced no response.
public enum UpstreamFailure: Error, Sendable, CustomStringConvertible {
    case timeout
    case connectFailed(String)
    case cancelled
    case other(String)

    var isTimeout: Bool {
        if case .timeout = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .timeout: "the provider did not answer in time"
        case .connectFailed(let detail): "cannot connect to the provider (\(detail))"
        case .cancelled: "the request was cancelled"
        case .other(let detail): "the provider call failed (\(detail))"
        }
    }
}
