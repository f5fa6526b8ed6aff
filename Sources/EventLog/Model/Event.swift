/// One immutable entry of the cluster's log.
public struct Event: Hashable, Sendable {
    public var id: EventID
    public var payload: Payload

    public enum Payload: Hashable, Sendable {
        case rateLimitIncrement(RateLimitIncrement)
        case usageRecorded(UsageRecorded)
        case weightChanged(WeightChanged)
        case configUpdated(ConfigUpdated)
        case membershipChanged(MembershipChanged)
        case alertFired(AlertFired)
        case usageAggregated(UsageAggregated)
        /// A kind from a newer schema: kept verbatim, stored and forwarded, never folded.
        case unknown(kind: UInt8, bytes: [UInt8])

        public var kind: EventKind? {
            switch self {
            case .rateLimitIncrement: .rateLimitIncrement
            case .usageRecorded: .usageRecorded
            case .weightChanged: .weightChanged
            case .configUpdated: .configUpdated
            case .membershipChanged: .membershipChanged
            case .alertFired: .alertFired
            case .usageAggregated: .usageAggregated
            case .unknown: nil
            }
        }

        public var kindByte: UInt8 {
            if case .unknown(let kind, _) = self { return kind }
            return kind!.rawValue
        }

        /// `ratelimit.increment`, … or `unknown.<n>`.
        public var kindName: String {
            if case .unknown(let kind, _) = self { return "unknown.\(kind)" }
            return kind!.name
        }

        public var defaultDurability: Durability { kind?.defaultDurability ?? .synced }
    }

    public init(id: EventID, payload: Payload) {
        self.id = id
        self.payload = payload
    }
}
