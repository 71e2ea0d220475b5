// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "crynux-worker",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "crynux-worker", targets: ["crynux-worker"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // Wei amounts and uint256 ABI words do not fit in 64 bits.
        .package(url: "https://github.com/attaswift/BigInt", from: "6.0.0"),
        // Logs, metrics and the monitoring port (about 20 s of a clean build together).
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.0"),
        .package(url: "https://github.com/swhitty/FlyingFox", from: "0.27.0"),
    ],
    targets: [
        // System libraries, found through pkg-config (apt: libpq-dev, libsecp256k1-dev, libcurl4-openssl-dev).
        .systemLibrary(name: "CLibPQ", path: "Sources/CLibPQ", pkgConfig: "libpq",
                       providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CSecp256k1", path: "Sources/CSecp256k1", pkgConfig: "libsecp256k1",
                       providers: [.apt(["libsecp256k1-dev"])]),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl",
                       providers: [.apt(["libcurl4-openssl-dev"])]),

        .target(name: "Postgres", dependencies: ["CLibPQ"]),
        // The one JSON value type and its strict parser (task arguments, Relay answers, JSON-RPC).
        .target(name: "StrictJSON"),
        .target(name: "HTTP", dependencies: ["CCurl"]),
        .target(name: "Ethereum", dependencies: [
            "CSecp256k1", "HTTP", "StrictJSON", .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "BigInt", package: "BigInt"),
        ]),
        .target(name: "Crynux", dependencies: ["Ethereum", "HTTP", "StrictJSON", .product(name: "BigInt", package: "BigInt"),
                                               .product(name: "Metrics", package: "swift-metrics")]),
                // The one store: every SQL statement (jobs, history, transactions, wallets, results) lives here.
        .target(name: "JobQueue", dependencies: ["Postgres", "Ethereum", .product(name: "BigInt", package: "BigInt")],
                resources: [.copy("Migrations")]),
        // The stage machine that moves claimed jobs through create, upload, poll and fetch.
        .target(name: "Worker", dependencies: [
            "JobQueue", "Postgres", "Ethereum", "Crynux", "HTTP", "StrictJSON", .product(name: "BigInt", package: "BigInt"),
            .product(name: "Logging", package: "swift-log"), .product(name: "Metrics", package: "swift-metrics"),
        ]),
        // The monitoring port: /metrics (Prometheus), /healthz, and the read-only dashboard.
        .target(name: "Monitoring", dependencies: [
            "Worker", "JobQueue", "Postgres", "Ethereum", .product(name: "BigInt", package: "BigInt"),
            .product(name: "FlyingFox", package: "FlyingFox"), .product(name: "FlyingSocks", package: "FlyingFox"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Metrics", package: "swift-metrics"),
        ]),
        .executableTarget(name: "crynux-worker", dependencies: [
            "Worker", "JobQueue", "Postgres", "Ethereum", "Crynux", "Monitoring",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "BigInt", package: "BigInt"),
        ]),

        // Helpers shared by the test targets: throwaway databases, the local network's description.
        .target(name: "TestSupport", dependencies: ["Postgres", "HTTP"], path: "Tests/TestSupport"),
        .testTarget(name: "PostgresTests", dependencies: ["Postgres", "TestSupport"]),
        .testTarget(name: "HTTPTests", dependencies: ["HTTP", "TestSupport"]),
        .testTarget(name: "EthereumTests", dependencies: [
            "Ethereum", "HTTP", "StrictJSON", "TestSupport", .product(name: "BigInt", package: "BigInt"),
        ], resources: [.copy("Fixtures")]),
        .testTarget(name: "CrynuxTests", dependencies: ["Crynux", "Ethereum", "HTTP", "StrictJSON", "TestSupport", .product(name: "BigInt", package: "BigInt")],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "JobQueueTests", dependencies: ["JobQueue", "Postgres", "StrictJSON", "TestSupport", "crynux-worker"]),
        .testTarget(name: "WorkerTests", dependencies: [
            "Worker", "JobQueue", "Postgres", "Ethereum", "Crynux", "TestSupport", "crynux-worker", "Monitoring",
            .product(name: "BigInt", package: "BigInt"),
        ], resources: [.copy("HostileInput")]),
    ]
)
