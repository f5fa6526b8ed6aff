import EventLog
import Foundation

/// A configuration problem: the JSON path (or environment variable) of the offending field and
/// what would be accepted there.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String

    public init(path: String, _ message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}

/// Walks a JSON object while remembering where it is, so every error names its field, and
/// remembering which keys were read, so unknown fields are reported instead of ignored.
struct ConfigReader {
    let path: String
    let fields: [String: JSONValue]
    private var read: Set<String> = []

    init(_ value: JSONValue, path: String) throws(ConfigError) {
        guard case .object(let fields) = value else {
            throw ConfigError(path: path.isEmpty ? "$" : path, "expected an object, got \(Self.describe(value))")
        }
        self.path = path
        self.fields = fields
    }

    func child(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    mutating func raw(_ key: String) -> JSONValue? {
        read.insert(key)
        if case .null = fields[key] { return nil }
        return fields[key]
    }

    mutating func object(_ key: String) throws(ConfigError) -> ConfigReader? {
        guard let v = raw(key) else { return nil }
        return try ConfigReader(v, path: child(key))
    }

    mutating func string(_ key: String) throws(ConfigError) -> String? {
        guard let v = raw(key) else { return nil }
        guard case .string(let s) = v else {
            throw ConfigError(path: child(key), "expected a string, got \(Self.describe(v))")
        }
        return s
    }

    mutating func bool(_ key: String) throws(ConfigError) -> Bool? {
        guard let v = raw(key) else { return nil }
        guard case .bool(let b) = v else {
            throw ConfigError(path: child(key), "expected true or false, got \(Self.describe(v))")
        }
        return b
    }

    mutating func int(_ key: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let v = raw(key) else { return nil }
        let n: Int?
        switch v {
        case .int(let i): n = Int(exactly: i)
        case .uint(let u): n = Int(exactly: u)
        case .double(let d): n = Int(exactly: d)
        default: n = nil
        }
        guard let n, range.contains(n) else {
            throw ConfigError(
                path: child(key),
                "expected a whole number from \(range.lowerBound) to \(range.upperBound), got \(Self.describe(v))")
        }
        return n
    }

    mutating func double(_ key: String, in range: ClosedRange<Double>) throws(ConfigError) -> Double? {
        guard let v = raw(key) else { return nil }
        let d: Double?
        switch v {
        case .int(let i): d = Double(i)
        case .uint(let u): d = Double(u)
        case .double(let x): d = x
        default: d = nil
        }
        guard let d, d.isFinite, range.contains(d) else {
            throw ConfigError(
                path: child(key),
                "expected a number from \(range.lowerBound) to \(range.upperBound), got \(Self.describe(v))")
        }
        return d
    }

    mutating func duration(_ key: String) throws(ConfigError) -> Duration? {
        guard let text = try string(key) else { return nil }
        guard let d = ConfigDuration.parse(text) else {
            throw ConfigError(
                path: child(key), "expected a duration like \"500ms\", \"1s\", \"1m30s\", got \"\(text)\"")
        }
        return d
    }

    /// A size in bytes: a whole number, or a string with a unit (`"512MiB"`, `"2GB"`).
    mutating func byteSize(_ key: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard let v = raw(key) else { return nil }
        let n: Int?
        switch v {
        case .int(let i): n = Int(exactly: i)
        case .uint(let u): n = Int(exactly: u)
        case .double(let d): n = Int(exactly: d)
        case .string(let text): n = ConfigByteSize.parse(text)
        default: n = nil
        }
        guard let n, range.contains(n) else {
            throw ConfigError(
                path: child(key),
                "expected a size from \(ConfigByteSize.format(range.lowerBound)) to \(ConfigByteSize.format(range.upperBound)), as bytes or with a unit like \"512MiB\" or \"2GB\", got \(Self.describe(v))"
            )
        }
        return n
    }

    mutating func strings(_ key: String) throws(ConfigError) -> [String]? {
        guard let v = raw(key) else { return nil }
        guard case .array(let items) = v else {
            throw ConfigError(path: child(key), "expected a list of strings, got \(Self.describe(v))")
        }
        var out: [String] = []
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item else {
                throw ConfigError(path: "\(child(key))[\(i)]", "expected a string, got \(Self.describe(item))")
            }
            out.append(s)
        }
        return out
    }

