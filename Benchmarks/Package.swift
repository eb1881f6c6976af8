// swift-tools-version: 6.1
import PackageDescription

// Benchmarks of the apvirt engine, kept out of the main package so that its users and its
// test runs never resolve or build the benchmark tooling. Run with
// `cd Benchmarks && swift package benchmark` (see README.md).
let package = Package(
  name: "apvirt-benchmarks",
  platforms: [.macOS(.v15)],
  dependencies: [
    .package(name: "apvirt", path: ".."),
    .package(
      url: "https://github.com/ordo-one/benchmark.git", exact: "1.38.1",
      traits: ["MallocInterposer"]),
  ],
  targets: [
    // What the benchmarks and the table harness share: the bulk configuration-change host.
    .target(
      name: "BenchmarkFixtures",
      dependencies: [
        .product(name: "APModel", package: "apvirt"),
        .product(name: "Machine", package: "apvirt"),
        .product(name: "HostKernel", package: "apvirt"),
      ],
      path: "Fixtures"
    ),
    .executableTarget(
      name: "EngineBenchmarks",
      dependencies: [
        "BenchmarkFixtures",
        .product(name: "Benchmark", package: "benchmark"),
        .product(name: "APModel", package: "apvirt"),
        .product(name: "Machine", package: "apvirt"),
        .product(name: "HostKernel", package: "apvirt"),
      ],
      path: "Benchmarks/EngineBenchmarks",
      plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    ),
    // The sysfs tree served through a real FUSE mount against tmpfs (needs root and /dev/fuse).
    .executableTarget(
      name: "FUSEBenchmarks",
      dependencies: [
        .product(name: "Benchmark", package: "benchmark"),
        .product(name: "APModel", package: "apvirt"),
        .product(name: "Machine", package: "apvirt"),
        .product(name: "HostKernel", package: "apvirt"),
        .product(name: "FUSE", package: "apvirt"),
        .product(name: "SysfsFUSE", package: "apvirt"),
      ],
      path: "Benchmarks/FUSEBenchmarks",
      plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
    ),
    // The table of issue 12 in one run: apvirt's FUSE server against a libfuse reference
    // server (Reference/sysfs-ref.c, a fixture built by Scripts/table.sh) and tmpfs, the engine
    // rows and the daemon rows. Plain executable (no benchmark library): Scripts/table.sh.
    .executableTarget(
      name: "APVirtTable",
      dependencies: [
        "BenchmarkFixtures",
        .product(name: "APModel", package: "apvirt"),
        .product(name: "Machine", package: "apvirt"),
        .product(name: "HostKernel", package: "apvirt"),
        .product(name: "FUSE", package: "apvirt"),
        .product(name: "SysfsFUSE", package: "apvirt"),
      ],
      path: "Harness"
    ),
  ],
  swiftLanguageModes: [.v6]
)
