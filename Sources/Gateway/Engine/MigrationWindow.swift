/// Migrations and requests over the last minute, per second, for `request_migration_rate`.
struct MigrationWindow {
    private var seconds: [(second: UInt64, requests: UInt64, migrations: UInt64)] = []

    mutating func record(nowMillis: UInt64, migrated: Bool) {
        let second = nowMillis / 1000
        if seconds.last?.second != second { seconds.append((second, 0, 0)) }
        seconds[seconds.count - 1].requests += 1
        if migrated { seconds[seconds.count - 1].migrations += 1 }
        seconds.removeAll { $0.second + 60 <= second }
    }

    /// Share of requests migrated in the last 60 s.
    func rate(nowMillis: UInt64) -> Double {
        let second = nowMillis / 1000
        let recent = seconds.filter { $0.second + 60 > second }
        let requests = recent.reduce(0) { $0 + $1.requests }
        return requests == 0 ? 0 : Double(recent.reduce(0) { $0 + $1.migrations }) / Double(requests)
    }
}
