import CLMDB

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One LMDB environment (a data directory holding `data.mdb` and `lock.mdb`).
///
/// Access is scoped: `read { txn in … }` and `write { txn in … }`; transaction handles never
/// escape the closure. Opened with `MDB_NOTLS` so a read transaction is not tied to the OS thread
/// that began it (Swift tasks hop threads), and with `MDB_NOMETASYNC`: "This optimization
/// maintains database integrity, but a system crash may undo the last committed transaction"
/// (lmdb.h). `sync()` after a commit makes it durable; that is the synced durability class.
///
/// The map is grown on `MDB_MAP_FULL`. `mdb_env_set_mapsize` "may be called … if no
/// transactions are active in this process", so every transaction holds `mapLock` shared and
/// growth takes it exclusively.
public final class LMDBEnvironment: @unchecked Sendable {
    public let path: String
    public let readOnly: Bool
    let env: OpaquePointer
    private let mapLock: UnsafeMutablePointer<pthread_rwlock_t>
    public private(set) var mapSizeBytes: Int

    public struct Options: Sendable {
        public var mapSizeBytes: Int = 16 << 30
        public var maxDatabases: UInt32 = 16
        public var maxReaders: UInt32 = 512
        public var readOnly: Bool = false
        public init() {}
    }

    public init(path: String, options: Options = Options()) throws {
        self.path = path
        self.readOnly = options.readOnly
        var env: OpaquePointer?
        try check(mdb_env_create(&env), "mdb_env_create")
        guard let env else { throw LMDBError(code: ENOMEM, operation: "mdb_env_create") }
        self.env = env
        mapLock = .allocate(capacity: 1)
        pthread_rwlock_init(mapLock, nil)
        mapSizeBytes = options.mapSizeBytes
        do {
            try check(mdb_env_set_maxdbs(env, MDB_dbi(options.maxDatabases)), "mdb_env_set_maxdbs")
            try check(mdb_env_set_maxreaders(env, options.maxReaders), "mdb_env_set_maxreaders")
            if !options.readOnly {
                try check(mdb_env_set_mapsize(env, options.mapSizeBytes), "mdb_env_set_mapsize")
            }
            var flags = UInt32(MDB_NOTLS | MDB_NORDAHEAD)
            flags |= options.readOnly ? UInt32(MDB_RDONLY) : UInt32(MDB_NOMETASYNC)
            try check(mdb_env_open(env, path, flags, 0o600), "mdb_env_open(\(path))")
            var info = MDB_envinfo()
            mdb_env_info(env, &info)
            mapSizeBytes = info.me_mapsize
        } catch {
            // Every stored property is set, so deinit runs and closes the environment.
            throw error
        }
    }

    deinit {
        mdb_env_close(env)
        pthread_rwlock_destroy(mapLock)
        mapLock.deallocate()
    }

    /// Opens (and with `create`, creates) a named database. Named databases must be opened before
    /// concurrent use; the store does it once at start-up.
    public func openDatabase(_ name: String, create: Bool) throws -> LMDBDatabase {
        // Committed even when read-only: a handle opened in an aborted transaction is closed again.
        try withTransaction(readOnly: !create, commit: true) { (txn: LMDBTransaction) in
            var dbi = MDB_dbi()
            try check(mdb_dbi_open(txn.txn, name, create ? UInt32(MDB_CREATE) : 0, &dbi), "mdb_dbi_open(\(name))")
            return LMDBDatabase(dbi: dbi, name: name)
        }
    }

    /// Runs `body` in a read-only transaction. Short: readers pin old pages until they end.
    public func read<R>(_ body: (LMDBTransaction) throws -> R) throws -> R {
        try withTransaction(readOnly: true, body)
    }

    /// Runs `body` in a write transaction and commits it if `body` returns. Call only from the one
    /// writer thread (LMDB allows one write transaction at a time; with `MDB_NOTLS` it must
    /// still stay on the thread that began it).
    @discardableResult
    public func write<R>(_ body: (LMDBTransaction) throws -> R) throws -> R {
        precondition(!readOnly, "write transaction on read-only environment \(path)")
        return try withTransaction(readOnly: false, body)
    }

