import Crypto

/// Settings that change how events fold (they must be the same on every node).
public struct ViewSettings: Sendable, Hashable {
    /// Operator keys (raw 32-byte Ed25519 public keys) whose `config.updated` events are folded.
    /// `nil` folds unsigned and correctly signed documents alike; a present but invalid signature
    /// is always rejected.
    public var trustedConfigKeys: Set<[UInt8]>?
    /// Width of the key-performance windows.
    public var performanceWindowMillis: UInt64
    /// Counter and performance windows that ended this long before the newest event folded
    /// (rounded down to a minute) are dropped, and events for them are not counted: a rule of
    /// the events alone, so any order of the same events folds to the same views. Nil keeps
    /// every window.
    public var retainMillis: UInt64?

    public init(
        trustedConfigKeys: Set<[UInt8]>? = nil, performanceWindowMillis: UInt64 = 60_000, retainMillis: UInt64? = nil
    ) {
        self.trustedConfigKeys = trustedConfigKeys
        self.performanceWindowMillis = performanceWindowMillis
        self.retainMillis = retainMillis
    }
}

/// A limit counter's identity: the limit key and the fixed window it counts in.
public struct CounterKey: Hashable, Comparable, Sendable {
    public var limitKey: String
    public var windowMillis: UInt32
    public var windowStartMillis: UInt64

    public init(limitKey: String, windowMillis: UInt32, windowStartMillis: UInt64) {
        self.limitKey = limitKey
        self.windowMillis = windowMillis
        self.windowStartMillis = windowStartMillis
    }

    public static func < (a: Self, b: Self) -> Bool {
        (a.limitKey, a.windowMillis, a.windowStartMillis) < (b.limitKey, b.windowMillis, b.windowStartMillis)
    }
}

/// Per-origin counts for one counter. Admission reads `own + Σ peers`.
///
/// A short array rather than a dictionary: a counter has one entry per cluster member that
/// counted in it, and a linear scan over a handful of ids beats hashing on the fold's hot path.
public struct OriginCounts: Hashable, Sendable {
    /// Sorted by origin, so equal counts compare and hash equal.
    public private(set) var entries: [(origin: NodeID, count: UInt64)] = []

    public init() {}

    public init(_ counts: [NodeID: UInt64]) {
        entries = counts.sorted { $0.key < $1.key }.map { (origin: $0.key, count: $0.value) }
    }

    public var byOrigin: [NodeID: UInt64] {
        Dictionary(uniqueKeysWithValues: entries.map { ($0.origin, $0.count) })
    }

    public var total: UInt64 { entries.reduce(0) { $0 + $1.count } }

    public func count(for origin: NodeID) -> UInt64 {
        entries.first { $0.origin == origin }?.count ?? 0
    }

    @inline(__always)
    mutating func add(_ origin: NodeID, _ n: UInt64) {
        for i in entries.indices where entries[i].origin == origin {
            entries[i].count += n
            return
        }
        let at = entries.firstIndex { $0.origin > origin } ?? entries.endIndex
        entries.insert((origin: origin, count: n), at: at)
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.entries.count == b.entries.count
            && zip(a.entries, b.entries).allSatisfy { $0.origin == $1.origin && $0.count == $1.count }
    }

    public func hash(into hasher: inout Hasher) {
        for e in entries {
            hasher.combine(e.origin)
            hasher.combine(e.count)
        }
    }
}

public struct PerformanceKey: Hashable, Comparable, Sendable {
    public var keyID: String
    public var windowStartMillis: UInt64

    public init(keyID: String, windowStartMillis: UInt64) {
        self.keyID = keyID
        self.windowStartMillis = windowStartMillis
    }

    public static func < (a: Self, b: Self) -> Bool {
        (a.keyID, a.windowStartMillis) < (b.keyID, b.windowStartMillis)
    }
}

