import EventLog
import NIOCore
import NIOHTTP1

extension GatewayEngine {
    static let maxResponseBytes = 64 << 20
    /// A response forwarded as it is is read for its usage only.
    static let usageOnly = JSONProjection.members(["usage": .whole])

    /// Whether an upstream answer goes to the client as a stream (else its body is read whole
    /// first and handed to `deliver`).
    static func relaysStream(_ response: UpstreamResponse, request: ClientRequest) -> Bool {
        request.stream && (200..<300).contains(response.status)
    }

    /// Sends an upstream answer to the client: whole JSON responses translated as needed, streams
    /// relayed event by event. Client errors from the provider (4xx other than 401/403/429) go
    /// back with their status. `body` is the answer's whole body, or why it could not be read;
    /// nil when the answer streams to the client (`relaysStream`).
    func deliver(
        _ response: UpstreamResponse, body: Result<ByteBuffer, any Error>?, request: ClientRequest,
        target: ModelTarget, upstreamAPI: WireAPI, callerRules: [LimitRule], targetRules: [LimitRule],
        record: inout RequestRecord, sent: ContinuousClock.Instant
    ) -> (FrontResponse, isStream: Bool) {
        let api = request.endpoint.api
        let ok = (200..<300).contains(response.status)
        record.attemptLatency = ContinuousClock.now - sent
        var headers = HTTPHeaders()
        headers.reserveCapacity(6)
        if ok && request.stream {
            headers.add(name: "content-type", value: "text/event-stream")
            headers.add(name: "cache-control", value: "no-cache")
        } else {
            headers.add(name: "content-type", value: "application/json")
        }
        headers.add(name: Self.nodeHeader, value: nodeName)
        for rule in callerRules + targetRules where rule.requestsPerWindow != nil {
            if let status = limitStatus(rule) { RateLimitHeaders.add(status, unit: .requests, to: &headers) }
            break
        }
        if Self.relaysStream(response, request: request) {
            let mode: StreamRelay.Mode =
                switch (upstreamAPI, api) {
                case (.openAI, .openAI): .openAI(clientWantsUsage: request.includeUsage)
                case (.anthropic, .anthropic): .anthropic
                case (.anthropic, .openAI): .anthropicToOpenAI(includeUsage: request.includeUsage)
                case (.openAI, .anthropic): .openAIToAnthropic
                }
            var initial = record
            initial.status = response.status
            let baseRecord = initial
            let body = response.body
            let rules = callerRules + targetRules
            let provider = target.provider
            let created = wallClock.nowMillis() / 1000
            let produce: @Sendable (FrontBodyWriter) async throws -> Void = { [self] writer in
                var streamRecord = baseRecord
                var relay = StreamRelay(mode: mode, model: target.model, createdSeconds: created)
                var parser = SSEParser()
                var outcome = UsageOutcome.success
                do {
                    for try await chunk in body {
                        var out: [UInt8] = []
                        for event in try parser.feed(chunk.readableBytesView) {
                            let hadContent = relay.sawContent
                            out += relay.relay(event)
                            if !hadContent && relay.sawContent {
                                metrics.timeToFirstToken(ContinuousClock.now - sent, provider: provider)
                            }
                        }
                        if !out.isEmpty { try await writer.write(ByteBuffer(bytes: out)) }
                    }
                    var tail: [UInt8] = []
                    if let last = parser.finish() { tail += relay.relay(last) }
                    tail += relay.finish()
                    if !tail.isEmpty { try await writer.write(ByteBuffer(bytes: tail)) }
                } catch {
                    // The client went away (the upstream request is cancelled with the body
                    // stream), or the provider broke the stream off.
                    outcome = Task.isCancelled || error is CancellationError ? .cancelled : .upstreamError
                }
                streamRecord.usage = relay.usage
                streamRecord.outcome = outcome
                streamRecord.upstreamTime += ContinuousClock.now - sent
                metrics.requestEnded()
                finish(request, rules: rules, record: streamRecord, started: sent)
            }
            record.status = response.status
            return (
                FrontResponse(
                    status: response.status, headers: headers, body: .produced(length: nil, produce: produce)),
                true
            )
        }
        let collected: ByteBuffer
        switch body {
        case .success(let buffer):
            collected = buffer
        case .failure(let error):
            record.upstreamTime += ContinuousClock.now - sent
            record.status = 502
            record.outcome = .upstreamError
            let failure = GatewayError.upstreamFailed(
                status: response.status, detail: "the response body broke off ([\(error)])")
            return (failure.frontResponse(api: api), false)
        case nil:
            return (GatewayError.internalError("the answer's body was not read").frontResponse(api: api), false)
        }
        let latency = ContinuousClock.now - sent
        record.upstreamTime += latency
        record.attemptLatency = latency
        metrics.upstreamLatency(latency, provider: target.provider)
        record.status = response.status
        guard ok else {
            let bytes = Array(collected.readableBytesView)
            record.outcome = .clientError
            if upstreamAPI == api {
                return (
                    FrontResponse(status: response.status, headers: headers, body: .whole(collected)),
                    isStream: false
                )
            }
            let message =
                (try? JSONValue(parsing: bytes))?["error"]?["message"]?.stringValue
                ?? String(decoding: bytes.prefix(200), as: UTF8.self)
            let error = GatewayError(
                status: response.status, type: "invalid_request_error",
                message: "the provider refused the request: \(message)")
            return (error.frontResponse(api: api), false)
        }
        if upstreamAPI == api {
            let usage = collected.withUnsafeReadableBytes { raw in
                try? JSONParser.parse(raw.bindMemory(to: UInt8.self), projection: Self.usageOnly, spans: false).value
            }
            if let usage { record.usage = Usage(response: usage, api: api) }
            return (
                FrontResponse(status: response.status, headers: headers, body: .whole(collected)),
                isStream: false
            )
        }
        guard let json = try? JSONValue(parsing: Array(collected.readableBytesView)) else {
            record.status = 502
            record.outcome = .upstreamError
            return (
                GatewayError.upstreamFailed(status: response.status, detail: "the response is not JSON").frontResponse(
                    api: api),
                isStream: false
            )
        }
        record.usage = Usage(response: json, api: upstreamAPI)
        let translated =
            api == .openAI
            ? Translate.messageToChatCompletion(json, nowSeconds: wallClock.nowMillis() / 1000)
            : Translate.chatCompletionToMessage(json)
        return (
            FrontResponse(
                status: response.status, headers: headers, body: .whole(ByteBuffer(bytes: translated.renderedBytes()))),
            isStream: false
        )
    }

