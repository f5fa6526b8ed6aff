import NIOCore

/// Answers the requests of the HTTP port. The front has read each request whole (within its
/// limits) before it calls `respond`.
public protocol FrontResponder: Sendable {
    func respond(to request: FrontRequest, channel: any Channel) async -> FrontResponse
}
