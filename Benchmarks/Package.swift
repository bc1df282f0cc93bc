// swift-tools-version: 6.1
// Benchmarks for LogStore, kept in their own package so that the library itself does not
// depend on ordo-one/benchmark. See ../BENCHMARKS.md for how to run them and the results.
import PackageDescription

let package = Package(
    name: "LogStoreBenchmarks",
    dependencies: [
        // The parent package. `name:` makes `package: "LogStore"` below work whatever the clone's
        // directory is called (a bare `.package(path: "..")` is known by the directory's name).
        .package(name: "LogStore", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // Temporary directories, clock, the raw pwrite+fdatasync baseline and the logs the read
        // benchmarks read, shared by both.
        .target(
            name: "BenchSupport", dependencies: [.product(name: "LogStore", package: "LogStore")],
            path: "Sources/BenchSupport"),
        // ordo-one/benchmark suite: `swift package --disable-sandbox benchmark`.
        .executableTarget(
            name: "LogStoreBenchmarks",
            dependencies: [
                "BenchSupport",
                .product(name: "LogStore", package: "LogStore"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/LogStoreBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // Plain executable: every comparison in one process, medians over repetitions.
        // `swift run -c release LogStoreMeasure`.
        .executableTarget(
            name: "LogStoreMeasure",
            dependencies: ["BenchSupport", .product(name: "LogStore", package: "LogStore")],
            path: "Sources/LogStoreMeasure"
        ),
    ],
    swiftLanguageModes: [.v6]
)
