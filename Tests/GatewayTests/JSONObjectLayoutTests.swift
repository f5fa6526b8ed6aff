import EventLog
import Testing

@testable import Gateway

@Suite struct JSONObjectLayoutTests {
    func edit(
        _ text: String, setting: [(key: String, value: JSONValue)] = [], removing: Set<String> = []
    ) throws -> String {
        let bytes = Array(text.utf8)
        let layout = try JSONObjectLayout(parsing: bytes)
        return String(decoding: layout.edited(bytes, setting: setting, removing: removing), as: UTF8.self)
    }

    static let body =
        #" { "model" : "openai/gpt-4o" ,"x":[1.0, 1e-7, 12345678901234567890123],"k\u00e9":"\ud83d\ude00"}"#

    @Test func noChange_returnsTheOriginalBytes() throws {
        #expect(try edit(Self.body) == Self.body)
        #expect(try edit(Self.body, setting: [("model", .string("openai/gpt-4o"))], removing: ["absent"]) == Self.body)
    }

    @Test func setting_replacesOnlyThatValueAndKeepsEveryOtherByte() throws {
        #expect(
            try edit(Self.body, setting: [("model", .string("gpt-4o"))])
                == #"{"model" : "gpt-4o","x":[1.0, 1e-7, 12345678901234567890123],"k\u00e9":"\ud83d\ude00"}"#)
    }

    @Test func removing_dropsTheMemberWherever_itIs() throws {
        let first = #"{"fallbacks":["b"],"model":"a","n":1}"#
        let middle = #"{"model":"a","fallbacks":["b"],"n":1}"#
        let last = #"{"model":"a","n":1,"fallbacks":["b"]}"#
        for text in [first, middle, last] {
            let out = try edit(text, removing: ["fallbacks"])
            #expect(try JSONParser.parse(Array(out.utf8)) == .object(["model": .string("a"), "n": .int(1)]), "\(text)")
        }
        #expect(try edit(#"{"fallbacks":[]}"#, removing: ["fallbacks"]) == "{}")
    }

    @Test func settingAnAbsentMember_appendsIt() throws {
        #expect(
            try edit(
                #"{"model":"a","stream":true}"#, setting: [("stream_options", .object(["include_usage": .bool(true)]))])
                == #"{"model":"a","stream":true,"stream_options":{"include_usage":true}}"#)
        #expect(try edit("{ }", setting: [("model", .string("a"))]) == #"{"model":"a"}"#)
    }

    @Test func duplicateKeys_areAllReplacedOrRemoved() throws {
        let text = #"{"model":"x","model":"y","n":1}"#
        #expect(try edit(text, setting: [("model", .string("z"))]) == #"{"model":"z","model":"z","n":1}"#)
        #expect(try edit(text, removing: ["model"]) == #"{"n":1}"#)
    }

    @Test func nestedMembersWithTheSameName_areUntouched() throws {
        let text = #"{"messages":[{"model":"inner"}],"model":"outer"}"#
        #expect(
            try edit(text, setting: [("model", .string("new"))]) == #"{"messages":[{"model":"inner"}],"model":"new"}"#)
    }

    @Test func nonObjects_areRejected() {
        #expect(throws: JSONParseError.self) { try JSONObjectLayout(parsing: Array("[1]".utf8)) }
        #expect(throws: JSONParseError.self) { try JSONObjectLayout(parsing: Array("{".utf8)) }
    }
}