    mutating func array(_ key: String) throws(ConfigError) -> [(path: String, value: JSONValue)]? {
        guard let v = raw(key) else { return nil }
        guard case .array(let items) = v else {
            throw ConfigError(path: child(key), "expected a list, got \(Self.describe(v))")
        }
        return items.enumerated().map { ("\(child(key))[\($0.offset)]", $0.element) }
    }

    mutating func enumValue<E: RawRepresentable & CaseIterable>(_ key: String, _: E.Type) throws(ConfigError) -> E?
    where E.RawValue == String {
        guard let s = try string(key) else { return nil }
        guard let e = E(rawValue: s) else {
            throw ConfigError(
                path: child(key),
                "\"\(s)\" is not one of \(E.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))")
        }
        return e
    }

    /// Fails on the first key nobody read: a typo must not silently fall back to a default.
    func finish() throws(ConfigError) {
        if let unknown = fields.keys.filter({ !read.contains($0) }).sorted().first {
            throw ConfigError(path: child(unknown), "unknown field; check the spelling against docs/CONFIGURATION.md")
        }
    }

    static func describe(_ v: JSONValue) -> String {
        switch v {
        case .null: "null"
        case .bool(let b): "\(b)"
        case .int(let i): "\(i)"
        case .uint(let u): "\(u)"
        case .double(let d): "\(d)"
        case .string(let s): "\"\(s.prefix(40))\""
        case .array: "a list"
        case .object: "an object"
        }
    }
}

/// Go-style durations as the seed writes them: `500ms`, `1s`, `1m30s`, `2h`, `1.5s`; and days
/// (`7d`), which retention needs and Go lacks.
public enum ConfigDuration {
    public static func parse(_ text: String) -> Duration? {
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        guard !rest.isEmpty else { return nil }
        var total: Double = 0
        let units: [(String, Double)] = [
            ("ms", 1e-3), ("us", 1e-6), ("µs", 1e-6), ("ns", 1e-9), ("d", 86_400), ("h", 3600), ("m", 60), ("s", 1),
        ]
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard !number.isEmpty, let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            guard let (unit, scale) = units.first(where: { rest.hasPrefix($0.0) }) else { return nil }
            rest = rest.dropFirst(unit.count)
            total += value * scale
        }
        guard total.isFinite, total < 1e9 else { return nil }
        return .nanoseconds(Int64((total * 1e9).rounded()))
    }

    public static func format(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(ms)ms"
    }
}

/// Sizes with binary (`KiB`, `MiB`, `GiB`, `TiB`) or decimal (`KB`, `MB`, `GB`, `TB`) units, or
/// plain bytes (`B` or none).
public enum ConfigByteSize {
    static let units: [(String, Double)] = [
        ("KiB", 1024), ("MiB", 1_048_576), ("GiB", 1_073_741_824), ("TiB", 1_099_511_627_776),
        ("KB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12), ("B", 1),
    ]

    public static func parse(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let number = trimmed.prefix { $0.isNumber || $0 == "." }
        guard !number.isEmpty, let value = Double(number) else { return nil }
        let unit = trimmed.dropFirst(number.count).trimmingCharacters(in: .whitespaces)
        let scale: Double
        if unit.isEmpty {
            scale = 1
        } else if let match = units.first(where: { $0.0.lowercased() == unit.lowercased() }) {
            scale = match.1
        } else {
            return nil
        }
        let bytes = (value * scale).rounded()
        guard bytes.isFinite, bytes < 9e18 else { return nil }
        return Int(bytes)
    }

    public static func format(_ bytes: Int) -> String {
        for (unit, scale) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
        where bytes >= scale && bytes % scale == 0 {
            return "\(bytes / scale)\(unit)"
        }
        return "\(bytes) bytes"
    }
}