    private func withTransaction<R, E: Error>(
        readOnly: Bool, commit: Bool = false, _ body: (LMDBTransaction) throws(E) -> R
    ) throws -> R {
        pthread_rwlock_rdlock(mapLock)
        defer { pthread_rwlock_unlock(mapLock) }
        var txn: OpaquePointer?
        var rc = mdb_txn_begin(env, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txn)
        if rc == MDB_MAP_RESIZED {
            // Another process grew the map: adopt its size ("call with a size of zero").
            try check(mdb_env_set_mapsize(env, 0), "mdb_env_set_mapsize(0)")
            rc = mdb_txn_begin(env, nil, readOnly ? UInt32(MDB_RDONLY) : 0, &txn)
        }
        try check(rc, readOnly ? "mdb_txn_begin(read)" : "mdb_txn_begin(write)")
        let handle = LMDBTransaction(txn: txn!)
        let result: R
        do {
            result = try body(handle)
        } catch {
            mdb_txn_abort(txn)
            throw error
        }
        if readOnly && !commit {
            mdb_txn_abort(txn)
        } else {
            // A failed commit has already freed the transaction: never abort it afterwards.
            try check(mdb_txn_commit(txn), "mdb_txn_commit")
        }
        return result
    }

    /// Doubles the map (or grows it to `atLeast`). Waits for this process's transactions to end.
    public func growMap(atLeast: Int = 0) throws {
        pthread_rwlock_wrlock(mapLock)
        defer { pthread_rwlock_unlock(mapLock) }
        let newSize = Swift.max(mapSizeBytes * 2, atLeast)
        try check(mdb_env_set_mapsize(env, newSize), "mdb_env_set_mapsize(\(newSize))")
        mapSizeBytes = newSize
    }

    /// Flushes data and meta pages to disk (`mdb_env_sync(env, 1)`).
    public func sync() throws {
        try check(mdb_env_sync(env, 1), "mdb_env_sync")
    }

    /// Bytes used by the data file's pages in the current snapshot.
    public func usedBytes() -> Int {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        mdb_env_info(env, &info)
        mdb_env_stat(env, &stat)
        return (info.me_last_pgno + 1) * Int(stat.ms_psize)
    }

    /// Bytes of the data file's pages that hold data: `usedBytes()` less the pages on LMDB's free
    /// list, which later transactions reuse before the file grows (what `mdb_stat -f` counts).
    public func liveBytes() throws -> Int {
        var stat = MDB_stat()
        mdb_env_stat(env, &stat)
        let used = usedBytes()
        let free = try read { txn in try txn.freePages() }
        return Swift.max(0, used - free * Int(stat.ms_psize))
    }
}

/// A named database handle (`MDB_dbi`), valid for the environment's lifetime.
public struct LMDBDatabase: Sendable {
    let dbi: MDB_dbi
    public let name: String
}

/// A transaction handle, valid only inside the closure it was passed to.
public struct LMDBTransaction {
    let txn: OpaquePointer

    /// The value for `key`, or nil. The buffer points into the map and is valid until the
    /// transaction ends.
    public func get(_ db: LMDBDatabase, key: UnsafeRawBufferPointer) throws -> UnsafeRawBufferPointer? {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val()
        let rc = mdb_get(txn, db.dbi, &k, &v)
        if rc == MDB_NOTFOUND { return nil }
        try check(rc, "mdb_get(\(db.name))")
        return UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
    }

    public func get(_ db: LMDBDatabase, key: [UInt8]) throws -> [UInt8]? {
        try key.withUnsafeBytes { (k) -> [UInt8]? in
            try get(db, key: k).map { Array($0) }
        }
    }

    /// Stores `value` under `key`. Returns false when `flags` contains `MDB_NOOVERWRITE` (or
    /// `MDB_APPEND` was refused) because the key exists.
    @discardableResult
    public func put(
        _ db: LMDBDatabase, key: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer, flags: Int32 = 0
    )
        throws -> Bool
    {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
        let rc = mdb_put(txn, db.dbi, &k, &v, UInt32(bitPattern: flags))
        if rc == MDB_KEYEXIST { return false }
        try check(rc, "mdb_put(\(db.name))")
        return true
    }

    @discardableResult
    public func put(_ db: LMDBDatabase, key: [UInt8], value: [UInt8], flags: Int32 = 0) throws -> Bool {
        try key.withUnsafeBytes { (k) -> Bool in
            try value.withUnsafeBytes { (v) -> Bool in try put(db, key: k, value: v, flags: flags) }
        }
    }

    /// Deletes `key`; returns false when it was not there.
    @discardableResult
    public func delete(_ db: LMDBDatabase, key: UnsafeRawBufferPointer) throws -> Bool {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        let rc = mdb_del(txn, db.dbi, &k, nil)
        if rc == MDB_NOTFOUND { return false }
        try check(rc, "mdb_del(\(db.name))")
        return true
    }

