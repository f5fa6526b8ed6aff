import ArgumentParser
import EventLog
import Foundation

/// Helpers shared by the operator tools: argument parsing, one-line failures, progress.
public enum ToolSupport {
    /// Parses a `--since`/`--until` value: a raw HLC (decimal) or an RFC 3339 time.
    public static func time(_ text: String, option: String) throws -> HLCTimestamp {
        guard let t = EventJSON.parseTime(text) else {
            throw ValidationError(
                "\(option) '\(text)' is neither a raw HLC (a decimal number) nor an RFC 3339 time like 2026-11-25T03:52:49Z"
            )
        }
        return t
    }

    /// Opens a data directory read-only, or exits 1 with a one-line message.
    public static func openReader(_ directory: String, tool: String) throws -> EventLogReader {
        do {
            return try EventLogReader.open(directory: directory)
        } catch {
            fail(tool, error.description)
        }
    }

    /// Prints `tool: message` to standard error and exits 1.
    public static func fail(_ tool: String, _ message: String) -> Never {
        FileHandle.standardError.write(Data("\(tool): \(message)\n".utf8))
        exit(1)
    }

    public static func printLine(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}

/// Progress on a terminal (standard error), silent when it is not one.
public final class ProgressLine: @unchecked Sendable {
    private let label: String
    private let enabled: Bool
    private let start = ContinuousClock.now
    private var lastPrint = ContinuousClock.now
    private var printed = false

    public init(_ label: String, enabled: Bool = isatty(STDERR_FILENO) == 1) {
        self.label = label
        self.enabled = enabled
    }

    public func update(_ done: UInt64, total: UInt64? = nil) {
        guard enabled, ContinuousClock.now - lastPrint > .milliseconds(200) else { return }
        lastPrint = .now
        printed = true
        let seconds = (ContinuousClock.now - start).seconds
        let rate = seconds > 0 ? Double(done) / seconds : 0
        var line = "\r\(label): \(done)"
        if let total { line += "/\(total)" }
        line += String(format: " events (%.0f/s)", rate)
        FileHandle.standardError.write(Data(line.utf8))
    }

    public func finish() {
        if printed { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}

extension Duration {
    public var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
