import EventLog

/// The binary encoding of SWIM messages: one message per datagram.
///
/// ```
/// +---------+------+------------+--------------+------------------------------+-----------+
/// | version | type | seq varint | from string  | target, targetAddress strings| updates   |
/// |  (1)    | (1)  |            |              | (pingRequest only)           |           |
/// +---------+------+------------+--------------+------------------------------+-----------+
/// updates = count varint, then per update: name, gossipAddress, apiAddress strings,
///           status byte, incarnation varint, observer string, health bytes
/// ```
///
/// Strings and byte strings are varint-length-prefixed (`ByteWriter`). A newer version may append
/// fields after the updates; decoders ignore trailing bytes. Decoding never traps: anything
/// malformed, including counts larger than the remaining bytes could hold, is a `DecodingError`.
public enum SWIMCodec {
    public static let version: UInt8 = 1

    enum MessageType: UInt8 {
        case ping = 1
        case ack = 2
        case pingRequest = 3
        case nack = 4
    }

    /// The fewest bytes one update can take: four empty strings, an empty health payload, the
    /// status byte and a one-byte incarnation.
    static let minimumUpdateSize = 7

    public static func encode(_ message: SWIM.Message) -> [UInt8] {
        var w = ByteWriter(capacity: 256)
        w.write(version)
        switch message {
        case .ping(let seq, let from, let updates):
            writeHeader(.ping, seq, from, into: &w)
            write(updates, into: &w)
        case .ack(let seq, let from, let updates):
            writeHeader(.ack, seq, from, into: &w)
            write(updates, into: &w)
        case .pingRequest(let seq, let from, let target, let targetAddress, let updates):
            writeHeader(.pingRequest, seq, from, into: &w)
            w.write(target)
            w.write(targetAddress)
            write(updates, into: &w)
        case .nack(let seq, let from, let updates):
            writeHeader(.nack, seq, from, into: &w)
            write(updates, into: &w)
        }
        return w.bytes
    }

    /// Bytes `update` adds to an encoded message (the update count aside).
    public static func encodedSize(of update: SWIM.Update) -> Int {
        var w = ByteWriter(capacity: 64)
        write(update, into: &w)
        return w.bytes.count
    }

    /// Bytes of `value` as a LEB128 varint, so a caller can account for a growing update count.
    public static func varintSize(_ value: UInt64) -> Int {
        value == 0 ? 1 : (64 - value.leadingZeroBitCount + 6) / 7
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodingError) -> SWIM.Message {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(DecodingError) in try decode(buffer) }
        }
        return try result.get()
    }

    public static func decode(_ buffer: UnsafeRawBufferPointer) throws(DecodingError) -> SWIM.Message {
        var r = ByteReader(buffer)
        let version = try r.readByte("version")
        guard version == Self.version else {
            throw DecodingError(
                offset: 0, reason: "unsupported SWIM message version \(version) (this build reads \(Self.version))")
        }
        let typeOffset = r.offset
        let typeByte = try r.readByte("message type")
        guard let type = MessageType(rawValue: typeByte) else {
            throw DecodingError(offset: typeOffset, reason: "unknown SWIM message type \(typeByte)")
        }
        let seq = try r.readVarint("seq")
        let from = try r.readString("from")
        switch type {
        case .ping:
            return .ping(seq: seq, from: from, updates: try readUpdates(&r))
        case .ack:
            return .ack(seq: seq, from: from, updates: try readUpdates(&r))
        case .pingRequest:
            let target = try r.readString("target")
            let targetAddress = try r.readString("target address")
            return .pingRequest(
                seq: seq, from: from, target: target, targetAddress: targetAddress, updates: try readUpdates(&r))
        case .nack:
            return .nack(seq: seq, from: from, updates: try readUpdates(&r))
        }
    }

    private static func writeHeader(_ type: MessageType, _ seq: UInt64, _ from: String, into w: inout ByteWriter) {
        w.write(type.rawValue)
        w.write(varint: seq)
        w.write(from)
    }

    private static func write(_ updates: [SWIM.Update], into w: inout ByteWriter) {
        w.write(varint: UInt64(updates.count))
        for update in updates { write(update, into: &w) }
    }

    private static func write(_ u: SWIM.Update, into w: inout ByteWriter) {
        w.write(u.name)
        w.write(u.gossipAddress)
        w.write(u.apiAddress)
        w.write(u.status.rawValue)
        w.write(varint: u.incarnation)
        w.write(u.observer)
        w.write(bytes: u.health)
    }

    private static func readUpdates(_ r: inout ByteReader) throws(DecodingError) -> [SWIM.Update] {
        let start = r.offset
        let count = try r.readVarint("update count")
        guard count <= UInt64(r.remaining / minimumUpdateSize) else {
            throw DecodingError(
                offset: start, reason: "truncated: \(count) updates cannot fit in \(r.remaining) bytes")
        }
        var updates: [SWIM.Update] = []
        updates.reserveCapacity(Int(count))
        for _ in 0..<count {
            let name = try r.readString("member name")
            let gossipAddress = try r.readString("gossip address")
            let apiAddress = try r.readString("API address")
            let statusOffset = r.offset
            let statusByte = try r.readByte("status")
            guard let status = SWIM.Status(rawValue: statusByte) else {
                throw DecodingError(offset: statusOffset, reason: "unknown member status \(statusByte)")
            }
            let incarnation = try r.readVarint("incarnation")
            let observer = try r.readString("observer")
            let healthOffset = r.offset
            let health = try r.readBytes("health")
            guard health.count <= SWIM.maxHealthBytes else {
                throw DecodingError(
                    offset: healthOffset,
                    reason: "health payload of \(health.count) bytes exceeds \(SWIM.maxHealthBytes)")
            }
            updates.append(
                SWIM.Update(
                    name: name, gossipAddress: gossipAddress, apiAddress: apiAddress, status: status,
                    incarnation: incarnation, observer: observer, health: health))
        }
        return updates
    }
}
