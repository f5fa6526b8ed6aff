import EventLog
import Foundation
import Replication
import Testing

/// A receiver that restarts keeps refusing what it accepted before: its replay marks are saved
/// in the data directory and restored.
@Suite struct ReplayMarksTests {
    static let key = Keyring.generateKeyBase64()
    static let boot: UInt64 = 1_764_000_000_000
    static let alice = NodeID(name: "bifrost-node-1").rawValue

    @Test func datagramsAcceptedBeforeARestart_areRefusedAfterIt() throws {
        var sender = Sealer(keyring: try Keyring(base64Keys: [Self.key]), sender: Self.alice, boot: Self.boot)
        let captured = (0..<5).map { sender.seal(kind: .gossip, payload: [UInt8($0)], channel: .udp) }
        var before = Opener(keyring: try Keyring(base64Keys: [Self.key]))
        for datagram in captured { _ = try before.open(datagram, channel: .udp, nowMillis: Self.boot) }
        let marks = before.replayMarks(.udp)
        #expect(marks == [ReplayWindow.Mark(sender: Self.alice, boot: Self.boot, counter: 4)])

        // The restarted receiver, with the marks saved before.
        var after = Opener(keyring: try Keyring(base64Keys: [Self.key]))
        after.restoreReplayMarks(marks, channel: .udp)
        for datagram in captured {
            #expect(throws: EnvelopeRejection.self) { try after.open(datagram, channel: .udp, nowMillis: Self.boot) }
        }
        // What the sender says next is accepted.
        let fresh = sender.seal(kind: .gossip, payload: [9], channel: .udp)
        #expect(try after.open(fresh, channel: .udp, nowMillis: Self.boot).payload == [9])
        // Without the marks, the captured datagrams would pass.
        var forgetful = Opener(keyring: try Keyring(base64Keys: [Self.key]))
        #expect(try forgetful.open(captured[0], channel: .udp, nowMillis: Self.boot).counter == 0)
    }

    @Test func restore_keepsNewerState_andRefusesOlderBoots() {
        var window = ReplayWindow(size: 64)
        #expect(window.admit(sender: 1, boot: 20, counter: 7) == .accepted)
        window.restore([
            ReplayWindow.Mark(sender: 1, boot: 10, counter: 99), ReplayWindow.Mark(sender: 2, boot: 5, counter: 3),
        ])
        // Sender 1's newer boot stays; sender 2 refuses its old counters and boots.
        #expect(window.newest(of: 1)! == (20, 7))
        #expect(window.admit(sender: 2, boot: 5, counter: 3) == .duplicate)
        #expect(window.admit(sender: 2, boot: 5, counter: 0) == .duplicate)
        #expect(window.admit(sender: 2, boot: 4, counter: 50) == .staleBoot(current: 5))
        #expect(window.admit(sender: 2, boot: 5, counter: 4) == .accepted)
    }

    @Test func theFile_roundTrips_ownerOnly() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("marks-\(UUID())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = ReplayMarksFile(directory: directory)
        #expect(try file.load() == [])
        let marks = [ReplayWindow.Mark(sender: 7, boot: 1_764_000_000_000, counter: 12_345)]
        try file.save(marks)
        #expect(try file.load() == marks)
        let mode = try FileManager.default.attributesOfItem(atPath: file.path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        try Data("not json".utf8).write(to: URL(fileURLWithPath: file.path))
        #expect(throws: (any Error).self) { try file.load() }
    }
}
