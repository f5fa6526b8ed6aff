import Synchronization

/// Counters of sealed-transport traffic, for metrics. One instance is shared by a node's
/// `Sealer`s and `Opener`s, on any thread.
public final class TransportStats: Sendable {
    public struct Snapshot: Hashable, Sendable {
        public var sealed: UInt64 = 0
        public var opened: UInt64 = 0
        /// Part of `opened` that needed a key other than this node's primary. While it grows,
        /// some node still seals with an older key, which must stay configured (`Keyring`
        /// rotation step 3).
        public var openedWithSecondaryKey: UInt64 = 0
        /// Every code is present, so metrics export zero instead of a missing series.
        public var rejected: [EnvelopeRejection.Code: UInt64] = Dictionary(
            uniqueKeysWithValues: EnvelopeRejection.Code.allCases.map { ($0, 0) })

        public init() {}

        public var rejectedTotal: UInt64 { rejected.values.reduce(0, +) }

        public subscript(rejected code: EnvelopeRejection.Code) -> UInt64 { rejected[code] ?? 0 }
    }

    private let state = Mutex(Snapshot())

    public init() {}

    public func snapshot() -> Snapshot { state.withLock { $0 } }

    func recordSealed() { state.withLock { $0.sealed += 1 } }

    func recordOpened(withPrimaryKey: Bool) {
        state.withLock {
            $0.opened += 1
            if !withPrimaryKey { $0.openedWithSecondaryKey += 1 }
        }
    }

    func recordRejected(_ code: EnvelopeRejection.Code) { state.withLock { $0.rejected[code, default: 0] += 1 } }
}
