import EventLog
import NIOCore
import Replication
import Testing

@Suite struct TransportSecurityTests {
    static let k1 = Keyring.generateKeyBase64()
    static let k2 = Keyring.generateKeyBase64()
    static let boot: UInt64 = 1_764_000_000_000
    static let alice = NodeID(name: "bifrost-node-1").rawValue
    static let bob = NodeID(name: "bifrost-node-2").rawValue

    static func keyring(_ keys: String...) -> Keyring { try! Keyring(base64Keys: keys) }

    static func sealer(_ keys: String..., boot: UInt64 = boot, stats: TransportStats = TransportStats()) -> Sealer {
        Sealer(keyring: try! Keyring(base64Keys: keys), sender: alice, boot: boot, stats: stats)
    }

    static func opener(_ keys: String..., settings: Opener.Settings = Opener.Settings()) -> Opener {
        Opener(keyring: try! Keyring(base64Keys: keys), settings: settings)
    }

    static func rejection(
        _ opener: inout Opener, _ bytes: [UInt8], channel: TransportChannel = .udp, now: UInt64 = boot
    ) -> EnvelopeRejection? {
        do {
            _ = try opener.open(bytes, channel: channel, nowMillis: now)
            return nil
        } catch {
            return error
        }
    }

    // MARK: Round trip

