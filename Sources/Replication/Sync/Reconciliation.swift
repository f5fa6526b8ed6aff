import EventLog

/// What range reconciliation needs to know about a log: fingerprints of digest buckets and the
/// ids inside a bucket. `EventLogReader` is one; `InMemoryEventSet` is the simulator's twin.
public protocol DigestSource {
    func fingerprint(_ key: DigestKey) throws -> Fingerprint
    /// Nonzero fingerprints of `level` within the bucket range.
    func fingerprints(level: UInt8, buckets: ClosedRange<UInt64>) throws -> [DigestKey: Fingerprint]
    /// Ids of the events with HLC in `range`, in order.
    func ids(in range: Range<HLCTimestamp>) throws -> [EventID]
}

extension EventLogReader: DigestSource {
    public func fingerprint(_ key: DigestKey) throws -> Fingerprint { try digest(key) }

    public func fingerprints(level: UInt8, buckets: ClosedRange<UInt64>) throws -> [DigestKey: Fingerprint] {
        Dictionary(uniqueKeysWithValues: try digests(level: level, buckets: buckets))
    }

    public func ids(in range: Range<HLCTimestamp>) throws -> [EventID] {
        guard !range.isEmpty else { return [] }
        var out: [EventID] = []
        try scanRaw(EventFilter(since: range.lowerBound, until: HLCTimestamp(rawValue: range.upperBound.rawValue - 1)))
        {
            id, _, _ in
            out.append(id)
            return true
        }
        return out
    }
}

/// Range-based set reconciliation over the digest tree (DESIGN §3, "Anti-entropy", tier 2).
///
/// Both peers run the same pure step: for every bucket the other side describes, compare
/// fingerprints; descend into differing buckets (16 children a level) until a bucket is a leaf
/// or holds few events, then exchange id lists, from which each side learns exactly which events
/// it lacks and which the other lacks. Equal subtrees cost one fingerprint; a log that differs in
/// k places costs O(k · depth) fingerprints, never a scan (Meyer, "Range-Based Set
/// Reconciliation", 2023; Negentropy).
///
/// Two ranges are never compared: the unsettled head (events newer than `settledBefore` may
/// still be in flight) and the compacted tail (below `compactedBefore`, where nodes may hold
/// aggregates instead of the original events). Buckets straddling a boundary are never compared
/// themselves: the opening message describes the inside buckets beneath them, and a straddling
/// leaf is skipped.
public enum Reconciliation {
    /// Buckets holding at most this many events (both sides together) are settled by id lists.
    public static let idListThreshold: UInt64 = 32

    public struct Window: Sendable, Hashable {
        public var compactedBefore: HLCTimestamp
        public var settledBefore: HLCTimestamp

        public init(compactedBefore: HLCTimestamp = .zero, settledBefore: HLCTimestamp) {
            self.compactedBefore = compactedBefore
            self.settledBefore = settledBefore
        }

        /// The window for a node at `nowMillis`: skip the last `maxClockOffset` plus a margin.
        public static func at(
            nowMillis: UInt64, maxClockOffsetMillis: UInt64 = 500, marginMillis: UInt64 = 1_000,
            compactedBefore: HLCTimestamp = .zero
        ) -> Window {
            let settle =
                nowMillis > maxClockOffsetMillis + marginMillis ? nowMillis - maxClockOffsetMillis - marginMillis : 0
            return Window(compactedBefore: compactedBefore, settledBefore: HLCTimestamp(wallMillis: settle, logical: 0))
        }

        /// Whether reconciliation compares the leaf bucket holding `hlc` (the events it can repair).
        public func covers(_ hlc: HLCTimestamp) -> Bool {
            placement(of: DigestKey(level: 0, hlc: hlc)) == .inside
        }

        enum Placement { case inside, outside, straddling }

        func placement(of key: DigestKey) -> Placement {
            let range = key.hlcRange
            if range.upperBound <= compactedBefore || range.lowerBound >= settledBefore { return .outside }
            if range.lowerBound >= compactedBefore && range.upperBound <= settledBefore { return .inside }
            return .straddling
        }
    }

    /// One statement about a bucket.
    public enum Item: Hashable, Sendable {
        /// "My fingerprint of this bucket is …"
        case fingerprint(DigestKey, Fingerprint)
        /// "This bucket straddles the window: look inside."
        case open(DigestKey)
        /// "These are my ids in this bucket."
        case ids(DigestKey, [EventID])
    }

    /// What one step concluded.
    public struct Step: Sendable, Equatable {
        /// Items to send back; empty when this side has nothing more to say.
        public var reply: [Item] = []
        /// Events the peer has and we lack: fetch them.
        public var missingHere: [EventID] = []
        /// Events we have and the peer lacks: send them.
        public var missingThere: [EventID] = []

