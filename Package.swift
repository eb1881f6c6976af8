// swift-tools-version: 6.1
import PackageDescription

let package = Package(
  name: "apvirt",
  platforms: [.macOS(.v15)],
  products: [
    .executable(name: "apvirt", targets: ["apvirt"]),
    .library(name: "APModel", targets: ["APModel"]),
    .library(name: "Machine", targets: ["Machine"]),
    .library(name: "Sysfs", targets: ["Sysfs"]),
    .library(name: "HostKernel", targets: ["HostKernel"]),
    .library(name: "FUSE", targets: ["FUSE"]),
    .library(name: "VMM", targets: ["VMM"]),
    .library(name: "SysfsFUSE", targets: ["SysfsFUSE"]),
    .library(name: "Planning", targets: ["Planning"]),
    .library(name: "Scenario", targets: ["Scenario"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
    .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
  ],
  targets: [
    .target(name: "APModel", dependencies: [.product(name: "SystemPackage", package: "swift-system")]),
    .target(
      name: "Machine",
      dependencies: ["APModel", .product(name: "Yams", package: "Yams")]
    ),
    .target(name: "Sysfs", dependencies: [.product(name: "SystemPackage", package: "swift-system")]),
    .target(name: "HostKernel", dependencies: ["APModel", "Machine", "Sysfs"]),
    .target(name: "CFUSEDevice"),
    .target(name: "FUSE", dependencies: ["CFUSEDevice", .product(name: "SystemPackage", package: "swift-system")]),
    .target(name: "VMM", dependencies: ["APModel", "Machine", "HostKernel"]),
    .target(name: "SysfsFUSE", dependencies: ["HostKernel", "Sysfs", "FUSE"]),
    .target(name: "Planning", dependencies: ["APModel"]),
    .target(
      name: "Scenario",
      dependencies: [
        "APModel", "Machine", "Planning", .product(name: "Yams", package: "Yams"),
        .product(name: "SystemPackage", package: "swift-system"),
      ]
    ),
    .executableTarget(
      name: "apvirt",
      dependencies: [
        "APModel", "Machine", "Sysfs", "HostKernel", "FUSE", "VMM", "SysfsFUSE", "Planning", "Scenario",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ]
    ),
    // What several test targets share (a seeded generator); no product uses it.
    .target(name: "TestSupport", path: "Tests/TestSupport"),
    .testTarget(name: "APModelTests", dependencies: ["APModel"]),
    .testTarget(name: "MachineTests", dependencies: ["Machine"]),
    .testTarget(name: "SysfsTests", dependencies: ["Sysfs"]),
    .testTarget(name: "HostKernelTests", dependencies: ["HostKernel", "TestSupport"]),
    .testTarget(name: "FUSETests", dependencies: ["FUSE"]),
    .testTarget(name: "VMMTests", dependencies: ["VMM", "HostKernel", "Machine"]),
    .testTarget(name: "PlanningTests", dependencies: ["Planning", "HostKernel", "Machine", "Sysfs", "TestSupport"]),
    .testTarget(name: "ScenarioTests", dependencies: ["Scenario"]),
    .testTarget(
      name: "Interop",
      dependencies: ["apvirt", "VMM", "FUSE", "HostKernel", "SysfsFUSE", "Planning", "Scenario", "TestSupport"],
      path: "Tests/Interop", exclude: ["Scripts"]),
    .testTarget(name: "apvirtTests", dependencies: ["apvirt", "HostKernel"]),
  ],
  swiftLanguageModes: [.v6]
)