/// The value of a last-writer-wins register and the event that wrote it.
public struct LWW<Value: Hashable & Sendable>: Hashable, Sendable {
    public var value: Value
    public var event: EventID

    public init(value: Value, event: EventID) {
        self.value = value
        self.event = event
    }

    /// Keeps the write with the greater event id: commutative, associative and idempotent.
    mutating func merge(_ value: Value, at event: EventID) {
        if event > self.event {
            self.value = value
            self.event = event
        }
    }
}

public struct AlertKey: Hashable, Comparable, Sendable {
    public var rule: String
    public var scope: String

    public init(rule: String, scope: String) {
        self.rule = rule
        self.scope = scope
    }

    public static func < (a: Self, b: Self) -> Bool { (a.rule, a.scope) < (b.rule, b.scope) }
}

/// Every materialized view, folded from events (DESIGN §2 "Views").
///
/// `apply` is a deterministic fold whose result does not depend on the order of events: counters
/// are sums, registers are last-writer-wins by event id. Duplicates must be filtered before
/// (the store's idempotent insert does it), since sums are not idempotent.
public struct ViewState: Hashable, Sendable {
    public var settings: ViewSettings
    /// Admitted requests per limit key and window.
    public var limitCounters: [CounterKey: OriginCounts] = [:]
    /// Tokens (in + out) per limit key and window.
    public var tokenCounters: [CounterKey: OriginCounts] = [:]
    /// Provider-key weights set by operators or the weight controller.
    public var weights: [String: LWW<WeightChanged>] = [:]
    /// The configuration in force (only documents that passed signature checks).
    public var config: LWW<ConfigUpdated>?
    /// Usage per provider key and performance window.
    public var keyPerformance: [PerformanceKey: UsageSummary] = [:]
    /// What priced requests cost, in micro-USD per origin: per account (`vk:<name>` for the
    /// virtual key, `pk:<key id>` for the provider key) and UTC day (`windowMillis` one day),
    /// and all time (`windowMillis` and `windowStartMillis` 0). Days are kept for
    /// `spendDaysKept` days before the newest event; all-time sums are kept always.
    public var spend: [CounterKey: OriginCounts] = [:]
    public var alerts: [AlertKey: LWW<AlertFired>] = [:]
    /// The latest observed state of every member (audit).
    public var members: [String: LWW<MembershipChanged>] = [:]
    /// Events folded, by kind name (including `unknown.<n>` ones that were skipped).
    public var eventsByKind: [String: UInt64] = [:]
    /// `config.updated` events refused for a missing, untrusted or invalid signature.
    public var rejectedConfigs: UInt64 = 0
    /// The greatest event id folded so far.
    public var lastEvent: EventID?

    public init(settings: ViewSettings = ViewSettings()) {
        self.settings = settings
    }

    public var eventCount: UInt64 { eventsByKind.values.reduce(0, +) }

    public static let dayMillis: UInt64 = 86_400_000
    /// Days of spend kept: enough for the longest budget period (a calendar month) and the one
    /// before it.
    public static let spendDaysKept: UInt64 = 62

    /// The spend counter of `account` for the UTC day starting at `dayStartMillis`.
    public static func spendKey(_ account: String, dayStartMillis: UInt64) -> CounterKey {
        CounterKey(limitKey: account, windowMillis: UInt32(dayMillis), windowStartMillis: dayStartMillis)
    }

    /// The all-time spend counter of `account`.
    public static func spendTotalKey(_ account: String) -> CounterKey {
        CounterKey(limitKey: account, windowMillis: 0, windowStartMillis: 0)
    }

    /// Days that ended this long before the newest event are dropped, and not counted.
    private func spendKeptAfter(_ newest: EventID) -> UInt64 {
        let span = Self.spendDaysKept * Self.dayMillis
        guard newest.hlc.wallMillis > span else { return 0 }
        return (newest.hlc.wallMillis - span) / Self.dayMillis * Self.dayMillis
    }