    @Test(arguments: EnvelopeKind.allCases)
    func roundTrip(kind: EnvelopeKind) throws {
        let stats = TransportStats()
        var sealer = Self.sealer(Self.k1, stats: stats)
        var opener = Opener(keyring: Self.keyring(Self.k1), stats: stats)
        for (counter, payload) in [[], Array("hello".utf8), Array(repeating: 0xAB, count: 1400)].enumerated() {
            let sealed = sealer.seal(kind: kind, payload: payload, channel: kind.channel)
            #expect(sealed.count == Envelope.overheadByteCount + payload.count)
            #expect(sealed[0] == Envelope.version)
            let opened = try opener.open(sealed, channel: kind.channel, nowMillis: Self.boot)
            #expect(
                opened
                    == Opener.Opened(
                        kind: kind, sender: Self.alice, boot: Self.boot, counter: UInt64(counter), payload: payload,
                        keyIndex: 0))
        }
        let snapshot = stats.snapshot()
        #expect(snapshot.sealed == 3 && snapshot.opened == 3 && snapshot.rejectedTotal == 0)
        #expect(snapshot.openedWithSecondaryKey == 0)
    }

    @Test func openAcceptsAByteBuffer() throws {
        var sealer = Self.sealer(Self.k1)
        var opener = Self.opener(Self.k1)
        let sealed = sealer.seal(kind: .streamFrame, payload: [1, 2, 3], channel: .tcp)
        var buffer = ByteBuffer(bytes: [9, 9])
        buffer.moveReaderIndex(forwardBy: 2)
        buffer.writeBytes(sealed)
        #expect(try opener.open(buffer, channel: .tcp, nowMillis: Self.boot).payload == [1, 2, 3])
    }

    @Test func plaintextDoesNotAppearOnTheWire() {
        var sealer = Self.sealer(Self.k1)
        let secret = Array("sk-live-0123456789abcdef".utf8)
        let sealed = sealer.seal(kind: .gossip, payload: secret, channel: .udp)
        let windows = (0...(sealed.count - 8)).map { Array(sealed[$0..<$0 + 8]) }
        #expect(!windows.contains(Array(secret.prefix(8))))
    }

    // MARK: Keys

    @Test func nodeWithAnotherKeyCannotOpen() {
        var sealer = Self.sealer(Self.k1)
        let stats = TransportStats()
        var opener = Opener(keyring: Self.keyring(Self.k2), stats: stats)
        let sealed = sealer.seal(kind: .gossip, payload: Array("state".utf8), channel: .udp)
        #expect(Self.rejection(&opener, sealed)?.code == .unknownKey)

        // Same key id in the header (as after a 1-in-2^32 id collision): authentication fails.
        var relabeled = sealed
        withUnsafeBytes(of: Self.keyring(Self.k2).primaryKeyID.bigEndian) { relabeled.replaceSubrange(1..<5, with: $0) }
        #expect(Self.rejection(&opener, relabeled)?.code == .tampered)

        let snapshot = stats.snapshot()
        #expect(snapshot[rejected: .unknownKey] == 1 && snapshot[rejected: .tampered] == 1)
        #expect(snapshot.opened == 0 && snapshot.rejectedTotal == 2)
    }

    @Test func keyIDIsDomainSeparatedSHA256Prefix() throws {
        // python3: hashlib.sha256(b"bifrost-key-id" + bytes(32)).hexdigest()[:8]
        #expect(Keyring.keyID(of: [UInt8](repeating: 0, count: 32)) == 0x7981_05df)
        let keyring = try Keyring(base64Keys: ["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="])
        #expect(keyring.primaryKeyID == 0xb193_1d13)
        #expect(Keyring.hex(keyID: 0x0000_00ff) == "000000ff")
    }

    @Test func generatedKeysAreDistinct32ByteKeys() throws {
        let keys = (0..<16).map { _ in Keyring.generateKeyBase64() }
        #expect(Set(keys).count == keys.count)
        #expect(keys.allSatisfy { $0.count == 44 })
        #expect(try Keyring(base64Keys: keys).keyIDs.count == keys.count)
    }

    struct BadKeyCase: Sendable, CustomTestStringConvertible {
        var keys: [String]
        var index: Int
        var says: String
        var testDescription: String { "\(keys.count) keys, bad at \(index): \(says)" }
    }

    static let badKeyCases: [BadKeyCase] = [
        BadKeyCase(keys: ["not base64!"], index: 0, says: "is not base64"),
        BadKeyCase(keys: [k1, "AAAAAAAAAAAAAAAAAAAAAA=="], index: 1, says: "decodes to 16 bytes"),
        BadKeyCase(
            keys: [k1, k2, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"], index: 2, says: "decodes to 33 bytes"),
        BadKeyCase(keys: [k1, ""], index: 1, says: "is empty"),
        BadKeyCase(keys: [String(k1.dropLast())], index: 0, says: "is not base64"),
    ]

    @Test(arguments: badKeyCases)
    func badKeyErrorNamesItsIndex(_ bad: BadKeyCase) throws {
        let error = try #require(throws: KeyringError.self) { try Keyring(base64Keys: bad.keys) }
        #expect(error.code == .badKey && error.index == bad.index)
        #expect(error.description.hasPrefix("cluster.encryption.keys[\(bad.index)] \(bad.says)"))
        #expect(error.description.hasSuffix("expected base64 of 32 bytes; run `bifrost keygen`"))
        for key in bad.keys where key.count > 4 {
            #expect(!error.description.contains(key), "the error must not echo key material")
        }
    }

    @Test func noKeysIsAnError() throws {
        let error = try #require(throws: KeyringError.self) { try Keyring(base64Keys: []) }
        #expect(error.code == .noKeys && error.index == nil && error.description.contains("run `bifrost keygen`"))
    }

    @Test func keysAreTrimmedAndDeduplicated() throws {
        let keyring = try Keyring(base64Keys: [" \(Self.k2)\n", Self.k1, Self.k2])
        #expect(keyring.keyIDs == [Self.keyring(Self.k2).primaryKeyID, Self.keyring(Self.k1).primaryKeyID])
    }

    @Test func environmentHoldsCommaSeparatedKeys() throws {
        #expect(try Keyring.fromEnvironment([:]) == nil)
        #expect(try Keyring.fromEnvironment(["BIFROST_CLUSTER_KEY": " "]) == nil)
        let keyring = try #require(try Keyring.fromEnvironment(["BIFROST_CLUSTER_KEY": "\(Self.k2),\(Self.k1)"]))
        #expect(keyring.keyIDs == Self.keyring(Self.k2, Self.k1).keyIDs)
        do {
            _ = try Keyring.fromEnvironment(["BIFROST_CLUSTER_KEY": "\(Self.k1),short"])
            Issue.record("a bad key in the environment was accepted")
        } catch {
            #expect(error.index == 1 && error.description.hasPrefix("BIFROST_CLUSTER_KEY[1] "))
        }
    }

    // MARK: Rotation

    @Test func rotationAddUseRemove() throws {
        let stats = TransportStats()
        // Step 1 done everywhere, step 2 under way: the sender already seals with k2.
        var sender = Self.sealer(Self.k2, Self.k1)
        var receiver = Opener(keyring: Self.keyring(Self.k1, Self.k2), stats: stats)
        let first = sender.seal(kind: .gossip, payload: [1], channel: .udp)
        #expect(try receiver.open(first, channel: .udp, nowMillis: Self.boot).keyIndex == 1)
        #expect(stats.snapshot().openedWithSecondaryKey == 1)

        // A node that has not switched yet still seals with k1; the switched receiver opens it.
        var lagging = Sealer(keyring: Self.keyring(Self.k1, Self.k2), sender: Self.bob, boot: Self.boot)
        receiver.keyring = Self.keyring(Self.k2, Self.k1)
        let late = lagging.seal(kind: .gossip, payload: [2], channel: .udp)
        #expect(try receiver.open(late, channel: .udp, nowMillis: Self.boot).keyIndex == 1)

        // Step 3: k1 removed on both sides.
        sender.keyring = Self.keyring(Self.k2)
        receiver.keyring = Self.keyring(Self.k2)
        let after = sender.seal(kind: .gossip, payload: [3], channel: .udp)
        let opened = try receiver.open(after, channel: .udp, nowMillis: Self.boot + 1)
        #expect(opened.payload == [3] && opened.keyIndex == 0)

        // A receiver that only has k1 cannot open k2's messages.
        var stale = Self.opener(Self.k1)
        #expect(Self.rejection(&stale, after)?.code == .unknownKey)
    }

    // MARK: Tampering

    @Test func everySingleBitFlipIsRejected() throws {
        let stats = TransportStats()
        var sealer = Self.sealer(Self.k1)
        var opener = Opener(keyring: Self.keyring(Self.k1), stats: stats)
        let sealed = sealer.seal(kind: .gossip, payload: Array("alive incarnation=7".utf8), channel: .udp)
        for index in sealed.indices {
            for bit in 0..<8 {
                var flipped = sealed
                flipped[index] ^= 1 << bit
                let expected: EnvelopeRejection.Code =
                    switch index {
                    case 0: .unsupportedVersion
                    case 1..<5: .unknownKey
                    default: .tampered
                    }
                #expect(Self.rejection(&opener, flipped)?.code == expected, "byte \(index) bit \(bit)")
            }
        }
        #expect(stats.snapshot().rejectedTotal == UInt64(sealed.count * 8))
        #expect(
            try opener.open(sealed, channel: .udp, nowMillis: Self.boot).payload == Array("alive incarnation=7".utf8))
    }

    @Test func everyTruncationIsRejected() {
        var sealer = Self.sealer(Self.k1)
        var opener = Self.opener(Self.k1)
        let sealed = sealer.seal(kind: .gossip, payload: Array(repeating: 7, count: 40), channel: .udp)
        for length in 0..<sealed.count {
            let expected: EnvelopeRejection.Code = length < Envelope.overheadByteCount ? .truncated : .tampered
            #expect(Self.rejection(&opener, Array(sealed.prefix(length)))?.code == expected, "length \(length)")
        }
        #expect(Self.rejection(&opener, sealed + [0])?.code == .tampered)
    }

    @Test func unsupportedVersionAndOversizeAreRejectedBeforeDecryption() {
        var sealer = Self.sealer(Self.k1)
        var settings = Opener.Settings()
        settings.maxDatagramBytes = 100
        var opener = Self.opener(Self.k1, settings: settings)
        var v2 = sealer.seal(kind: .gossip, payload: [], channel: .udp)
        v2[0] = 2
        let rejection = Self.rejection(&opener, v2)
        #expect(rejection?.code == .unsupportedVersion && rejection?.context == .unsupportedVersion(2))

        let big = sealer.seal(kind: .gossip, payload: [UInt8](repeating: 0, count: 43), channel: .udp)
        #expect(big.count == 101)
        #expect(Self.rejection(&opener, big)?.context == .oversized(limit: 100))
        let fits = sealer.seal(kind: .gossip, payload: [UInt8](repeating: 0, count: 42), channel: .udp)
        #expect(Self.rejection(&opener, fits) == nil)
    }

    // MARK: Replay

    @Test func replayIsRejectedTheSecondTime() throws {
        let stats = TransportStats()
        var sealer = Self.sealer(Self.k1)
        var opener = Opener(keyring: Self.keyring(Self.k1), stats: stats)
        let sealed = sealer.seal(kind: .gossip, payload: [1], channel: .udp)
        _ = try opener.open(sealed, channel: .udp, nowMillis: Self.boot)
        let rejection = try #require(Self.rejection(&opener, sealed))
        #expect(rejection.context == .replayed(sender: Self.alice, boot: Self.boot, counter: 0, .duplicate))
        #expect(rejection.sender == Self.alice)
        #expect(rejection.description.contains(NodeID(rawValue: Self.alice).hex))
        #expect(stats.snapshot()[rejected: .replayed] == 1)
    }

    @Test func reorderedMessagesAreAcceptedOnce() throws {
        var sealer = Self.sealer(Self.k1)
        var opener = Self.opener(Self.k1)
        let messages = (0..<50).map { sealer.seal(kind: .gossip, payload: [UInt8($0)], channel: .udp) }
        for message in messages.reversed() {
            _ = try opener.open(message, channel: .udp, nowMillis: Self.boot)
        }
        for message in messages {
            #expect(Self.rejection(&opener, message)?.code == .replayed)
        }
    }

    @Test func oldBootIsRejectedAfterANewerBoot() throws {
        var oldRun = Self.sealer(Self.k1, boot: Self.boot)
        var newRun = Self.sealer(Self.k1, boot: Self.boot + 60_000)
        var opener = Self.opener(Self.k1)
        let old = oldRun.seal(kind: .gossip, payload: [1], channel: .udp)
        let new = newRun.seal(kind: .gossip, payload: [2], channel: .udp)
        #expect(try opener.open(old, channel: .udp, nowMillis: Self.boot + 60_000).counter == 0)
        // Same counter 0, newer boot: a fresh window.
        #expect(try opener.open(new, channel: .udp, nowMillis: Self.boot + 60_000).counter == 0)
        let stale = oldRun.seal(kind: .gossip, payload: [3], channel: .udp)
        let rejection = Self.rejection(&opener, stale, now: Self.boot + 60_000)
        #expect(
            rejection?.context
                == .replayed(sender: Self.alice, boot: Self.boot, counter: 1, .staleBoot(current: Self.boot + 60_000)))
    }

    @Test func bootFarInTheFutureIsRejected() {
        var settings = Opener.Settings()
        settings.maxBootSkewMillis = 1_000
        var opener = Self.opener(Self.k1, settings: settings)
        var sealer = Self.sealer(Self.k1, boot: Self.boot + 1_001)
        let sealed = sealer.seal(kind: .gossip, payload: [], channel: .udp)
        #expect(Self.rejection(&opener, sealed)?.code == .bootInFuture)
        #expect(Self.rejection(&opener, sealed, now: Self.boot + 1) == nil)
    }

    @Test func sendersHaveSeparateWindows() throws {
        var a = Self.sealer(Self.k1)
        var b = Sealer(keyring: Self.keyring(Self.k1), sender: Self.bob, boot: Self.boot)
        var opener = Self.opener(Self.k1)
        let fromA = a.seal(kind: .gossip, payload: [], channel: .udp)
        let fromB = b.seal(kind: .gossip, payload: [], channel: .udp)
        #expect(try opener.open(fromA, channel: .udp, nowMillis: Self.boot).sender == Self.alice)
        #expect(try opener.open(fromB, channel: .udp, nowMillis: Self.boot).sender == Self.bob)
    }

    // MARK: Channels

    @Test func udpBytesAreRejectedOnTCP() throws {
        var sealer = Self.sealer(Self.k1)
        var opener = Self.opener(Self.k1)
        let datagram = sealer.seal(kind: .gossip, payload: [1], channel: .udp)
        #expect(Self.rejection(&opener, datagram, channel: .tcp)?.code == .tampered)
        let frame = sealer.seal(kind: .streamFrame, payload: [2], channel: .tcp)
        #expect(Self.rejection(&opener, frame, channel: .udp)?.code == .tampered)
        // Not consumed by the failed attempts.
        #expect(try opener.open(datagram, channel: .udp, nowMillis: Self.boot).payload == [1])
        #expect(try opener.open(frame, channel: .tcp, nowMillis: Self.boot).payload == [2])
    }

    @Test func kindNotCarriedOnTheChannelIsRejected() {
        var sealer = Self.sealer(Self.k1)
        var opener = Self.opener(Self.k1)
        let misdirected = sealer.seal(kind: .gossip, payload: [], channel: .tcp)
        #expect(
            Self.rejection(&opener, misdirected, channel: .tcp)?.context == .wrongChannel(kind: 1, sender: Self.alice))
    }

    // MARK: Nonces

    @Test func noncesDoNotRepeat() {
        var first = Self.sealer(Self.k1)
        var second = Self.sealer(Self.k1)
        func nonce(_ sealed: [UInt8]) -> [UInt8] { Array(sealed[Envelope.headerByteCount..<17]) }
        var nonces = Set<[UInt8]>()
        for _ in 0..<5_000 {
            nonces.insert(nonce(first.seal(kind: .gossip, payload: [], channel: .udp)))
            nonces.insert(nonce(second.seal(kind: .gossip, payload: [], channel: .udp)))
        }
        #expect(nonces.count == 10_000)
    }

    @Test func rejectionDescriptionsSayWhatToDo() {
        let cases: [(EnvelopeRejection.Context, String)] = [
            (.oversized(limit: 10), "over the 10-byte limit"),
            (.truncated(minimum: 58), "shorter than the 58 bytes"),
            (.unsupportedVersion(9), "upgrade this node"),
            (.unknownKey(keyID: 0xdead_beef), "deadbeef, which this node does not have"),
            (.tampered(keyID: 1), "failed authentication under key 00000001"),
            (.wrongChannel(kind: 9, sender: 1), "incompatible version"),
            (.bootInFuture(sender: 1, boot: 5_000, nowMillis: 1_000, limitMillis: 100), "4000 ms ahead"),
            (.replayed(sender: 1, boot: 1, counter: 1, .staleBoot(current: 2)), "fix its clock"),
            (.replayed(sender: 1, boot: 1, counter: 1, .belowWindow(highest: 5_000)), "too far below counter 5000"),
            (.replayed(sender: 1, boot: 1, counter: 1, .duplicate), "accepted before"),
        ]
        for (context, phrase) in cases {
            let rejection = EnvelopeRejection(context, channel: .udp, byteCount: 99)
            #expect(rejection.description.hasPrefix("dropped a 99-byte udp message"))
            #expect(rejection.description.contains(phrase), "\(rejection.code)")
        }
        #expect(Set(cases.map { EnvelopeRejection($0.0, channel: .tcp, byteCount: 0).code }).count == 8)
    }
}

