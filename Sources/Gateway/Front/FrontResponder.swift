import NIOCore

/// Answers the requests of the HTTP port. The front has read each request whole (within its
/// limits) before it starts one.
public protocol FrontResponder: Sendable {
    /// Starts answering `request`, on the connection's event loop; `respond` is called once,
    /// on that loop, with the response (possibly before `start` returns). The cancellation
    /// returned, if any, stops the work when the client leaves before the response.
    func start(
        _ request: FrontRequest, channel: any Channel, respond: @escaping (FrontResponse) -> Void
    ) -> FrontCancellation?
}

/// Stops a request's work when its client leaves; called on the connection's event loop.
public struct FrontCancellation {
    let cancel: () -> Void

    init(_ cancel: @escaping () -> Void) { self.cancel = cancel }
}
