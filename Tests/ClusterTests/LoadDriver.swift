import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Steady client load against a URL: `rate` requests per second from `workers` concurrent
/// clients, until stopped. Counts every outcome a client would see.
final class LoadDriver: @unchecked Sendable {
    struct Outcome: Sendable {
        var ok = 0
        var statuses: [Int: Int] = [:]
        var transportErrors = 0
        var byNode: [String: Int] = [:]

        var failures: Int { statuses.filter { $0.key != 200 }.values.reduce(0, +) + transportErrors }
    }

    private let lock = NSLock()
    private var outcome = Outcome()
    private var stopping = false
    private var task: Task<Void, Never>?
    private let session: URLSession

    init() {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 15
        configuration.httpMaximumConnectionsPerHost = 64
        session = URLSession(configuration: configuration)
    }

    func start(url: String, token: String, body: String, rate: Int, workers: Int = 16) {
        let interval = Duration.nanoseconds(1_000_000_000 * Int64(workers) / Int64(max(1, rate)))
        task = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<workers {
                    group.addTask {
                        var next = ContinuousClock.now
                        while !self.lock.withLock({ self.stopping }) {
                            await self.one(url: url, token: token, body: body)
                            next += interval
                            if next > ContinuousClock.now { try? await Task.sleep(until: next, clock: .continuous) }
                        }
                    }
                }
            }
        }
    }

    private func one(url: String, token: String, body: String) async {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = "POST"
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(body.utf8)
        do {
            let (_, response) = try await session.data(for: request)
            let http = response as? HTTPURLResponse
            let status = http?.statusCode ?? 0
            let node = http?.value(forHTTPHeaderField: "x-bifrost-node") ?? "?"
            lock.withLock {
                outcome.statuses[status, default: 0] += 1
                if status == 200 {
                    outcome.ok += 1
                    outcome.byNode[node, default: 0] += 1
                }
            }
        } catch {
            lock.withLock { outcome.transportErrors += 1 }
        }
    }

    var snapshot: Outcome { lock.withLock { outcome } }

    /// Stops the load and returns what clients saw. Workers finish the request they are in
    /// rather than being cancelled: cancelling a task inside `URLSession.data(for:)` can deadlock
    /// swift-corelibs-foundation (the task's status lock against the session's queue).
    func stop() async -> Outcome {
        lock.withLock { stopping = true }
        await task?.value
        return snapshot
    }
}