// MARK: - ReplayWindow

extension TransportSecurityTests {
    @Suite struct ReplayWindowTests {
        struct Step: Sendable, CustomTestStringConvertible {
            var sender: UInt64 = 1
            var boot: UInt64 = 100
            var counter: UInt64
            var verdict: ReplayWindow.Verdict
            var testDescription: String { "s\(sender) b\(boot) c\(counter) → \(verdict)" }
        }

        static func step(
            _ counter: UInt64, _ verdict: ReplayWindow.Verdict, sender: UInt64 = 1, boot: UInt64 = 100
        ) -> Step {
            Step(sender: sender, boot: boot, counter: counter, verdict: verdict)
        }

        struct Scenario: Sendable, CustomTestStringConvertible {
            var name: String
            var steps: [Step]
            var testDescription: String { name }
        }

        static let scenarios: [Scenario] = [
            Scenario(name: "in order", steps: [step(0, .accepted), step(1, .accepted), step(2, .accepted)]),
            Scenario(
                name: "duplicate",
                steps: [step(5, .accepted), step(5, .duplicate), step(6, .accepted), step(5, .duplicate)]),
            Scenario(
                name: "reordered inside the window",
                steps: [step(10, .accepted), step(8, .accepted), step(9, .accepted), step(8, .duplicate)]),
            Scenario(
                name: "first message may be anywhere",
                steps: [step(5_000, .accepted), step(4_000, .accepted), step(3_977, .accepted)]),
            Scenario(
                name: "window edge",
                steps: [
                    step(2_000, .accepted), step(977, .accepted), step(976, .belowWindow(highest: 2_000)),
                    step(977, .duplicate),
                ]
            ),
            Scenario(
                name: "sliding up forgets what leaves the window",
                steps: [
                    step(0, .accepted), step(1_023, .accepted), step(1_024, .accepted),
                    step(0, .belowWindow(highest: 1_024)), step(1, .accepted), step(1_023, .duplicate),
                ]
            ),
            Scenario(
                name: "a jump past the window clears it",
                steps: [
                    step(3, .accepted), step(10_000, .accepted), step(3, .belowWindow(highest: 10_000)),
                    step(9_000, .accepted), step(9_000, .duplicate), step(8_977, .accepted), step(8_977, .duplicate),
                ]
            ),
            Scenario(
                name: "slots reused by the ring start clear",
                steps: [
                    step(0, .accepted), step(1, .accepted), step(5, .accepted), step(7, .accepted),
                    step(1_030, .accepted), step(1_024, .accepted), step(1_025, .accepted), step(1_029, .accepted),
                    step(7, .duplicate), step(6, .belowWindow(highest: 1_030)), step(1_031, .accepted),
                    step(7, .belowWindow(highest: 1_031)), step(1_031, .duplicate),
                ]
            ),
            Scenario(
                name: "newer boot resets, older boot is stale",
                steps: [
                    step(7, .accepted), step(0, .accepted, boot: 200), step(7, .accepted, boot: 200),
                    step(8, .staleBoot(current: 200), boot: 100), step(7, .duplicate, boot: 200),
                ]
            ),
            Scenario(
                name: "senders are independent",
                steps: [
                    step(1, .accepted, sender: 1), step(1, .accepted, sender: 2), step(1, .duplicate, sender: 1),
                    step(0, .accepted, sender: 1, boot: 200), step(0, .staleBoot(current: 100), sender: 2, boot: 50),
                    step(2, .accepted, sender: 2), step(1, .staleBoot(current: 200), sender: 1),
                ]
            ),
            Scenario(
                name: "counter extremes",
                steps: [
                    step(UInt64.max, .accepted), step(UInt64.max, .duplicate), step(UInt64.max - 1_023, .accepted),
                    step(UInt64.max - 1_024, .belowWindow(highest: .max)),
                ]
            ),
        ]

