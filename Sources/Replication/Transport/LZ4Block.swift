/// LZ4 block format (https://github.com/lz4/lz4/blob/dev/doc/lz4_Block_format.md), used to
/// honour `gossip.compression`: membership datagrams repeat node names and addresses, which
/// LZ77 removes cheaply. Pure Swift; the decoder is bounds-checked against hostile input.
public enum LZ4Block {
    public struct Error: Swift.Error, Equatable, Sendable, CustomStringConvertible {
        public var offset: Int
        public var reason: String
        public var description: String { "LZ4 block invalid at byte \(offset): \(reason)" }
    }

    static let minMatch = 4
    /// The last match must start at least 12 bytes before the end; the last 5 bytes are literals.
    static let matchSafeEnd = 12
    static let lastLiterals = 5

    public static func compress(_ input: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(input.count + input.count / 255 + 16)
        var table = [Int](repeating: -1, count: 1 << 12)
        var anchor = 0
        var i = 0
        let limit = input.count - matchSafeEnd
        func hash(_ at: Int) -> Int {
            let v =
                UInt32(input[at]) | UInt32(input[at + 1]) << 8 | UInt32(input[at + 2]) << 16 | UInt32(input[at + 3])
                << 24
            return Int((v &* 2_654_435_761) >> 20)
        }
        while i < limit {
            let h = hash(i)
            let candidate = table[h]
            table[h] = i
            if candidate >= 0, i - candidate <= 65_535, input[candidate] == input[i],
                input[candidate + 1] == input[i + 1],
                input[candidate + 2] == input[i + 2], input[candidate + 3] == input[i + 3]
            {
                var length = minMatch
                while i + length < input.count - lastLiterals && input[candidate + length] == input[i + length] {
                    length += 1
                }
                emit(literals: input[anchor..<i], matchOffset: i - candidate, matchLength: length, into: &out)
                i += length
                anchor = i
            } else {
                i += 1
            }
        }
        emit(literals: input[anchor...], matchOffset: 0, matchLength: 0, into: &out)
        return out
    }

    private static func emit(literals: ArraySlice<UInt8>, matchOffset: Int, matchLength: Int, into out: inout [UInt8]) {
        let lit = literals.count
        let ml = matchLength > 0 ? matchLength - minMatch : 0
        out.append(UInt8(min(lit, 15)) << 4 | UInt8(min(ml, 15)))
        if lit >= 15 { appendLength(lit - 15, &out) }
        out.append(contentsOf: literals)
        guard matchLength > 0 else { return }
        out.append(UInt8(matchOffset & 0xff))
        out.append(UInt8(matchOffset >> 8))
        if ml >= 15 { appendLength(ml - 15, &out) }
    }

    private static func appendLength(_ n: Int, _ out: inout [UInt8]) {
        var n = n
        while n >= 255 {
            out.append(255)
            n -= 255
        }
        out.append(UInt8(n))
    }

    /// Decompresses a block whose decompressed size must not exceed `maxOutput`.
    public static func decompress(_ input: [UInt8], maxOutput: Int) throws(Error) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(min(maxOutput, input.count * 4))
        var i = 0
        func length(_ base: Int) throws(Error) -> Int {
            var n = base
            guard base == 15 else { return n }
            while true {
                guard i < input.count else { throw Error(offset: i, reason: "length runs past the end") }
                let b = Int(input[i])
                i += 1
                n += b
                guard n <= maxOutput else {
                    throw Error(offset: i, reason: "length exceeds the \(maxOutput)-byte limit")
                }
                if b != 255 { return n }
            }
        }
        while i < input.count {
            let token = input[i]
            i += 1
            let lit = try length(Int(token >> 4))
            guard lit <= input.count - i else { throw Error(offset: i, reason: "\(lit) literals run past the end") }
            guard out.count + lit <= maxOutput else {
                throw Error(offset: i, reason: "output exceeds \(maxOutput) bytes")
            }
            out.append(contentsOf: input[i..<i + lit])
            i += lit
            if i == input.count { return out }
            guard i + 2 <= input.count else { throw Error(offset: i, reason: "truncated match offset") }
            let offset = Int(input[i]) | Int(input[i + 1]) << 8
            i += 2
            guard offset > 0, offset <= out.count else {
                throw Error(offset: i - 2, reason: "match offset \(offset) outside the \(out.count) bytes decoded")
            }
            let matchLength = try length(Int(token & 0x0f)) + minMatch
            guard out.count + matchLength <= maxOutput else {
                throw Error(offset: i, reason: "output exceeds \(maxOutput) bytes")
            }
            let start = out.count - offset
            for k in 0..<matchLength { out.append(out[start + k]) }
        }
        if input.isEmpty { throw Error(offset: 0, reason: "empty block") }
        return out
    }
}
