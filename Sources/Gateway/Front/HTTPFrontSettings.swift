/// What the node's HTTP port tolerates from a client (`gateway.http`): every wait is bounded
/// and every buffer capped, so no client can hold a connection, a request or memory for long.
public struct HTTPFrontSettings: Sendable, Equatable {
    /// From a request's first byte until its whole head has arrived (`header_timeout`).
    public var headerTimeout: Duration = .seconds(10)
    /// From the head until the whole body has arrived (`body_timeout`).
    public var bodyTimeout: Duration = .seconds(30)
    /// A keep-alive connection waiting for its next request is closed after this (`idle_timeout`).
    public var idleTimeout: Duration = .seconds(60)
    /// Open client connections beyond which new ones are answered 503 and closed
    /// (`max_connections`).
    public var maxConnections = 4_096
    /// Largest request head, names and values of every header together (`max_header_bytes`);
    /// a larger one gets 431.
    public var maxHeaderBytes = 32 << 10

    public init() {}

    /// The shortest of the three timeouts: how far ahead a connection's wake-up is scheduled.
    var shortestTimeout: Duration { min(headerTimeout, bodyTimeout, idleTimeout) }
}
