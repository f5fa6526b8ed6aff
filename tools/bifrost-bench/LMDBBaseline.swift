import CLMDB
import EventLog
import Foundation

/// The event store's append loop written directly against LMDB, with nothing of the store:
/// no insertion log, digests, watermarks, views or hashing. `bifrost-bench eventlog` runs it in
/// the same process and run as the store, so the ratio between the two is the store's price.
enum LMDBBaseline {
    /// Puts each encoded event under its id with `MDB_APPEND`, one transaction per batch, with the
    /// store's environment flags; returns the time spent. Events must be in key order.
    static func appendLoop(directory: String, batches: [[[UInt8]]]) throws -> Duration {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var env: OpaquePointer?
        try check(mdb_env_create(&env), "mdb_env_create")
        defer { mdb_env_close(env) }
        try check(mdb_env_set_mapsize(env, 16 << 30), "mdb_env_set_mapsize")
        try check(mdb_env_set_maxdbs(env, 4), "mdb_env_set_maxdbs")
        try check(
            mdb_env_open(env, directory, UInt32(MDB_NOTLS | MDB_NORDAHEAD | MDB_NOMETASYNC), 0o644), "mdb_env_open")
        var txn: OpaquePointer?
        var dbi = MDB_dbi()
        try check(mdb_txn_begin(env, nil, 0, &txn), "mdb_txn_begin")
        try check(mdb_dbi_open(txn, "events", UInt32(MDB_CREATE), &dbi), "mdb_dbi_open")
        try check(mdb_txn_commit(txn), "mdb_txn_commit")
        let start = ContinuousClock.now
        for batch in batches {
            try check(mdb_txn_begin(env, nil, 0, &txn), "mdb_txn_begin")
            for value in batch {
                let rc = value.withUnsafeBytes { v -> Int32 in
                    // The key is the id inside the encoded event (bytes 2..<18), as in the store.
                    var key = MDB_val(
                        mv_size: EventID.byteCount, mv_data: UnsafeMutableRawPointer(mutating: v.baseAddress! + 2))
                    var val = MDB_val(mv_size: v.count, mv_data: UnsafeMutableRawPointer(mutating: v.baseAddress))
                    return mdb_put(txn, dbi, &key, &val, UInt32(MDB_APPEND))
                }
                if rc != MDB_SUCCESS {
                    mdb_txn_abort(txn)
                    try check(rc, "mdb_put")
                }
            }
            try check(mdb_txn_commit(txn), "mdb_txn_commit")
        }
        return ContinuousClock.now - start
    }
}

/// An LMDB call of the baseline loop failed.
struct LMDBBaselineError: Error, CustomStringConvertible {
    var operation: String
    var code: Int32
    var description: String { "\(operation) failed: \(String(cString: mdb_strerror(code))) (\(code))" }
}

private func check(_ rc: Int32, _ operation: String) throws {
    guard rc == MDB_SUCCESS else { throw LMDBBaselineError(operation: operation, code: rc) }
}
