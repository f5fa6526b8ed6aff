/// Amounts (admissions, micro-USD) this node counted that peers have not acknowledged yet, by
/// the limiter sequence number they were counted under, oldest first.
struct UnconfirmedLedger: Sendable {
    private var entries: [(seq: UInt64, amount: UInt64)] = []
    private(set) var total: UInt64 = 0

    var isEmpty: Bool { entries.isEmpty }

    mutating func append(seq: UInt64, _ amount: UInt64) {
        entries.append((seq, amount))
        total &+= amount
    }

    /// Drops what is confirmed through `seq`; whether anything was.
    @discardableResult
    mutating func confirm(through seq: UInt64) -> Bool {
        let dropped = entries.prefix { $0.seq <= seq }
        guard !dropped.isEmpty else { return false }
        for entry in dropped { total -= entry.amount }
        entries.removeFirst(dropped.count)
        return true
    }
}

/// The ledgers of a set of counters, and which of them hold anything, so a confirmation walks
/// only those.
struct UnconfirmedLedgers<ID: Hashable & Sendable>: Sendable {
    private var ledgers: [ID: UnconfirmedLedger] = [:]

    func total(_ id: ID) -> UInt64 { ledgers[id]?.total ?? 0 }

    mutating func append(_ id: ID, seq: UInt64, _ amount: UInt64) {
        ledgers[id, default: UnconfirmedLedger()].append(seq: seq, amount)
    }

    mutating func confirm(through seq: UInt64) {
        for id in Array(ledgers.keys) {
            ledgers[id]!.confirm(through: seq)
            if ledgers[id]!.isEmpty { ledgers[id] = nil }
        }
    }

    /// Keeps only the ledgers of counters still held.
    mutating func keep(where isHeld: (ID) -> Bool) {
        ledgers = ledgers.filter { isHeld($0.key) }
    }
}
