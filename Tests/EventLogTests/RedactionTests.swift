import Testing

@testable import EventLog

@Suite struct RedactionTests {
    @Test func secrets_areRedacted_envReferencesAndKeyMetadataAreNot() throws {
        let document = """
            {"providers": {"openai": {"keys": [{"name": "gpt-key-1", "value": "sk-live-secret", "models": ["gpt-4o"]},
                                               {"name": "gpt-key-2", "value": "env.OPENAI_KEY", "models": ["gpt-4o"]}]}},
             "virtual_keys": [{"name": "team-a", "value": "sk-team-a"}],
             "admin": {"token": "admin-secret", "signing_key": "env.OPERATOR"},
             "cluster": {"encryption": {"keys": ["c2VjcmV0LWNsdXN0ZXIta2V5"]}}}
            """
        let text = Redaction.redactDocument(Array(document.utf8)).rendered()
        for secret in ["sk-live-secret", "sk-team-a", "admin-secret", "c2VjcmV0LWNsdXN0ZXIta2V5"] {
            #expect(!text.contains(secret), "\(secret) leaked: \(text)")
        }
        for visible in ["env.OPENAI_KEY", "env.OPERATOR", "gpt-key-1", "gpt-4o", "team-a"] {
            #expect(text.contains(visible), "\(visible) was hidden: \(text)")
        }
    }
}
