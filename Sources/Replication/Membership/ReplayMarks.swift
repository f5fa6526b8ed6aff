import Foundation
import Logging
import ServiceLifecycle

/// The gossip replay marks of a node, kept in its data directory (`replay-marks.json`, 0600),
/// so a datagram captured before a restart is refused after it, as it was before.
///
/// Saved every `interval` when they changed and once more at shutdown; after a crash, what was
/// accepted in the last interval before it may be accepted once more.
public struct ReplayMarksFile: Sendable {
    public static let fileName = "replay-marks.json"
    public let path: String

    public init(directory: String) { path = directory + "/" + Self.fileName }

    /// The saved marks; none when there is no file yet. A file that cannot be read is an error
    /// the caller logs: starting without marks only reopens the window this file closes.
    public func load() throws -> [ReplayWindow.Mark] {
        guard FileManager.default.fileExists(atPath: path) else { return [] }
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return try JSONDecoder().decode([ReplayWindow.Mark].self, from: data)
    }

    /// Replaces the file atomically (a temporary file renamed over it), owner-only.
    public func save(_ marks: [ReplayWindow.Mark]) throws {
        let data = try JSONEncoder().encode(marks)
        let temporary = path + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data, attributes: [.posixPermissions: 0o600])
        else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: temporary])
        }
        guard rename(temporary, path) == 0 else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
    }
}

/// Saves a gossip service's replay marks while the node runs (`ReplayMarksFile`).
public final class ReplayMarksKeeper: Service, Sendable {
    let gossip: GossipService
    let file: ReplayMarksFile
    let interval: Duration
    let logger: Logger

    public init(gossip: GossipService, file: ReplayMarksFile, interval: Duration = .seconds(1), logger: Logger) {
        self.gossip = gossip
        self.file = file
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        var saved: [ReplayWindow.Mark] = []
        var failing = false
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await cancelWhenGracefulShutdown { [interval] in try await Task.sleep(for: interval) }
            saved = save(unless: saved, failing: &failing)
        }
        _ = save(unless: saved, failing: &failing)
    }

    /// Saves the marks if they changed. A failure (a full disk, say) is logged once until a save
    /// works again, not every interval.
    private func save(unless saved: [ReplayWindow.Mark], failing: inout Bool) -> [ReplayWindow.Mark] {
        let marks = gossip.replayMarks()
        guard marks != saved else { return saved }
        do {
            try file.save(marks)
            if failing { logger.notice("gossip replay marks saved again", metadata: ["file.path": .string(file.path)]) }
            failing = false
            return marks
        } catch {
            if !failing {
                logger.warning(
                    "cannot save the gossip replay marks; retrying every interval",
                    metadata: ["file.path": .string(file.path), "error": .string("\(error)")])
            }
            failing = true
            return saved
        }
    }
}
