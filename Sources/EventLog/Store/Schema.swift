/// Names and keys of the LMDB layout of a data directory (DESIGN §2, "Storage").
///
/// | database  | key                          | value                                      |
/// | --------- | ---------------------------- | ------------------------------------------ |
/// | `events`  | hlc (8 BE) ‖ origin (8 BE)   | `EventCodec` bytes                          |
/// | `digests` | level (1) ‖ bucket (8 BE)    | `Fingerprint` (40 bytes)                   |
/// | `origins` | origin (8 BE)                | max hlc (8 BE) ‖ event count (8 BE)        |
/// | `log`     | local insertion seq (8 BE)   | event key (16): the tail after a checkpoint |
/// | `names`   | origin (8 BE)                | node name (UTF-8)                          |
/// | `meta`    | ASCII name                   | see `Schema.Meta`                          |
enum Schema {
    static let formatTag = "bifrost-eventlog/1"

    enum DB {
        static let events = "events"
        static let digests = "digests"
        static let origins = "origins"
        static let log = "log"
        static let names = "names"
        static let meta = "meta"
        static let all = [events, digests, origins, log, names, meta]
    }

    enum Meta {
        /// `formatTag`: marks a directory as ours.
        static let format = Array("format".utf8)
        /// The owning node's name (UTF-8).
        static let nodeName = Array("node_name".utf8)
        /// Upper bound of every HLC this node has used (8 BE).
        static let clock = Array("clock".utf8)
        /// Last local insertion sequence number (8 BE).
        static let seq = Array("seq".utf8)
        /// seq (8 BE) ‖ `ViewCodec` bytes.
        static let checkpoint = Array("checkpoint".utf8)
        /// Events below this HLC (8 BE) may have been compacted.
        static let compactedBefore = Array("compacted_before".utf8)
    }

    static func u64(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.bigEndian) { Array($0) } }

    static func u64(_ bytes: UnsafeRawBufferPointer, at offset: Int = 0) -> UInt64 {
        UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}

/// Handles of the databases of one environment.
struct Databases: Sendable {
    let events: LMDBDatabase
    let digests: LMDBDatabase
    let origins: LMDBDatabase
    let log: LMDBDatabase
    let names: LMDBDatabase
    let meta: LMDBDatabase

    init(env: LMDBEnvironment, create: Bool) throws {
        events = try env.openDatabase(Schema.DB.events, create: create)
        digests = try env.openDatabase(Schema.DB.digests, create: create)
        origins = try env.openDatabase(Schema.DB.origins, create: create)
        log = try env.openDatabase(Schema.DB.log, create: create)
        names = try env.openDatabase(Schema.DB.names, create: create)
        meta = try env.openDatabase(Schema.DB.meta, create: create)
    }
}

/// Why a data directory could not be opened or used; says what to do about it.
public struct EventLogError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Code: String, Sendable {
        case notFound = "not_found"
        case notOurs = "not_a_bifrost_data_dir"
        case wrongNode = "data_dir_of_another_node"
        case corrupt = "corrupt"
        case closed = "closed"
        case storage = "storage"
        /// The path is not a directory that can be created or used.
        case unusablePath = "unusable_path"
        /// This user may not read the directory or its files.
        case permissionDenied = "permission_denied"
        /// The log reached its size limit or its file system is full: writes are refused until
        /// there is room again; reads go on.
        case logFull = "log_full"
    }

    public var code: Code
    public var path: String
    public var message: String

    public init(_ code: Code, path: String, _ message: String) {
        self.code = code
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}
