import Synchronization

/// In-process partitions for tests and chaos drills: the node names listed here are cut off.
///
/// The sync service (and the gossip layer) consult it on every frame, tick and dial: traffic
/// to or from a blocked node is dropped, open connections to it are closed within one tick,
/// and it is not dialed again until unblocked. Blocking is one-sided, like a firewall rule on
/// this node; block on both nodes for a symmetric partition.
public final class FaultInjector: Sendable {
    private let state = Mutex<Set<String>>([])

    public init() {}

    /// Cuts off these nodes (added to those already blocked).
    public func block(_ nodes: Set<String>) {
        state.withLock { $0.formUnion(nodes) }
    }

    public func unblock(_ nodes: Set<String>) {
        state.withLock { $0.subtract(nodes) }
    }

    public func unblockAll() {
        state.withLock { $0.removeAll() }
    }

    public func isBlocked(_ node: String) -> Bool {
        state.withLock { $0.contains(node) }
    }

    /// The nodes blocked now.
    public var blocked: Set<String> {
        state.withLock { $0 }
    }
}