    private mutating func addSpend(
        _ micros: UInt64, origin: NodeID, keyID: String, limitKeys: [String], windowStart: UInt64, cutoff: UInt64
    ) {
        guard micros > 0 else { return }
        let day = windowStart / Self.dayMillis * Self.dayMillis
        let keptDay = day + Self.dayMillis > cutoff
        let virtualKey = limitKeys.first { $0.hasPrefix("vk:") }
        for account in [virtualKey, "pk:" + keyID] {
            guard let account else { continue }
            spend[Self.spendTotalKey(account), default: OriginCounts()].add(origin, micros)
            if keptDay {
                spend[Self.spendKey(account, dayStartMillis: day), default: OriginCounts()].add(origin, micros)
            }
        }
    }

    /// Windows ending at or before this are not kept (see `ViewSettings.retainMillis`).
    public var retainedAfterMillis: UInt64 { lastEvent.map { retainedAfter($0) } ?? 0 }

    private func retainedAfter(_ newest: EventID) -> UInt64 {
        guard let retain = settings.retainMillis, newest.hlc.wallMillis > retain else { return 0 }
        return (newest.hlc.wallMillis - retain) / 60_000 * 60_000
    }

    /// Drops the windows that end at or before `cutoff`.
    private mutating func prune(before cutoff: UInt64) {
        limitCounters = limitCounters.filter { $0.key.windowStartMillis + UInt64($0.key.windowMillis) > cutoff }
        tokenCounters = tokenCounters.filter { $0.key.windowStartMillis + UInt64($0.key.windowMillis) > cutoff }
        let w = settings.performanceWindowMillis
        keyPerformance = keyPerformance.filter { $0.key.windowStartMillis + w > cutoff }
    }

    public mutating func apply(_ event: Event) {
        let origin = event.id.origin
        let before = retainedAfterMillis
        let cutoff = max(before, retainedAfter(event.id))
        if cutoff > before { prune(before: cutoff) }
        let spendBefore = lastEvent.map { spendKeptAfter($0) } ?? 0
        let spendCutoff = max(spendBefore, spendKeptAfter(event.id))
        if spendCutoff > spendBefore {
            spend = spend.filter { $0.key.windowMillis == 0 || $0.key.windowStartMillis + Self.dayMillis > spendCutoff }
        }
        @inline(__always) func kept(_ start: UInt64, _ millis: UInt64) -> Bool { start + millis > cutoff }
        switch event.payload {
        case .rateLimitIncrement(let p):
            guard kept(p.windowStartMillis, UInt64(p.windowMillis)) else { break }
            for key in p.keys {
                limitCounters[
                    CounterKey(limitKey: key, windowMillis: p.windowMillis, windowStartMillis: p.windowStartMillis),
                    default: OriginCounts()
                ].add(origin, UInt64(p.requests))
            }
        case .usageRecorded(let p):
            let tokens = UInt64(p.tokensIn) + UInt64(p.tokensOut)
            if kept(p.windowStartMillis, UInt64(p.windowMillis)) {
                for key in p.limitKeys {
                    tokenCounters[
                        CounterKey(limitKey: key, windowMillis: p.windowMillis, windowStartMillis: p.windowStartMillis),
                        default: OriginCounts()
                    ].add(origin, tokens)
                }
            }
            let performance = performanceKey(p.keyID, event.id.hlc)
            if kept(performance.windowStartMillis, settings.performanceWindowMillis) {
                keyPerformance[performance, default: UsageSummary()].record(p)
            }
            if let cost = p.costMicros {
                addSpend(
                    cost, origin: origin, keyID: p.keyID, limitKeys: p.limitKeys, windowStart: p.windowStartMillis,
                    cutoff: spendCutoff)
            }
        case .usageAggregated(let p):
            let tokens = p.summary.tokensIn + p.summary.tokensOut
            if kept(p.windowStartMillis, UInt64(p.windowMillis)) {
                for key in p.limitKeys {
                    tokenCounters[
                        CounterKey(limitKey: key, windowMillis: p.windowMillis, windowStartMillis: p.windowStartMillis),
                        default: OriginCounts()
                    ].add(origin, tokens)
                }
            }
            let performance = performanceKey(p.keyID, event.id.hlc)
            if kept(performance.windowStartMillis, settings.performanceWindowMillis) {
                keyPerformance[performance, default: UsageSummary()].merge(p.summary)
            }
            addSpend(
                p.summary.costMicros, origin: origin, keyID: p.keyID, limitKeys: p.limitKeys,
                windowStart: p.windowStartMillis, cutoff: spendCutoff)
        case .weightChanged(let p):
            if weights[p.keyID] == nil {
                weights[p.keyID] = LWW(value: p, event: event.id)
            } else {
                weights[p.keyID]!.merge(p, at: event.id)
            }
        case .configUpdated(let p):
            guard isTrusted(p) else {
                rejectedConfigs += 1
                return countFolded(event)
            }
            if config == nil { config = LWW(value: p, event: event.id) } else { config!.merge(p, at: event.id) }
        case .membershipChanged(let p):
            if members[p.node] == nil {
                members[p.node] = LWW(value: p, event: event.id)
            } else {
                members[p.node]!.merge(p, at: event.id)
            }
        case .alertFired(let p):
            let key = AlertKey(rule: p.rule, scope: p.scope)
            if alerts[key] == nil {
                alerts[key] = LWW(value: p, event: event.id)
            } else {
                alerts[key]!.merge(p, at: event.id)
            }
        case .unknown:
            break
        }
        countFolded(event)
    }

