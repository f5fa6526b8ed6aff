import EventLog

/// Admissions committed but not yet known to be at every live peer, oldest first: pairs of the
/// batch's greatest event and the greatest limiter sequence number it carried.
struct PendingConfirmations {
    private var queue: [(event: HLCTimestamp, seq: UInt64)] = []
    private var head = 0

    mutating func append(event: HLCTimestamp, seq: UInt64) { queue.append((event, seq)) }

    /// Removes every batch at or below `acknowledged`; returns the greatest sequence number
    /// confirmed, if any.
    mutating func confirm(through acknowledged: HLCTimestamp) -> UInt64? {
        var confirmed: UInt64?
        while head < queue.count, queue[head].event <= acknowledged {
            confirmed = max(confirmed ?? 0, queue[head].seq)
            head += 1
        }
        if head > 1024 && head * 2 > queue.count {
            queue.removeFirst(head)
            head = 0
        }
        return confirmed
    }

    var isEmpty: Bool { head == queue.count }
}
