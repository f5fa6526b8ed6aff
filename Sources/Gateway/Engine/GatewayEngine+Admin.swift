import Crypto
import EventLog
import Foundation

extension GatewayEngine {
    /// Top-level config blocks a `config.updated` may not carry.
    static let nodeLocalBlocks = ["admin", "cluster"]

    /// Validates a `PUT /admin/config` body and returns the signed event payload to write.
    ///
    /// The body is a configuration document, or `{"document","signer_key","signature"}`. The
    /// document must parse, apply on this node (every `env.NAME` it names resolves), and be
    /// signed by a key in `admin.trusted_keys`; unsigned documents are signed with this node's
    /// `admin.signing_key`.
    func prepareConfigUpdate(_ body: [UInt8]) throws(GatewayError) -> ConfigUpdated {
        var document = body
        var signed: ConfigUpdated?
        if let envelope = try? JSONValue.parse(body), case .object(let fields) = envelope,
            case .string(let text)? = fields["document"]
        {
            guard case .string(let signer)? = fields["signer_key"], case .string(let signature)? = fields["signature"],
                let signerKey = Data(base64Encoded: signer), let signatureBytes = Data(base64Encoded: signature)
            else {
                throw .invalidField(
                    "signature", "a signed document needs base64 \"signer_key\" and \"signature\" beside \"document\"")
            }
            document = Array(text.utf8)
            signed = ConfigUpdated(
                document: document, author: "operator", signerKey: Array(signerKey), signature: Array(signatureBytes))
        }
        // `cluster` and `admin` stay each node's own (its file and environment): a log event must
        // never say which keys a node trusts, or carry its token.
        if case .object(let fields)? = try? JSONValue.parse(document) {
            for block in Self.nodeLocalBlocks where fields[block] != nil {
                throw .invalidField(
                    block,
                    "a configuration update cannot carry the \(block) block, which stays each node's own "
                        + "(its config file and environment); remove it from the document")
            }
        }
        // Secrets given literally are sealed before the document is signed and logged; a
        // document signed elsewhere cannot be changed, so it may not carry any.
        document = try sealSecrets(in: document, signed: signed != nil)
        do {
            _ = try RuntimeConfig.merging(
                document: document, into: baseConfig, sourceEvent: .init(hlc: .zero, origin: store.nodeID),
                sealer: sealer)
        } catch {
            throw .invalidField(error.path, "the configuration is invalid: \(error.description)")
        }
        let update: ConfigUpdated
        if let signed {
            guard ConfigSignature.verify(signed) else {
                throw GatewayError(
                    status: 400, type: "invalid_request_error",
                    message: "the signature does not match the document and signer_key", param: "signature")
            }
            update = signed
        } else {
            guard let encoded = baseConfig.admin.signingKey?.resolve(), let raw = Data(base64Encoded: encoded),
                let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw)
            else {
                throw GatewayError(
                    status: 400, type: "invalid_request_error",
                    message:
                        "the document is unsigned and this node has no usable admin.signing_key; sign it with `bifrost-config sign` or configure a signing key",
                    param: "signature")
            }
            guard let signedHere = try? ConfigSignature.sign(document: document, author: nodeName, privateKey: key)
            else {
                throw .internalError("cannot sign the document")
            }
            update = signedHere
        }
        let trusted = Set(baseConfig.admin.trustedKeys.compactMap { Data(base64Encoded: $0).map(Array.init) })
        guard trusted.contains(update.signerKey) else {
            throw GatewayError(
                status: 403, type: "permission_error",
                message:
                    "the signer \(Data(update.signerKey).base64EncodedString()) is not in admin.trusted_keys; every node would ignore this update"
            )
        }
        return update
    }

    /// Validates a `PUT /admin/keys/{key_id}/weight` body.
    func prepareWeightChange(keyID: String, body: [UInt8]) throws(GatewayError) -> WeightChanged {
        guard runtime.catalog.keys[keyID] != nil else {
            throw GatewayError(
                status: 404, type: "not_found_error", message: "no provider key \"\(keyID)\" in the configuration",
                param: "key_id")
        }
        guard let value = try? JSONValue.parse(body), case .object = value else {
            throw .malformedJSON("expected {\"weight\": number, \"reason\": \"…\"}")
        }
        // As strict as a config document: unknown fields are refused, not ignored.
        let weight: Double
        let reason: String
        do {
            var fields = try ConfigReader(value, path: "")
            guard let number = try fields.double("weight", in: 0...1_000_000) else {
                throw GatewayError.missingField("weight")
            }
            weight = number
            reason = try fields.string("reason") ?? "operator"
            try fields.finish()
        } catch let error as ConfigError {
            throw .invalidField(error.path, error.message)
        } catch let error as GatewayError {
            throw error
        } catch {
            throw .internalError("\(error)")
        }
        let old = routing.withLock { $0.weights[keyID] } ?? 0
        return WeightChanged(
            keyID: keyID, oldWeight: old, newWeight: weight, reason: reason, actor: "operator:\(nodeName)")
    }

    /// Waits until every live peer acknowledged this node's events through `id`.
    /// It sleeps on the acknowledgement changes Replication publishes.
    func waitUntilReplicated(_ id: EventID, timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while true {
            let seen = acknowledgements.generation
            if cluster.liveNodeCount <= 1 { return true }
            if let acked = cluster.ownEventsAcknowledgedThrough(), acked >= id.hlc { return true }
            guard await acknowledgements.wait(after: seen, until: deadline) else { return false }
        }
    }

    /// `document` with every literal provider-key value and virtual-key token sealed with the
    /// cluster keyring. Refused, naming the field, when there is nothing to seal with or the
    /// document is signed already.
    func sealSecrets(in document: [UInt8], signed: Bool) throws(GatewayError) -> [UInt8] {
        guard case .object(var fields)? = try? JSONValue.parse(document) else { return document }
        var sealedAny = false
        func seal(_ value: inout JSONValue, path: String) throws(GatewayError) {
            guard case .string(let text) = value, case .literal = SecretValue(text), !text.isEmpty else { return }
            guard !signed, let sealer else {
                let fix =
                    signed
                    ? "a signed document cannot have its secrets sealed on the way in; sign one that refers to them as \"env.NAME\", or PUT it unsigned to a clustered node, which seals them"
                    : "this node has no cluster key to seal it with; refer to the secret as \"env.NAME\" or give the node a cluster key (BIFROST_CLUSTER_KEY)"
                throw .invalidField(path, "a literal secret would be stored in the log in plain text: \(fix)")
            }
            value = .string(sealer.seal(text))
            sealedAny = true
        }
        /// The array `list` with the `value` of each of its objects sealed (`path[i].value`).
        func sealEach(_ list: JSONValue?, path: String) throws(GatewayError) -> JSONValue? {
            guard case .array(var items)? = list else { return list }
            for i in items.indices {
                guard case .object(var item) = items[i], var value = item["value"] else { continue }
                try seal(&value, path: "\(path)[\(i)].value")
                item["value"] = value
                items[i] = .object(item)
            }
            return .array(items)
        }
        if case .object(var providers)? = fields["providers"] {
            for name in providers.keys.sorted() {
                guard case .object(var provider)? = providers[name] else { continue }
                provider["keys"] = try sealEach(provider["keys"], path: "providers.\(name).keys")
                providers[name] = .object(provider)
            }
            fields["providers"] = .object(providers)
        }
        fields["virtual_keys"] = try sealEach(fields["virtual_keys"], path: "virtual_keys")
        return sealedAny ? JSONValue.object(fields).renderedBytes() : document
    }
}
