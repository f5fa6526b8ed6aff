// swift-tools-version:6.1
import PackageDescription

/// Warnings in our own targets are errors in CI (`CI=true`); dependencies keep their own settings.
let strict: [SwiftSetting] =
    Context.environment["CI"] == "true" || Context.environment["BIFROST_STRICT"] == "1"
    ? [.unsafeFlags(["-warnings-as-errors"])] : []

/// The request path's targets (the gateway, the event log it appends to, the node): a
/// nonisolated async function runs on its caller's executor (SE-0461), so a request's calls stay
/// on its connection's event loop instead of hopping off it and back at every call.
/// Replication, off the request path, keeps the default.
let runtime: [SwiftSetting] = strict + [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]

let package = Package(
    name: "bifrost",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "EventLog", targets: ["EventLog"]),
        .library(name: "Replication", targets: ["Replication"]),
        .library(name: "Gateway", targets: ["Gateway"]),
        .executable(name: "bifrost", targets: ["bifrost"]),
        .executable(name: "bifrost-dump", targets: ["bifrost-dump"]),
        .executable(name: "bifrost-replay", targets: ["bifrost-replay"]),
        .executable(name: "bifrost-bench", targets: ["bifrost-bench"]),
        .executable(name: "bifrost-sim", targets: ["bifrost-sim"]),
        .executable(name: "bifrost-mock-provider", targets: ["bifrost-mock-provider"]),
        .executable(name: "bifrost-config", targets: ["bifrost-config"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLMDB",
            pkgConfig: "lmdb",
            providers: [.apt(["liblmdb-dev"])]
        ),
        .target(
            name: "EventLog",
            dependencies: [
                "CLMDB",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: runtime
        ),
        .target(
            name: "Replication",
            dependencies: [
                "EventLog",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "Gateway",
            dependencies: [
                "EventLog",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: runtime
        ),
        .executableTarget(
            name: "bifrost",
            dependencies: [
                "EventLog",
                "Replication",
                "Gateway",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: runtime
        ),
        .target(
            name: "ToolSupport",
            dependencies: [
                "EventLog",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "tools/ToolSupport",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "bifrost-dump",
            dependencies: [
                "EventLog", "ToolSupport", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "tools/bifrost-dump",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "bifrost-replay",
            dependencies: [
                "EventLog", "ToolSupport", .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "tools/bifrost-replay",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "bifrost-bench",
            dependencies: [
                "CLMDB", "EventLog", "Replication", "ToolSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "tools/bifrost-bench",
            swiftSettings: strict
        ),
        .target(
            name: "ClusterSimulation",
            dependencies: ["Replication", "EventLog", .product(name: "Crypto", package: "swift-crypto")],
            path: "tools/ClusterSimulation",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "bifrost-sim",
            dependencies: [
                "ClusterSimulation", "Replication", "EventLog",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "tools/bifrost-sim",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "bifrost-mock-provider",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "tools/bifrost-mock-provider",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "bifrost-config",
            dependencies: [
                "EventLog", "Gateway",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "tools/bifrost-config",
            swiftSettings: strict
        ),
        .testTarget(
            name: "EventLogTests",
            dependencies: ["EventLog", "ToolSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ReplicationTests",
            dependencies: [
                "Replication",
                "ClusterSimulation",
                "EventLog",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ClusterTests",
            dependencies: [],
            swiftSettings: strict
        ),
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "Gateway", "EventLog", .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