    static let nodeHeader = "x-bifrost-node"

    /// Metrics, token accounting and the `usage.recorded` event of a finished request; `rules`
    /// are the caller's and the serving target's limit rules.
    func finish(_ request: ClientRequest, rules: [LimitRule], record: RequestRecord, started: ContinuousClock.Instant) {
        let total = ContinuousClock.now - started
        if !record.budgetHolds.isEmpty {
            admissions.limiter.withLock { limiter in for seq in record.budgetHolds { limiter.release(seq: seq) } }
        }
        metrics.overhead(max(.zero, total - record.upstreamTime))
        let target = record.target
        // Label values come from the configuration, never from what a client made up: a model
        // no provider serves is counted as `other`, so /metrics stays bounded by the config.
        let model = target?.model ?? (runtime.catalog.resolve(request.model) == nil ? "other" : request.model)
        metrics.requestFinished(
            provider: target?.provider ?? "none", model: model, key: target?.keyID ?? "none", status: record.status)
        guard let target else { return }
        metrics.tokens(
            input: record.usage.input, output: record.usage.output, provider: target.provider, model: target.model)
        let prices = runtime.prices
        let cost = prices.microUSD(record.usage, keyID: target.keyID, model: target.model)
        if let cost {
            metrics.cost(
                microUSD: cost, provider: target.provider, model: target.model, virtualKey: record.virtualKey ?? "none")
        } else if record.outcome == .success {
            metrics.unpriced(provider: target.provider, model: target.model)
        }
        let now = wallClock.nowMillis()
        let spendSeq = cost.flatMap { chargeBudgets(rules, micros: $0, nowMillis: now) }
        let tokens = UInt64(max(0, record.usage.input + record.usage.output))
        let tokenRules = rules.filter { $0.tokensPerWindow != nil }
        if tokens > 0 && !tokenRules.isEmpty {
            let localID = store.nodeID
            store.withViews { view in
                admissions.limiter.withLock {
                    $0.recordTokens(
                        rules: tokenRules, tokens: tokens, nowMillis: now,
                        counts: ViewCounts(view: view, local: localID))
                }
            }
        }
        // A request that ended on a failed attempt was recorded with that attempt.
        guard !(record.failedAttemptRecorded && record.outcome != .success) else { return }
        let latency = record.attemptLatency ?? total
        // The caller's virtual key is named even when it has no limits: spend is charged to it.
        var limitKeys = rules.map(\.key)
        if let name = record.virtualKey, !limitKeys.contains("vk:\(name)") { limitKeys.insert("vk:\(name)", at: 0) }
        recorder.record(
            .usageRecorded(
                UsageRecorded(
                    requestID: "", keyID: target.keyID, model: target.model, limitKeys: limitKeys,
                    windowStartMillis: now / 60_000 * 60_000, windowMillis: 60_000,
                    tokensIn: UInt32(clamping: record.usage.input), tokensOut: UInt32(clamping: record.usage.output),
                    latencyMicros: UInt32(clamping: latency.wholeMicroseconds), status: UInt16(clamping: record.status),
                    outcome: record.outcome, cacheReadTokens: UInt32(clamping: record.usage.cacheRead),
                    cacheWriteTokens: UInt32(clamping: record.usage.cacheWrite),
                    reasoningTokens: UInt32(clamping: record.usage.reasoning), costMicros: cost,
                    priceVersion: cost == nil ? "" : prices.version)), seq: spendSeq)
    }

    /// Charges a finished request's cost to the budgets among its rules, and publishes what is
    /// left of the virtual key's; returns the limiter sequence its usage event carries when
    /// peers must confirm the spend.
    func chargeBudgets(_ rules: [LimitRule], micros: UInt64, nowMillis: UInt64) -> UInt64? {
        let budgeted = rules.filter { $0.budget != nil }
        guard !budgeted.isEmpty else { return nil }
        let live = max(1, cluster.liveNodeCount)
        let known = max(live, cluster.knownNodeCount)
        let localID = store.nodeID
        let (seq, remaining) = store.withViews { view in
            admissions.limiter.withLock { limiter in
                let counts = ViewCounts(view: view, local: localID)
                let seq = limiter.recordSpend(
                    rules: budgeted, micros: micros, nowMillis: nowMillis, liveNodes: live, knownNodes: known,
                    counts: counts)
                let remaining = budgeted.filter { $0.key.hasPrefix("vk:") }.compactMap { rule in
                    limiter.budgetStatus(rule: rule, nowMillis: nowMillis, counts: counts).map { (rule.key, $0) }
                }
                return (seq, remaining)
            }
        }
        for (key, status) in remaining { metrics.budgetRemaining(virtualKey: String(key.dropFirst(3)), status) }
        return seq
    }
}