    @discardableResult
    public func delete(_ db: LMDBDatabase, key: [UInt8]) throws -> Bool {
        try key.withUnsafeBytes { (k) -> Bool in try delete(db, key: k) }
    }

    /// Number of entries in `db`.
    public func count(_ db: LMDBDatabase) throws -> Int {
        var stat = MDB_stat()
        try check(mdb_stat(txn, db.dbi, &stat), "mdb_stat(\(db.name))")
        return stat.ms_entries
    }

    /// Walks keys in order from the first key ≥ `start` (or the first key), calling `body` with
    /// key and value until it returns false. Buffers are valid only during the call.
    public func scan(
        _ db: LMDBDatabase, from start: [UInt8]? = nil, reverse: Bool = false,
        _ body: (UnsafeRawBufferPointer, UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, db.dbi, &cursor), "mdb_cursor_open(\(db.name))")
        defer { mdb_cursor_close(cursor) }
        var k = MDB_val()
        var v = MDB_val()
        var rc: Int32
        if let start {
            rc = start.withUnsafeBytes { s in
                k = MDB_val(mv_size: s.count, mv_data: UnsafeMutableRawPointer(mutating: s.baseAddress))
                return mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
            }
            if reverse {
                if rc == MDB_NOTFOUND {
                    rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST)
                } else if rc == MDB_SUCCESS {
                    // SET_RANGE found the first key ≥ start; a reverse walk starts at the last key ≤ start.
                    let exact = start.withUnsafeBytes { s in
                        s.count == k.mv_size && memcmp(s.baseAddress!, k.mv_data, s.count) == 0
                    }
                    if !exact { rc = mdb_cursor_get(cursor, &k, &v, MDB_PREV) }
                }
            }
        } else {
            rc = mdb_cursor_get(cursor, &k, &v, reverse ? MDB_LAST : MDB_FIRST)
        }
        let step = reverse ? MDB_PREV : MDB_NEXT
        while rc == MDB_SUCCESS {
            let key = UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size)
            let value = UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size)
            if try !body(key, value) { return }
            rc = mdb_cursor_get(cursor, &k, &v, step)
        }
        if rc != MDB_NOTFOUND { try check(rc, "mdb_cursor_get(\(db.name))") }
    }

    /// Pages on the free list: each record of LMDB's free database (dbi 0) is an ID list whose
    /// first word is its length.
    func freePages() throws -> Int {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, 0, &cursor), "mdb_cursor_open(free list)")
        defer { mdb_cursor_close(cursor) }
        var k = MDB_val()
        var v = MDB_val()
        var pages = 0
        var rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
        while rc == MDB_SUCCESS {
            if v.mv_size >= MemoryLayout<Int>.size, let data = v.mv_data {
                pages += data.loadUnaligned(as: Int.self)
            }
            rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
        }
        if rc != MDB_NOTFOUND { try check(rc, "mdb_cursor_get(free list)") }
        return pages
    }

    /// The last key of `db`, if any.
    public func lastKey(_ db: LMDBDatabase) throws -> [UInt8]? {
        var result: [UInt8]?
        try scan(db, reverse: true) { key, _ in
            result = Array(key)
            return false
        }
        return result
    }

    /// Removes every entry of `db` whose key is < `end`.
    public func deleteAll(_ db: LMDBDatabase, below end: [UInt8]) throws {
        var cursor: OpaquePointer?
        try check(mdb_cursor_open(txn, db.dbi, &cursor), "mdb_cursor_open(\(db.name))")
        defer { mdb_cursor_close(cursor) }
        var k = MDB_val()
        var v = MDB_val()
        var rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST)
        while rc == MDB_SUCCESS {
            let below = end.withUnsafeBytes { e in
                let n = Swift.min(e.count, k.mv_size)
                let c = memcmp(k.mv_data, e.baseAddress!, n)
                return c < 0 || (c == 0 && k.mv_size < e.count)
            }
            if !below { break }
            try check(mdb_cursor_del(cursor, 0), "mdb_cursor_del(\(db.name))")
            // After mdb_cursor_del, MDB_NEXT yields the entry that followed the deleted one.
            rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)
        }
        if rc != MDB_SUCCESS && rc != MDB_NOTFOUND { try check(rc, "mdb_cursor_get(\(db.name))") }
    }
}
