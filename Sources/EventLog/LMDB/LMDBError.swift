import CLMDB

/// A failed LMDB call: the return code, what we were doing, and LMDB's own message.
public struct LMDBError: Error, Equatable, Sendable, CustomStringConvertible {
    public var code: Int32
    public var operation: String
    public var message: String

    public init(code: Int32, operation: String) {
        self.code = code
        self.operation = operation
        self.message = String(cString: mdb_strerror(code))
    }

    public var isMapFull: Bool { code == MDB_MAP_FULL }
    public var isNotFound: Bool { code == MDB_NOTFOUND }
    public var isKeyExists: Bool { code == MDB_KEYEXIST }

    public var description: String { "LMDB \(operation) failed: \(message) (code \(code))" }
}

/// Every LMDB return code goes through here (the `syscall` helper idea of swift-nio's
/// `System.swift`): zero is success, anything else throws with LMDB's message.
@inline(__always)
func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(LMDBError) {
    if rc != MDB_SUCCESS { throw LMDBError(code: rc, operation: operation()) }
}