        public init() {}
    }

    /// The opening message: the top-level buckets covering the window.
    public static func start(_ source: some DigestSource, window: Window) throws -> [Item] {
        guard window.settledBefore > window.compactedBefore else { return [] }
        let top = DigestKey.topLevel
        let first = DigestKey(level: top, hlc: window.compactedBefore).bucket
        let last = DigestKey(level: top, hlc: HLCTimestamp(rawValue: window.settledBefore.rawValue - 1)).bucket
        let mine = try source.fingerprints(level: top, buckets: first...last)
        // `.open(root)` says: what follows is every nonempty top-level bucket I have in the
        // window. Empty ones are left out (the window may span decades of empty buckets); the
        // peer answers for the buckets it has and this side lacks.
        var items: [Item] = [.open(.root)]
        for key in mine.keys.sorted() where window.placement(of: key) == .inside {
            items.append(.fingerprint(key, mine[key]!))
        }
        for bucket in [first, last] where window.placement(of: DigestKey(level: top, bucket: bucket)) == .straddling {
            items += try expanded(DigestKey(level: top, bucket: bucket), source, window: window)
            if first == last { break }
        }
        return items
    }

    /// The fingerprints of every inside bucket under a straddling one, down to the leaves.
    /// Both sides know where the window's edges are, so the opening message can carry these at
    /// once and equal logs agree in a single message.
    private static func expanded(_ key: DigestKey, _ source: some DigestSource, window: Window) throws -> [Item] {
        var items: [Item] = []
        for child in try children(of: key, source, window: window) {
            if case .open(let inner) = child {
                items += try expanded(inner, source, window: window)
            } else {
                items.append(child)
            }
        }
        return items
    }

    /// Answers what the peer said about some buckets.
    public static func respond(to items: [Item], _ source: some DigestSource, window: Window) throws -> Step {
        var step = Step()
        if items.contains(.open(.root)) {
            // Top-level buckets the peer did not list are empty on its side.
            var listed = Set<DigestKey>()
            for case .fingerprint(let key, _) in items where key.level == DigestKey.topLevel { listed.insert(key) }
            let top = DigestKey.topLevel
            if window.settledBefore > window.compactedBefore {
                let first = DigestKey(level: top, hlc: window.compactedBefore).bucket
                let last = DigestKey(level: top, hlc: HLCTimestamp(rawValue: window.settledBefore.rawValue - 1)).bucket
                let mine = try source.fingerprints(level: top, buckets: first...last)
                for key in mine.keys.sorted() where !listed.contains(key) && window.placement(of: key) == .inside {
                    step.reply.append(.fingerprint(key, mine[key]!))
                }
            }
        }
        for item in items {
            switch item {
            case .fingerprint(let key, let theirs):
                let placement = window.placement(of: key)
                if placement != .inside {
                    // A bucket the peer could compare whole but that straddles this side's window
                    // (which may be wider: compacted further): descend to its inside buckets.
                    if placement != .outside && key.level > 0 {
                        step.reply += try children(of: key, source, window: window)
                    }
                    continue
                }
                let mine = try source.fingerprint(key)
                if mine == theirs { continue }
                if key.level == 0 || mine.count + theirs.count <= idListThreshold {
                    step.reply.append(.ids(key, try source.ids(in: key.hlcRange)))
                } else {
                    step.reply += try children(of: key, source, window: window)
                }
            case .open(let key):
                guard key.level > 0, key != .root, window.placement(of: key) != .outside else { continue }
                step.reply += try children(of: key, source, window: window)
            case .ids(let key, let theirs):
                guard window.placement(of: key) == .inside else { continue }
                let mine = try source.ids(in: key.hlcRange)
                let theirSet = Set(theirs)
                let mySet = Set(mine)
                step.missingThere += mine.filter { !theirSet.contains($0) }
                step.missingHere += theirs.filter { !mySet.contains($0) }
            }
        }
        return step
    }

    private static func children(of key: DigestKey, _ source: some DigestSource, window: Window) throws -> [Item] {
        let level = key.level - 1
        let first = key.bucket << DigestKey.fanOutShift
        let last = first + (1 << DigestKey.fanOutShift) - 1
        let mine = try source.fingerprints(level: level, buckets: first...last)
        var items: [Item] = []
        for bucket in first...last {
            let child = DigestKey(level: level, bucket: bucket)
            switch window.placement(of: child) {
            case .inside: items.append(.fingerprint(child, mine[child] ?? .zero))
            case .straddling where level > 0: items.append(.open(child))
            default: break
            }
        }
        return items
    }
}
