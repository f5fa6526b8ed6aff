import ArgumentParser
import Crypto
import EventLog
import Foundation
import Gateway

@main
struct BifrostConfigTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bifrost-config",
        abstract: "Operator keys and signed configuration documents for a Bifrost cluster.",
        discussion: """
            Nodes apply a `config.updated` event only when it is signed by an Ed25519 key listed in \
            their `admin.trusted_keys`. Create an operator key with `keygen`, put its public half in \
            every node's config, then sign documents with `sign` and send them with \
            `PUT /admin/config`, or let the node sign with its own `admin.signing_key`.
            """,
        subcommands: [Keygen.self, Sign.self, Verify.self])
}

/// The signed form `PUT /admin/config` accepts: the exact signed text and its signature.
struct SignedDocument: Codable {
    var document: String
    var signer_key: String
    var signature: String
}

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a new operator key pair (base64 raw Ed25519).",
        discussion: """
            The private key goes to whoever signs (an operator's BIFROST_OPERATOR_KEY, or a node's \
            admin.signing_key as env.NAME); the public key goes to every node's admin.trusted_keys.
            """)

    @Flag(help: "Print JSON {\"private_key\",\"public_key\"} instead of two labelled lines.")
    var json = false

    func run() {
        let key = Curve25519.Signing.PrivateKey()
        let privateKey = key.rawRepresentation.base64EncodedString()
        let publicKey = key.publicKey.rawRepresentation.base64EncodedString()
        if json {
            print(#"{"private_key":"\#(privateKey)","public_key":"\#(publicKey)"}"#)
        } else {
            print("private_key: \(privateKey)")
            print("public_key:  \(publicKey)")
        }
    }
}

struct Sign: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Validate a configuration document and sign it.",
        discussion: """
            Prints the signed document as JSON {"document","signer_key","signature"}, ready for \
            `curl -X PUT --data @signed.json …/admin/config`. The document is validated first: a \
            document nodes would refuse is not signed.
            """)

    @Argument(help: "The configuration JSON file ('-' for stdin).")
    var file: String

    @Option(help: "Environment variable holding the base64 private key.")
    var keyEnv = "BIFROST_OPERATOR_KEY"

    func run() throws {
        let bytes = try readInput(file)
        do {
            _ = try BifrostConfig.parse(bytes)
        } catch {
            throw ToolFailure("\(file): \(error)")
        }
        guard let encoded = ProcessInfo.processInfo.environment[keyEnv], !encoded.isEmpty else {
            throw ToolFailure("\(keyEnv) is not set; create a key with `bifrost-config keygen`")
        }
        guard let raw = Data(base64Encoded: encoded), raw.count == 32,
            let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw)
        else {
            throw ToolFailure("\(keyEnv) is not base64 of a 32-byte Ed25519 private key")
        }
        let update = try ConfigSignature.sign(document: bytes, author: "bifrost-config", privateKey: key)
        let signed = SignedDocument(
            document: String(decoding: bytes, as: UTF8.self),
            signer_key: Data(update.signerKey).base64EncodedString(),
            signature: Data(update.signature).base64EncodedString())
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: try encoder.encode(signed), as: UTF8.self))
    }
}

struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check a signed document's signature (and optionally that its signer is trusted).",
        discussion: "Exits 0 when valid, 1 otherwise, saying why.")

    @Argument(help: "The signed JSON file from `sign` ('-' for stdin).")
    var file: String

    @Option(name: .customLong("trusted-key"), help: "A base64 public key to require (repeatable).")
    var trustedKeys: [String] = []

    func run() throws {
        let bytes = try readInput(file)
        guard let signed = try? JSONDecoder().decode(SignedDocument.self, from: Data(bytes)) else {
            throw ToolFailure("\(file): expected {\"document\",\"signer_key\",\"signature\"} as printed by `sign`")
        }
        let update = ConfigUpdated(
            document: Array(signed.document.utf8), author: "",
            signerKey: Array(Data(base64Encoded: signed.signer_key) ?? Data()),
            signature: Array(Data(base64Encoded: signed.signature) ?? Data()))
        guard ConfigSignature.verify(update) else {
            print("invalid: the signature does not match the document and signer_key")
            throw ExitCode(1)
        }
        if !trustedKeys.isEmpty && !trustedKeys.contains(signed.signer_key) {
            print("untrusted: signed by \(signed.signer_key), which is not among the --trusted-key values")
            throw ExitCode(1)
        }
        print("valid: signed by \(signed.signer_key)")
    }
}

func readInput(_ path: String) throws -> [UInt8] {
    if path == "-" { return Array(FileHandle.standardInput.readDataToEndOfFile()) }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw ToolFailure("cannot read \(path)")
    }
    return Array(data)
}

/// A failure reported as `Error: <message>` without the usage text.
struct ToolFailure: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) { self.description = description }
}
