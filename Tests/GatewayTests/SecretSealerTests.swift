import EventLog
import Foundation
import Testing

@testable import Gateway

@Suite struct SecretSealerTests {
    static func clusterKey() -> String { Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString() }

    @Test func seal_opensWithTheSameKeyring_andHidesTheSecret() throws {
        let sealer = try #require(SecretSealer(base64ClusterKeys: [Self.clusterKey()]))
        let sealed = sealer.seal("sk-provider-secret")
        #expect(sealed.hasPrefix(SecretSealer.prefix))
        #expect(!sealed.contains("sk-provider-secret"))
        #expect(sealer.open(sealed) == "sk-provider-secret")
        // A fresh nonce each time: the same secret never seals to the same text.
        #expect(sealer.seal("sk-provider-secret") != sealed)
        #expect(SecretValue(sealed) == .sealed(sealed))
        #expect(SecretValue(sealed).resolve([:], sealer: sealer) == "sk-provider-secret")
        #expect(SecretValue(sealed).description == "[redacted]")
    }

    @Test func open_refusesOtherKeysAndAlteredValues() throws {
        let sealer = try #require(SecretSealer(base64ClusterKeys: [Self.clusterKey()]))
        let other = try #require(SecretSealer(base64ClusterKeys: [Self.clusterKey()]))
        let sealed = sealer.seal("tok-client")
        #expect(other.open(sealed) == nil)
        #expect(SecretValue(sealed).resolve([:], sealer: other) == nil)
        #expect(SecretValue(sealed).resolve([:], sealer: nil) == nil)
        #expect(SecretValue(sealed).unresolvedReason.contains("cluster key this node does not have"))
        var bytes = Array(sealed.utf8)
        bytes[bytes.count - 3] = bytes[bytes.count - 3] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        #expect(sealer.open(String(decoding: bytes, as: UTF8.self)) == nil)
        #expect(sealer.open("sealed:v1:nothing") == nil)
    }

    @Test func aRotatedKeyring_stillOpensWhatItsOlderKeySealed() throws {
        let old = Self.clusterKey()
        let sealed = try #require(SecretSealer(base64ClusterKeys: [old])).seal("sk-before-rotation")
        let rotated = try #require(SecretSealer(base64ClusterKeys: [Self.clusterKey(), old]))
        #expect(rotated.open(sealed) == "sk-before-rotation")
        #expect(SecretSealer(base64ClusterKeys: []) == nil)
    }
}
