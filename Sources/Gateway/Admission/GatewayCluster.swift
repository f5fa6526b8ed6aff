import EventLog

/// What the gateway needs to know about the cluster; the node implements it from membership
/// and sync, and a single node from nothing.
public protocol GatewayCluster: Sendable {
    /// Live members, this node included (at least 1).
    var liveNodeCount: Int { get }
    /// The greatest HLC of this node's own events that every live peer has acknowledged, or nil
    /// when some live peer has not acknowledged any (not connected yet, or partitioned).
    /// A node without peers returns `.max`: its events need no confirmation.
    func ownEventsAcknowledgedThrough() -> HLCTimestamp?
    /// Yields whenever `ownEventsAcknowledgedThrough()` may have grown (a peer acknowledged
    /// more, or the members changed); changes may coalesce. Finishes at once when nothing ever
    /// needs confirming.
    func acknowledgementChanges() -> AsyncStream<Void>
    /// Members known and not `left`, this node included (at least 1): the cluster's size for
    /// partition-aware limits.
    var knownNodeCount: Int { get }
    /// Live peers a request can be migrated to, best first: name and API address (`host:port`).
    func migrationTargets() -> [(name: String, apiAddress: String)]
    /// A peer did not answer an inter-node request in time (the request-timeout detector).
    func reportUnreachable(_ name: String)
    /// Live members by name (for rendezvous ownership), known and failed counts, convergence.
    func membership(localName: String) -> ClusterMembership
}

/// A node alone: every committed event is confirmed.
public struct SingleNodeCluster: GatewayCluster {
    public init() {}
    public var liveNodeCount: Int { 1 }
    public var knownNodeCount: Int { 1 }
    public func ownEventsAcknowledgedThrough() -> HLCTimestamp? { .max }
    public func acknowledgementChanges() -> AsyncStream<Void> { AsyncStream { $0.finish() } }
    public func migrationTargets() -> [(name: String, apiAddress: String)] { [] }
    public func reportUnreachable(_ name: String) {}
    public func membership(localName: String) -> ClusterMembership {
        ClusterMembership(live: [localName], known: 1, failed: 0, convergenceMillis: nil)
    }
}
