import EventLog

/// A parsed JSON object together with where each of its top-level members sits in the bytes it
/// came from, so a same-API forward can change a member (the `model` of a `provider/model`
/// request, `stream_options`) or drop one (`fallbacks`) without re-rendering the body: every
/// other member goes upstream byte for byte, numbers, key order and escapes included.
///
///     original:  { "model" : "openai/gpt-4o" , "x":[1.0] , "fallbacks":["b"] }
///     edited:    {"model" : "gpt-4o","x":[1.0]}
///
/// Members keep their own bytes (key, colon and value); only the whitespace between members and
/// around the braces is normalised.
public struct JSONObjectLayout: Sendable {
    public let value: JSONValue
    let members: [JSONMemberSpan]

    enum Failure: Error {
        case malformed(JSONParseError)
        case notAnObject
    }

    /// Parses `bytes` (one parse, no extra pass); the document must be an object.
    public init(parsing bytes: [UInt8]) throws(JSONParseError) {
        do {
            try self.init(parsing: bytes, projection: .whole)
        } catch {
            switch error {
            case .malformed(let e): throw e
            case .notAnObject: throw JSONParseError(reason: "expected a JSON object", offset: 0)
            }
        }
    }

    /// Parses `bytes`, building only what `projection` asks for; `value` holds that, the spans
    /// every top-level member.
    init(parsing bytes: [UInt8], projection: JSONProjection) throws(Failure) {
        let parsed: (value: JSONValue, members: [JSONMemberSpan])
        do {
            parsed = try JSONParser.parse(bytes, projection: projection, spans: true)
        } catch {
            throw .malformed(error)
        }
        guard case .object = parsed.value else { throw .notAnObject }
        value = parsed.value
        members = parsed.members
    }

    /// `original` with the members in `setting` replaced (or appended when absent) and the
    /// members in `removing` dropped; `original` itself when that changes nothing. Keys in
    /// `setting` are distinct; a key in both lists is removed.
    ///
    /// - Precondition: `original` is the buffer this layout was parsed from.
    public func edited(
        _ original: [UInt8], setting: [(key: String, value: JSONValue)] = [], removing: Set<String> = []
    ) -> [UInt8] {
        guard case .object(let fields) = value else { return original }
        let changes =
            members.contains { removing.contains($0.key) }
            || setting.contains { fields[$0.key] != $0.value || removing.contains($0.key) }
        guard changes else { return original }
        var replacements: [String: JSONValue] = [:]
        for (key, new) in setting where !removing.contains(key) { replacements[key] = new }
        var out: [UInt8] = []
        out.reserveCapacity(original.count + 32)
        out.append(UInt8(ascii: "{"))
        var first = true
        func separate() {
            if !first { out.append(UInt8(ascii: ",")) }
            first = false
        }
        var written: Set<String> = []
        for member in members where !removing.contains(member.key) {
            separate()
            if let new = replacements[member.key] {
                out.append(contentsOf: original[member.start..<member.valueStart])
                new.render(into: &out)
                written.insert(member.key)
            } else {
                out.append(contentsOf: original[member.start..<member.end])
            }
        }
        for (key, new) in setting where !removing.contains(key) && !written.contains(key) {
            separate()
            JSONValue.renderString(key, into: &out)
            out.append(UInt8(ascii: ":"))
            new.render(into: &out)
            written.insert(key)
        }
        out.append(UInt8(ascii: "}"))
        return out
    }
}
