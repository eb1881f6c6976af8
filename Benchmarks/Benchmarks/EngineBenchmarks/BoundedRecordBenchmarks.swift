import Benchmark
import Foundation
import HostKernel

// What a long-running daemon must not do: pay for the log's fill on every store, or grow with
// the stores it served. See README.md.

func boundedRecordBenchmarks() {
  // One sample: one refused assign_adapter (one line logged) and the dmesg file's sync after it,
  // as the daemon does after every store. Microseconds.
  let refusedConfiguration = Benchmark.Configuration(
    metrics: [.wallClock, .mallocCountTotal],
    timeUnits: .microseconds,
    warmupIterations: 10,
    maxDuration: .seconds(3),
    maxIterations: 20_000
  )
  for fill in RefusedAssignState.Fill.allCases {
    Benchmark(
      "refused assign + dmesg sync, \(fill.rawValue) log",
      configuration: refusedConfiguration,
      closure: { benchmark, state in
        for _ in benchmark.scaledIterations {
          state.keepFill()
          benchmark.startMeasurement()
          state.refuseAndSync()
          benchmark.stopMeasurement()
        }
      },
      setup: { try RefusedAssignState(fill: fill) },
      teardown: { RefusedAssignState.removeFile() }
    )
  }

  // The audit's load: 10,000 apmask flips of adapter 0 (256 queues unbound and bound each way)
  // and 10,000 assign_domain/unassign_domain cycles on an mdev, through sysfs, uevents recorded.
  // Peak resident memory is the figure to read; the state's records are checked to be at their
  // bounds after every iteration.
  Benchmark(
    "10,000 apmask flips + 10,000 assign/unassign cycles",
    configuration: .init(
      metrics: [.wallClock, .peakMemoryResident, .mallocCountTotal],
      timeUnits: .milliseconds,
      warmupIterations: 0,
      maxDuration: .seconds(60),
      maxIterations: 2
    ),
    closure: { benchmark, state in
      for _ in benchmark.scaledIterations {
        benchmark.startMeasurement()
        state.run(10_000)
        benchmark.stopMeasurement()
        state.expectBounded()
      }
    },
    setup: { try FlipState() }
  )
}

/// A host where assigning adapter 5 to the second mdev is refused (APQN 05.0047 belongs to the
/// first), logging one line, with the dmesg file following the log. `empty` keeps the log under
/// 100 lines (a fresh host every 100 samples, unmeasured); `full` fills the 128 KiB ring first.
final class RefusedAssignState {
  enum Fill: String, CaseIterable {
    case empty
    case full
  }

  static let u1 = "62177883-f1bb-47f0-914d-32a22e3a8804"
  static let u2 = "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3"
  static let matrix = "/devices/vfio_ap/matrix/"

  let fill: Fill
  /// The plugin runs each benchmark in a process of its own: one file per process.
  static let path = NSTemporaryDirectory() + "apvirt-bench-dmesg-\(ProcessInfo.processInfo.processIdentifier)"
  var host: EmulatedHost
  var file: KernelLogFile
  let refusal = Array("5".utf8)
  let assignPath = matrix + u2 + "/assign_adapter"

  init(fill: Fill) throws {
    self.fill = fill
    host = try Self.makeHost()
    file = KernelLogFile(host: host, path: Self.path)
    file.sync()
    if fill == .full {
      while host.withKernel({ $0.log.firstSeq }) == 0 { refuseAndSync() }
    }
  }

  static func makeHost() throws -> EmulatedHost {
    let k = HostKernel()
    try k.write("/bus/ap/apmask", "-5,-6")
    for u in [u1, u2] { try k.write(matrix + "mdev_supported_types/vfio_ap-passthrough/create", u) }
    try k.write(matrix + u1 + "/assign_adapter", "5")
    try k.write(matrix + u1 + "/assign_domain", "0x47")
    try k.write(matrix + u2 + "/assign_domain", "0x47")
    return EmulatedHost(kernel: k)
  }

  /// Outside the measurement: the empty log starts again before it has 100 lines.
  func keepFill() {
    guard fill == .empty, host.withKernel({ $0.log.count }) >= 100 else { return }
    host = try! Self.makeHost()
    file = KernelLogFile(host: host, path: Self.path)
    file.sync()
  }

  func refuseAndSync() {
    do {
      try host.write(assignPath, refusal)
      preconditionFailure("the assignment was not refused")
    } catch {
      precondition(error == .addressInUse)
    }
    file.sync()
  }

  static func removeFile() { try? FileManager.default.removeItem(atPath: path) }
}

/// The host of the growth harness: adapters 5 and 6 freed, one mdev with adapter 5 and
/// domain 4, and a sysfs removal journal that was taken once and never again (a server that
/// stopped taking).
final class FlipState {
  let kernel: HostKernel
  let mdev = "/devices/vfio_ap/matrix/62177883-f1bb-47f0-914d-32a22e3a8804"

  init() throws {
    let k = HostKernel()
    try k.write("/bus/ap/apmask", "-5,-6")
    try k.write(
      "/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create",
      "62177883-f1bb-47f0-914d-32a22e3a8804")
    try k.write(mdev + "/assign_adapter", "5")
    try k.write(mdev + "/assign_domain", "4")
    _ = k.sysfs.takeRemovedPaths()
    kernel = k
  }

  func run(_ n: Int) {
    for i in 0..<n {
      try! kernel.write("/bus/ap/apmask", i % 2 == 0 ? "-0" : "+0")
    }
    for _ in 0..<n {
      try! kernel.write(mdev + "/assign_domain", "7")
      try! kernel.write(mdev + "/unassign_domain", "7")
    }
  }

  func expectBounded() {
    precondition(kernel.uevents.count <= kernel.ueventCapacity)
    precondition(kernel.log.byteCount <= kernel.logBufferLength)
    precondition(kernel.sysfs.pendingRemovalCount <= kernel.sysfs.removalJournal.capacity)
  }
}
