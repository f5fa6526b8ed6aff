import EventLog

/// One way to serve a model: a provider key and the model name the provider expects.
public struct ModelTarget: Hashable, Sendable {
    /// The provider entry's name in `providers`.
    public var provider: String
    public var type: BifrostConfig.ProviderType
    /// The model-key id.
    public var keyID: String
    /// The model as the provider names it.
    public var model: String

    public init(provider: String, type: BifrostConfig.ProviderType, keyID: String, model: String) {
        self.provider = provider
        self.type = type
        self.keyID = keyID
        self.model = model
    }
}

/// Which provider keys serve which model, from the `providers` section.
///
/// A client model `gpt-4o-mini` resolves to every key listing it, across providers;
/// `openai/gpt-4o-mini` to the keys of provider `openai` only.
public struct Catalog: Sendable {
    public let providers: [String: BifrostConfig.Provider]
    /// Bare model name → the keys serving it, in config order.
    public let byModel: [String: [ModelTarget]]
    /// Key id → its provider entry and config.
    public let keys: [String: (provider: String, key: BifrostConfig.ProviderKey)]

    public init(_ providers: [BifrostConfig.Provider]) {
        var byName: [String: BifrostConfig.Provider] = [:]
        var byModel: [String: [ModelTarget]] = [:]
        var keys: [String: (provider: String, key: BifrostConfig.ProviderKey)] = [:]
        for provider in providers {
            byName[provider.name] = provider
            for key in provider.keys {
                keys[key.id] = (provider.name, key)
                for model in key.models {
                    byModel[model, default: []].append(
                        ModelTarget(provider: provider.name, type: provider.type, keyID: key.id, model: model))
                }
            }
        }
        self.providers = byName
        self.byModel = byModel
        self.keys = keys
    }

    /// A model as the client named it, resolved to the keys that may serve it.
    public struct Resolution: Sendable, Equatable {
        /// The name the router keeps its rotation under (`gpt-4o-mini` or `openai/gpt-4o-mini`).
        public var routeName: String
        public var targets: [ModelTarget]
    }

    /// Resolves a client's model name; nil when no key serves it.
    public func resolve(_ name: String) -> Resolution? {
        if let targets = byModel[name] { return Resolution(routeName: name, targets: targets) }
        guard let slash = name.firstIndex(of: "/") else { return nil }
        let provider = String(name[..<slash])
        let model = String(name[name.index(after: slash)...])
        guard providers[provider] != nil, let all = byModel[model] else { return nil }
        let targets = all.filter { $0.provider == provider }
        return targets.isEmpty ? nil : Resolution(routeName: name, targets: targets)
    }

    /// Every model a client may name, with the provider entries serving it, sorted.
    public var models: [(id: String, providers: [String])] {
        byModel.keys.sorted().map { model in
            var seen: [String] = []
            for t in byModel[model]! where !seen.contains(t.provider) { seen.append(t.provider) }
            return (model, seen)
        }
    }
}

/// Model patterns of a virtual key: `*`, an exact name, `provider/model`, or `provider/*`.
public struct ModelPattern: Hashable, Sendable {
    public let text: String

    public init(_ text: String) { self.text = text }

    /// Whether a request for `requested` served by `target` is allowed.
    public func allows(requested: String, target: ModelTarget) -> Bool {
        if text == "*" || text == requested || text == target.model { return true }
        if text == "\(target.provider)/\(target.model)" || text == "\(target.provider)/*" { return true }
        return false
    }
}
