/// The closed, versioned set of event kinds. Raw values are part of the on-disk and wire format:
/// never reuse or renumber one. A kind this build does not know (from a newer peer) decodes as
/// `Event.Payload.unknown`, is stored and forwarded, and is not folded into views.
public enum EventKind: UInt8, CaseIterable, Sendable, Codable, CustomStringConvertible {
    case rateLimitIncrement = 1
    case usageRecorded = 2
    case weightChanged = 3
    case configUpdated = 4
    case membershipChanged = 5
    case alertFired = 6
    /// Per-window aggregate of `usage.recorded` events, written only by retention compaction.
    case usageAggregated = 7

    /// The dotted name used by the tools and docs (`ratelimit.increment`, …).
    public var name: String {
        switch self {
        case .rateLimitIncrement: "ratelimit.increment"
        case .usageRecorded: "usage.recorded"
        case .weightChanged: "weight.changed"
        case .configUpdated: "config.updated"
        case .membershipChanged: "membership.changed"
        case .alertFired: "alert.fired"
        case .usageAggregated: "usage.aggregated"
        }
    }

    public init?(name: String) {
        guard let kind = Self.allCases.first(where: { $0.name == name }) else { return nil }
        self = kind
    }

    /// Kinds acknowledged only after a synced commit (DESIGN §2, durability classes).
    public var defaultDurability: Durability {
        switch self {
        case .configUpdated, .weightChanged, .membershipChanged, .alertFired: .synced
        case .rateLimitIncrement, .usageRecorded, .usageAggregated: .batched
        }
    }

    /// Counter and usage events may be compacted into aggregates after the retention horizon;
    /// everything else is kept forever.
    public var isCompactable: Bool {
        switch self {
        case .rateLimitIncrement, .usageRecorded, .usageAggregated: true
        default: false
        }
    }

    public var description: String { name }
}

/// How an append is acknowledged.
public enum Durability: Sendable, Equatable {
    /// Acknowledged after a commit whose data and meta pages were flushed to disk.
    case synced
    /// Acknowledged after the group commit; survives a process crash, and after an OS crash the
    /// newest transactions may be missing (peers re-supply them through anti-entropy).
    case batched
}
