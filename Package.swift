// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "LogStore",
    products: [
        .library(name: "LogStore", targets: ["LogStore"]),
        .executable(name: "logctl", targets: ["logctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.4.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
    ],
    targets: [
        // Hardware CRC32C (SSE4.2 `crc32` instruction) with a portable table fallback.
        .target(name: "CCRC32C"),
        // liburing from Debian's liburing-dev, kept behind a small C API (see CLiburing.h).
        .target(name: "CLiburing", linkerSettings: [.linkedLibrary("uring")]),
        // GNU-only Linux calls (sync_file_range) that Swift's Glibc module does not export.
        .target(name: "CLinuxShims"),
        .target(
            name: "LogStore",
            dependencies: [
                "CCRC32C",
                "CLiburing",
                "CLinuxShims",
                .product(name: "SystemPackage", package: "swift-system"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        // The power-loss simulator and its crash-state checks: run by the tests and by
        // `logctl crashtest` on the user's disk. Reaches LogStore's hooks through `package` access.
        .target(
            name: "LogStoreSimulation",
            dependencies: ["LogStore"]
        ),
        .executableTarget(
            name: "logctl",
            dependencies: [
                "LogStore",
                "LogStoreSimulation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "SystemPackage", package: "swift-system"),
                // Commit latency percentiles for `logctl bench`.
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),
        .testTarget(
            name: "LogStoreTests",
            dependencies: [
                "LogStore",
                "LogStoreSimulation",
                "CLiburing",
                "CLinuxShims",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ]
        ),
        .testTarget(
            name: "logctlTests",
            dependencies: ["logctl", "LogStore"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
