/// Turns the event log into a cluster: SWIM membership and failure detection (`SWIM`),
/// sealed transport (`Transport`), event streaming and digest anti-entropy (`Sync`).
///
/// Protocol logic lives in pure value types driven by injected time and randomness; the NIO
/// shells around them only move bytes.
public enum Replication {}