        @Test(arguments: scenarios)
        func scenario(_ scenario: Scenario) {
            var window = ReplayWindow()
            for (index, step) in scenario.steps.enumerated() {
                let verdict = window.admit(sender: step.sender, boot: step.boot, counter: step.counter)
                #expect(verdict == step.verdict, "step \(index): \(step.testDescription)")
            }
        }

        /// Against a model that remembers every counter: accept iff unseen and above
        /// `highest - size`.
        @Test(arguments: [64, 1_024])
        func matchesAReferenceModel(size: Int) {
            var rng = SplitMix64(seed: UInt64(size))
            var window = ReplayWindow(size: size)
            var seen = Set<UInt64>()
            var highest: UInt64?
            for _ in 0..<50_000 {
                let offset = Int.random(in: -2 * size..<size, using: &rng)
                let counter = UInt64(max(0, Int(highest ?? 0) + offset))
                let expected: ReplayWindow.Verdict
                if let top = highest, counter <= top, top - counter >= UInt64(size) {
                    expected = .belowWindow(highest: top)
                } else if seen.contains(counter) {
                    expected = .duplicate
                } else {
                    expected = .accepted
                    seen.insert(counter)
                    highest = max(highest ?? counter, counter)
                }
                let verdict = window.admit(sender: 9, boot: 1, counter: counter)
                if verdict != expected {
                    Issue.record("counter \(counter): \(verdict), model says \(expected)")
                    return
                }
            }
            #expect(window.newest(of: 9)?.counter == highest)
            #expect(window.senderCount == 1)
        }
    }
}
