/// Anti-replay state of one receiver: which `(boot, counter)` pairs each sender has already had
/// accepted.
///
/// A sender numbers its messages with a counter that starts afresh in every boot (process start,
/// Unix ms), so `(boot, counter)` never repeats for an honest sender. Per sender this keeps the
/// newest boot seen and, within it, the sliding window of RFC 4303 §3.4.3 (IPsec ESP
/// anti-replay): a bitmap of the `size` counters ending at the highest accepted one.
///
/// - a counter above the highest is accepted and slides the window up;
/// - a counter inside the window is accepted once, then is a `duplicate`;
/// - a counter below the window is refused (`belowWindow`): it cannot be told apart from a
///   replay, so a message delayed behind `size` newer ones is lost (gossip retries, streams
///   resend);
/// - an older boot is refused (`staleBoot`): that run of the sender is over; a newer boot starts
///   a new window.
///
/// Only record messages whose authentication succeeded (RFC 4303 §3.4.3: "the receive window is
/// updated only if the integrity verification succeeds"), or forgeries could slide the window
/// past genuine traffic. `Opener` does.
///
/// The bitmap is a ring indexed by `counter % size` (as in RFC 6479), so sliding up clears only
/// the bits that leave the window instead of shifting the whole bitmap.
///
/// The state lives as long as this value: after the receiver restarts, a message recorded
/// earlier is accepted once more. Layers above are idempotent (event ids, SWIM incarnations).
public struct ReplayWindow: Sendable, Equatable {
    /// The window of RFC 4303 §3.4.3 recommends at least 32 and allows more; 1024 tolerates the
    /// reordering of a busy gossip round without keeping much per sender (128 bytes).
    public static let defaultSize = 1024

    public enum Verdict: Hashable, Sendable {
        case accepted
        /// This counter of this boot was accepted before.
        case duplicate
        /// The counter is `size` or more below the highest accepted one.
        case belowWindow(highest: UInt64)
        /// A newer boot of the sender was seen already.
        case staleBoot(current: UInt64)
    }

    struct SenderState: Sendable, Equatable {
        var boot: UInt64
        var highest: UInt64
        /// Bit `c % size` is set iff counter `c` of the window `(highest - size, highest]` was
        /// accepted.
        var bits: [UInt64]
    }

    /// Counters a window spans; a multiple of 64.
    public let size: Int
    private var senders: [UInt64: SenderState] = [:]

    public init(size: Int = ReplayWindow.defaultSize) {
        precondition(size > 0 && size % 64 == 0, "replay window size \(size) must be a positive multiple of 64")
        self.size = size
    }

    /// Senders with state; one entry per node that ever sent an authentic message.
    public var senderCount: Int { senders.count }

    /// The newest boot seen from `sender` and the highest counter accepted in it.
    public func newest(of sender: UInt64) -> (boot: UInt64, counter: UInt64)? {
        senders[sender].map { ($0.boot, $0.highest) }
    }

    /// A sender's newest boot and the highest counter accepted in it: what a restarted receiver
    /// needs to keep refusing what it accepted before (`restore`).
    public struct Mark: Sendable, Equatable, Codable {
        public var sender: UInt64
        public var boot: UInt64
        public var counter: UInt64

        public init(sender: UInt64, boot: UInt64, counter: UInt64) {
            self.sender = sender
            self.boot = boot
            self.counter = counter
        }
    }

    /// One mark per sender, in sender order.
    public var marks: [Mark] {
        senders.sorted { $0.key < $1.key }.map { Mark(sender: $0.key, boot: $0.value.boot, counter: $0.value.highest) }
    }

    /// Treats every counter up to each mark's, in its boot and older boots, as accepted already:
    /// a message captured before a restart stays refused after it. Newer state wins.
    public mutating func restore(_ marks: [Mark]) {
        for mark in marks {
            if let current = senders[mark.sender],
                current.boot > mark.boot || (current.boot == mark.boot && current.highest >= mark.counter)
            {
                continue
            }
            senders[mark.sender] = SenderState(
                boot: mark.boot, highest: mark.counter, bits: [UInt64](repeating: .max, count: size / 64))
        }
    }

    /// Accepts `(boot, counter)` from `sender` if it was not seen before and is not too old, and
    /// records it.
    public mutating func admit(sender: UInt64, boot: UInt64, counter: UInt64) -> Verdict {
        if let current = senders[sender]?.boot {
            if boot < current { return .staleBoot(current: current) }
            if boot == current { return senders[sender]!.admit(counter: counter, size: UInt64(size)) }
        }
        senders[sender] = SenderState(boot: boot, highest: counter, bits: Self.firstBits(counter: counter, size: size))
        return .accepted
    }

    private static func firstBits(counter: UInt64, size: Int) -> [UInt64] {
        var bits = [UInt64](repeating: 0, count: size / 64)
        let slot = Int(counter % UInt64(size))
        bits[slot / 64] |= 1 << UInt64(slot % 64)
        return bits
    }
}

extension ReplayWindow.SenderState {
    fileprivate mutating func admit(counter: UInt64, size: UInt64) -> ReplayWindow.Verdict {
        if counter > highest {
            if counter - highest >= size {
                for i in bits.indices { bits[i] = 0 }
            } else {
                var c = highest + 1
                while c < counter {
                    clear(c, size: size)
                    c += 1
                }
            }
            highest = counter
            set(counter, size: size)
            return .accepted
        }
        if highest - counter >= size { return .belowWindow(highest: highest) }
        if isSet(counter, size: size) { return .duplicate }
        set(counter, size: size)
        return .accepted
    }

    private func slot(_ counter: UInt64, size: UInt64) -> (word: Int, mask: UInt64) {
        let slot = counter % size
        return (Int(slot / 64), 1 << (slot % 64))
    }

    private func isSet(_ counter: UInt64, size: UInt64) -> Bool {
        let (word, mask) = slot(counter, size: size)
        return bits[word] & mask != 0
    }

    private mutating func set(_ counter: UInt64, size: UInt64) {
        let (word, mask) = slot(counter, size: size)
        bits[word] |= mask
    }

    private mutating func clear(_ counter: UInt64, size: UInt64) {
        let (word, mask) = slot(counter, size: size)
        bits[word] &= ~mask
    }
}
