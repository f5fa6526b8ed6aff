import Foundation

/// Removes secrets from configuration documents before they are printed, logged or served.
///
/// A secret is any string under a field whose name says so (`value`, `token`, `secret`,
/// `password`, `api_key`, `signing_key`, `key`, `keys` of `encryption`, `alert_webhook`, whose
/// path often carries a token), unless it is an
/// `env.NAME` reference, which names a secret without revealing it.
public enum Redaction {
    public static let placeholder = "[redacted]"
    static let secretFields: Set<String> = [
        "value", "token", "secret", "password", "api_key", "apikey", "signing_key", "private_key", "key", "keys",
        "authorization", "alert_webhook",
    ]

    /// Redacts a JSON document; returns a placeholder object when it is not valid JSON (the raw
    /// text could hold anything).
    public static func redactDocument(_ bytes: [UInt8]) -> JSONValue {
        guard let value = try? JSONValue.parse(bytes) else {
            return .object(["unparsable_document_bytes": .uint(UInt64(bytes.count))])
        }
        return redact(value, secret: false)
    }

    static func redact(_ value: JSONValue, secret: Bool) -> JSONValue {
        switch value {
        case .string(let s):
            return secret && !s.hasPrefix("env.") ? .string(placeholder) : value
        case .array(let items):
            return .array(items.map { redact($0, secret: secret) })
        case .object(let fields):
            var out: [String: JSONValue] = [:]
            for (k, v) in fields {
                // `keys` of `encryption` lists secrets; `keys` of a provider lists objects whose
                // own secret fields (`value`) are redacted one by one.
                let listsObjects =
                    v.arrayValueForRedaction?.allSatisfy { if case .object = $0 { true } else { false } } ?? false
                let fieldIsSecret = secretFields.contains(k.lowercased()) && !(k == "keys" && listsObjects)
                out[k] = redact(v, secret: secret || fieldIsSecret)
            }
            return .object(out)
        default:
            return value
        }
    }
}

extension JSONValue {
    fileprivate var arrayValueForRedaction: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }
}

extension JSONValue: Decodable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let i = try? c.decode(Int64.self) {
            self = .int(i)
        } else if let u = try? c.decode(UInt64.self) {
            self = .uint(u)
        } else if let d = try? c.decode(Double.self) {
            self = .double(d)
        } else if let s = try? c.decode(String.self) {
            self = .string(s)
        } else if let a = try? c.decode([JSONValue].self) {
            self = .array(a)
        } else {
            self = .object(try c.decode([String: JSONValue].self))
        }
    }

    /// Parses JSON text.
    public static func parse(_ bytes: [UInt8]) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
    }
}
