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
        .target(name: "HTTP", dependencies: ["CCurl"]),
        .target(name: "Ethereum", dependencies: [
            "CSecp256k1", "HTTP",
            .product(name: "BigInt", package: "BigInt"),
        ]),
        .target(name: "Crynux", dependencies: ["Ethereum", "HTTP"]),
        .target(name: "Worker", dependencies: ["Postgres", "Ethereum", "Crynux", "HTTP"],
                resources: [.copy("Migrations")]),
        .executableTarget(name: "crynux-worker", dependencies: [
            "Worker", "Postgres", "Ethereum", "Crynux",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "PostgresTests", dependencies: ["Postgres"]),
        .testTarget(name: "HTTPTests", dependencies: ["HTTP"]),
        .testTarget(name: "EthereumTests", dependencies: ["Ethereum"], resources: [.copy("Fixtures")]),
        .testTarget(name: "CrynuxTests", dependencies: ["Crynux", "Ethereum"]),
        .testTarget(name: "WorkerTests", dependencies: ["Worker", "Postgres", "Ethereum", "Crynux"]),
    ]
)
