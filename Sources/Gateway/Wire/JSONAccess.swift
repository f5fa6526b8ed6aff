import EventLog
import Foundation

extension JSONValue {
    public subscript(key: String) -> JSONValue? {
        if case .object(let fields) = self { return fields[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }

    public var objectValue: [String: JSONValue]? {
        if case .object(let o) = self { return o }
        return nil
    }

    public var intValue: Int? {
        switch self {
        case .int(let i): Int(exactly: i)
        case .uint(let u): Int(exactly: u)
        case .double(let d): d.isFinite && d.rounded() == d ? Int(exactly: d) : nil
        default: nil
        }
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// Sets a field of an object (no-op on other values).
    public mutating func set(_ key: String, _ value: JSONValue?) {
        guard case .object(var fields) = self else { return }
        fields[key] = value
        self = .object(fields)
    }

    public var bytes: [UInt8] { renderedBytes() }

    /// Parses a request body; the error says where the JSON broke.
    public static func parseBody(_ bytes: [UInt8]) throws(GatewayError) -> JSONValue {
        do {
            return try JSONValue(parsing: bytes)
        } catch {
            throw .malformedJSON(error.description)
        }
    }
}
