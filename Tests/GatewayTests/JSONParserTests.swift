import EventLog
import Testing

@testable import Gateway

@Suite struct JSONParserTests {
    func parse(_ text: String) throws(JSONParseError) -> JSONValue { try JSONParser.parse(Array(text.utf8)) }

    func failure(_ bytes: [UInt8]) -> JSONParseError? {
        do {
            _ = try JSONParser.parse(bytes)
            return nil
        } catch {
            return error
        }
    }

    func failure(_ text: String) -> JSONParseError? { failure(Array(text.utf8)) }

    /// Documents the two parsers must agree on: the fast one replaces `JSONDecoder` on the
    /// request path.
    static let corpus = [
        #"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"temperature":0.7,"stream":true}"#,
        #"[1,-2,0,9223372036854775807,-9223372036854775808,18446744073709551615,0.5,-1.25,1e-7]"#,
        #"{"a":{"b":{"c":[[],{},[null,true,false]]}},"empty":"","nested":[{"x":[{"y":null}]}]}"#,
        #"  {"esc":"quote \" backslash \\ slash \/ \b\f\n\r\t \u0001 \u00e9 \ud83d\ude00 end"}  "#,
        #"{"unicode":"héllo wörld — 日本語 🎉","k":"\u2028"}"#,
        "\"top-level string\"", "42", "-7", "true", "null", "3.25",
    ]

    @Test func corpus_parsesLikeJSONDecoder() throws {
        for text in Self.corpus {
            let bytes = Array(text.utf8)
            #expect(try JSONParser.parse(bytes) == JSONValue.parse(bytes), "\(text)")
        }
    }

    @Test func corpus_rendersBytesLikeRenderedString() throws {
        for text in Self.corpus {
            let value = try parse(text)
            #expect(value.renderedBytes() == Array(value.rendered().utf8), "\(text)")
            #expect(try JSONParser.parse(value.renderedBytes()) == value)
        }
    }

    @Test func numbers_keepIntegerKindsAndPrecision() throws {
        #expect(try parse("0") == .int(0))
        #expect(try parse("-0") == .int(0))
        #expect(try parse("9223372036854775807") == .int(.max))
        #expect(try parse("9223372036854775808") == .uint(9_223_372_036_854_775_808))
        #expect(try parse("-9223372036854775808") == .int(.min))
        #expect(try parse("18446744073709551616") == .double(18_446_744_073_709_551_616))
        #expect(try parse("-9223372036854775809") == .double(-0x1p63))
        #expect(try parse("1e3") == .double(1000))
        #expect(try parse("2.0").intValue == 2)
        #expect(try parse("-1.5E-3") == .double(-0.0015))
    }

    @Test func numbers_outsideTheGrammar_areRejected() {
        for text in ["01", "1.", ".5", "-", "+1", "1e", "1e+", "0x10", "NaN", "Infinity", "1e400", "[1,]", "- 1"] {
            #expect(failure(text) != nil, "\(text)")
        }
    }

    @Test func strings_decodeEscapesAndSurrogatePairs() throws {
        #expect(try parse(#""\u00e9\u00E9""#) == .string("éé"))
        #expect(try parse(#""\ud83d\ude00""#) == .string("😀"))
        #expect(try parse(#""a\/b""#) == .string("a/b"))
        #expect(try parse(#""tab\there""#) == .string("tab\there"))
    }

    @Test func strings_loneSurrogates_becomeReplacementCharacters() throws {
        #expect(try parse(#""\ud83d""#) == .string("\u{FFFD}"))
        #expect(try parse(#""\ud83dA""#) == .string("\u{FFFD}A"))
        #expect(try parse(#""\ud83d\u0041""#) == .string("\u{FFFD}A"))
        #expect(try parse(#""\ude00x""#) == .string("\u{FFFD}x"))
    }