    private mutating func countFolded(_ event: Event) {
        eventsByKind[event.payload.kindName, default: 0] += 1
        if lastEvent.map({ event.id > $0 }) ?? true { lastEvent = event.id }
    }

    @inline(__always)
    private func performanceKey(_ keyID: String, _ hlc: HLCTimestamp) -> PerformanceKey {
        let w = settings.performanceWindowMillis
        return PerformanceKey(keyID: keyID, windowStartMillis: hlc.wallMillis / w * w)
    }

    /// Whether a config document may be folded under `settings.trustedConfigKeys`.
    public func isTrusted(_ update: ConfigUpdated) -> Bool {
        let signed = !update.signature.isEmpty || !update.signerKey.isEmpty
        if let trusted = settings.trustedConfigKeys {
            guard signed, trusted.contains(update.signerKey) else { return false }
        } else if !signed {
            return true
        }
        return ConfigSignature.verify(update)
    }

    /// Requests admitted for `limitKey` in the window starting at `windowStartMillis`, all origins.
    public func admitted(_ limitKey: String, windowMillis: UInt32, windowStartMillis: UInt64) -> UInt64 {
        limitCounters[CounterKey(limitKey: limitKey, windowMillis: windowMillis, windowStartMillis: windowStartMillis)]?
            .total ?? 0
    }
}

/// Ed25519 signatures over config documents (DESIGN §3, "Security").
public enum ConfigSignature {
    public static func verify(_ update: ConfigUpdated) -> Bool {
        guard update.signature.count == 64,
            let key = try? Curve25519.Signing.PublicKey(rawRepresentation: update.signerKey)
        else { return false }
        return key.isValidSignature(update.signature, for: update.document)
    }

    /// Signs `document` with a raw 32-byte Ed25519 private key.
    public static func sign(
        document: [UInt8], author: String, privateKey: Curve25519.Signing.PrivateKey
    ) throws
        -> ConfigUpdated
    {
        let signature = try privateKey.signature(for: document)
        return ConfigUpdated(
            document: document, author: author, signerKey: Array(privateKey.publicKey.rawRepresentation),
            signature: Array(signature))
    }
}