    @Test func strings_invalidUTF8_isRejectedWithItsOffset() {
        let bytes: [UInt8] = Array(#"{"k":""#.utf8) + [0x61, 0xFF, 0x62] + Array(#""}"#.utf8)
        let error = failure(bytes)
        #expect(error?.reason == "invalid UTF-8 in a string")
        #expect(error?.offset == 6)
        // Truncated multi-byte sequence, and one behind an escape.
        #expect(failure([0x22, 0xC3, 0x22]) != nil)
        #expect(failure(Array(#""\n"#.utf8) + [0xE2, 0x82, 0x22]) != nil)
    }

    @Test func strings_rawControlCharacters_areRejected() {
        #expect(failure("\"a\nb\"")?.reason == "unescaped control character in a string")
        #expect(failure("\"a\\q\"")?.reason == "invalid escape '\\q'")
        #expect(failure(#""\u12"#)?.reason == "truncated \\u escape")
        #expect(failure(#""\u12g4""#)?.reason == "invalid \\u escape")
        #expect(failure(#""abc"#)?.reason == "unterminated string")
    }

    @Test func structure_errorsSayWhatAndWhere() {
        #expect(failure("") == JSONParseError(reason: "unexpected end of input", offset: 0))
        #expect(failure("{not json") == JSONParseError(reason: "expected a string key", offset: 1))
        #expect(failure(#"{"a" 1}"#) == JSONParseError(reason: "expected ':'", offset: 5))
        #expect(failure(#"{"a":1 "b":2}"#) == JSONParseError(reason: "expected ',' or '}'", offset: 7))
        #expect(failure("[1 2]") == JSONParseError(reason: "expected ',' or ']'", offset: 3))
        #expect(failure("{} x") == JSONParseError(reason: "unexpected data after the JSON value", offset: 3))
        #expect(failure("tru") == JSONParseError(reason: "invalid literal", offset: 0))
        #expect(failure("nulL") == JSONParseError(reason: "invalid literal", offset: 0))
        #expect(failure("@") == JSONParseError(reason: "unexpected character '@'", offset: 0))
        #expect(failure(#"{"a":"#)?.reason == "unexpected end of input")
        #expect(failure("[") != nil)
    }

    @Test func nesting_beyondTheLimit_isRejectedNotACrash() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(failure(deep)?.reason == "nesting deeper than \(JSONParser.defaultMaxDepth) levels")
        let ok = String(repeating: "[", count: 256) + String(repeating: "]", count: 256)
        #expect(failure(ok) == nil)
        let objects = String(repeating: #"{"a":"#, count: 257) + "1" + String(repeating: "}", count: 257)
        #expect(failure(objects) != nil)
    }

    @Test func duplicateKeys_lastOneWins() throws {
        #expect(try parse(#"{"model":"a","model":"b"}"#)["model"] == .string("b"))
    }

    @Test func spans_locateEachTopLevelMember() throws {
        let text = #" { "model" : "gpt-4o" ,"n":[1,{"model":"inner"}], "s":"x\"y" } "#
        let bytes = Array(text.utf8)
        let (value, members) = try JSONParser.parse(bytes, spans: true)
        #expect(value["n"]?[1]?["model"] == .string("inner"))
        #expect(members.map(\.key) == ["model", "n", "s"])
        func slice(_ r: Range<Int>) -> String { String(decoding: bytes[r], as: UTF8.self) }
        #expect(slice(members[0].start..<members[0].end) == #""model" : "gpt-4o""#)
        #expect(slice(members[0].valueStart..<members[0].end) == #""gpt-4o""#)
        #expect(slice(members[1].valueStart..<members[1].end) == #"[1,{"model":"inner"}]"#)
        #expect(slice(members[2].valueStart..<members[2].end) == #""x\"y""#)
    }

    @Test func rendering_escapesControlCharactersQuotesAndBackslashesOnly() {
        let value = JSONValue.object(["k\"": .string("a\u{1}\u{1f}\"\\\n\r\té😀/")])
        let text = String(decoding: value.renderedBytes(), as: UTF8.self)
        #expect(text == #"{"k\"":"a\u0001\u001f\"\\\n\r\té😀/"}"#)
        #expect(JSONValue.double(1e20).renderedBytes() == Array("1e+20".utf8))
        #expect(JSONValue.double(0.1).renderedBytes() == Array("0.1".utf8))
        #expect(JSONValue.double(3).renderedBytes() == Array("3".utf8))
        #expect(JSONValue.double(.nan).renderedBytes() == Array("null".utf8))
    }

    // MARK: Projections

    /// `doc` as a member the projection skips: `{"model":"m","skipped":doc}`.
    func skipping(_ doc: [UInt8]) -> Result<JSONValue, JSONParseError> {
        let bytes = Array(#"{"model":"m","skipped":"#.utf8) + doc + Array("}".utf8)
        do {
            return .success(try JSONParser.parse(bytes, projection: .members(["model": .whole]), spans: false).value)
        } catch {
            return .failure(error)
        }
    }

    @Test func projection_buildsOnlyTheMembersAskedFor() throws {
        let text =
            #"{"model":"gpt-4o","messages":[{"role":"user","content":"long text"},{"role":"assistant","content":[1,2]}],"temperature":0.7,"input":["a","b","c"]}"#
        let projection = JSONProjection.members([
            "model": .whole, "messages": .items(.members(["role": .whole])), "input": .items(.skipped),
        ])
        let (value, members) = try JSONParser.parse(Array(text.utf8), projection: projection, spans: true)
        #expect(
            value
                == .object([
                    "model": .string("gpt-4o"),
                    "messages": .array([.object(["role": .string("user")]), .object(["role": .string("assistant")])]),
                    "input": .array([.null, .null, .null]),
                ]))
        // Skipped members still have their spans, so edits keep them byte for byte.
        #expect(members.map(\.key) == ["model", "messages", "temperature", "input"])
        // A projection that does not fit the value's kind builds it whole.
        let mismatch = try JSONParser.parse(
            Array(#"{"messages":"text","model":{"a":1}}"#.utf8),
            projection: .members(["messages": .items(.whole), "model": .members([:])]), spans: false
        ).value
        #expect(mismatch == .object(["messages": .string("text"), "model": .object([:])]))
    }

    @Test func projection_skippedValuesAreCheckedAsStrictlyAsBuiltOnes() {
        let invalid: [[UInt8]] = [
            Array("\"a\nb\"".utf8), Array("\"a\\q\"".utf8), Array(#""\u12g4""#.utf8), Array(#""abc"#.utf8),
            [0x22, 0x61, 0xFF, 0x62, 0x22], [0x22, 0xC3, 0x22], Array(#""\n"#.utf8) + [0xE2, 0x82, 0x22],
            Array("{not json}".utf8), Array(#"{"a" 1}"#.utf8), Array(#"{"a":1 "b":2}"#.utf8), Array("[1 2]".utf8),
            Array("tru".utf8), Array("@".utf8), Array("[".utf8), Array("01".utf8), Array("-".utf8), Array("1.".utf8),
            Array((String(repeating: "[", count: 300) + String(repeating: "]", count: 300)).utf8),
        ]
        for doc in invalid {
            let whole = failure(Array(#"{"model":"m","skipped":"#.utf8) + doc + Array("}".utf8))
            guard case .failure(let skipped) = skipping(doc) else {
                Issue.record("accepted when skipped: \(String(decoding: doc, as: UTF8.self))")
                continue
            }
            #expect(skipped.reason == whole?.reason, "\(String(decoding: doc, as: UTF8.self))")
            #expect(skipped.offset == whole?.offset, "\(String(decoding: doc, as: UTF8.self))")
        }
        for doc in Self.corpus {
            #expect(throws: Never.self) { try skipping(Array(doc.utf8)).get() }
        }
        #expect((try? skipping(Array("[1,2]".utf8)).get()) == .object(["model": .string("m")]))
    }
}
