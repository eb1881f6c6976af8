import APModel
import Benchmark
import BenchmarkFixtures
import Foundation
import HostKernel
import Machine

// Benchmarks of the apvirt engine at the architecture's limits. Each benchmark builds its
// state in `setup` (run once, outside the measurement) and measures only the operation; see
// README.md for what each one measures.

let benchmarks: @Sendable () -> Void = {
  Benchmark.defaultConfiguration = .init(
    metrics: [.wallClock, .cpuTotal, .mallocCountTotal, .peakMemoryResident],
    timeUnits: .milliseconds,
    warmupIterations: 1,
    maxDuration: .seconds(20),
    maxIterations: 10
  )

  // MARK: 1. Boot

  // The full architecture: 256 adapters x 256 domains, 256 card and 65,536 queue devices
  // created, probed and bound by the first bus scan.
  Benchmark("Boot full-architecture machine") { benchmark in
    for _ in benchmark.scaledIterations {
      benchmark.startMeasurement()
      let kernel = HostKernel(definition: .fullArchitecture())
      benchmark.stopMeasurement()
      // The kernel is freed after the measurement: only the boot is timed.
      precondition(kernel.apBus.queues.count == 256 * 256)
      blackHole(kernel)
    }
  }

  // MARK: 2. Bulk configuration change

  Benchmark(
    "Bulk add 255 adapters, 255 guests",
    closure: { benchmark, state in
      for _ in benchmark.scaledIterations {
        let before = state.updateCounts()
        benchmark.startMeasurement()
        state.addAdapters()
        benchmark.stopMeasurement()
        state.expectOneUpdateEach(since: before, queues: 256 * 256)
        // Back to the starting state, unmeasured.
        let added = state.updateCounts()
        state.removeAdapters()
        state.expectOneUpdateEach(since: added, queues: 256)
      }
    },
    setup: { try BulkChangeState() }
  )

  Benchmark(
    "Bulk remove 255 adapters, 255 guests",
    closure: { benchmark, state in
      for _ in benchmark.scaledIterations {
        // To the state with every adapter present, unmeasured.
        let before = state.updateCounts()
        state.addAdapters()
        state.expectOneUpdateEach(since: before, queues: 256 * 256)
        let added = state.updateCounts()
        benchmark.startMeasurement()
        state.removeAdapters()
        benchmark.stopMeasurement()
        state.expectOneUpdateEach(since: added, queues: 256)
      }
    },
    setup: { try BulkChangeState() }
  )

  // MARK: 3. assign_domain with many mdevs

  // One sample is one assign_domain + unassign_domain pair, a few microseconds: wall clock in
  // nanoseconds (CPU time is left out, its resolution is a scheduler tick).
  let assignConfiguration = Benchmark.Configuration(
    metrics: [.wallClock, .mallocCountTotal],
    timeUnits: .nanoseconds,
    warmupIterations: 10,
    maxDuration: .seconds(3),
    maxIterations: 20_000
  )

  for mdevs in [65_536, 10] {
    // Through the vfio_ap driver's API: the assignment rule alone.
    Benchmark(
      "assign_domain at \(mdevs) mdevs (API)",
      configuration: assignConfiguration,
      closure: { benchmark, state in
        for _ in benchmark.scaledIterations {
          state.assignAndUnassignThroughAPI()
        }
      },
      setup: { try AssignDomainState(mdevs: mdevs) }
    )
    // Through the mdev's sysfs attributes: path lookup, parsing and the rule.
    Benchmark(
      "assign_domain at \(mdevs) mdevs (sysfs)",
      configuration: assignConfiguration,
      closure: { benchmark, state in
        for _ in benchmark.scaledIterations {
          state.assignAndUnassignThroughSysfs()
        }
      },
      setup: { try AssignDomainState(mdevs: mdevs) }
    )
  }

  // MARK: 4. Bounded records

  boundedRecordBenchmarks()
}

// MARK: - State

/// A full-architecture host with nothing reserved for zcrypt (apmask and aqmask empty) and
/// `mdevs` mdevs: `mdevs - 1` of them each own one APQN (adapter a, domain q), in order, never
/// (255, 255); the last one has adapter 255 and no domain. At 65,536 that is every APQN but
/// one, and the type's limit.
final class AssignDomainState {
  let kernel: HostKernel
  let last: MediatedDevice
  let assignPath: String
  let unassignPath: String

  init(mdevs: Int) throws {
    precondition(mdevs >= 1 && mdevs <= VFIOAPDriver.maxInstances)
    let kernel = HostKernel(definition: .fullArchitecture())
    kernel.recordsUEvents = false
    try kernel.write("/bus/ap/apmask", "\n")
    try kernel.write("/bus/ap/aqmask", "\n")
    let vfio = kernel.vfioAP!
    for n in 0..<(mdevs - 1) {
      let (a, q) = (n >> 8, n & 0xff)
      precondition(!(a == 255 && q == 255))
      let m = try vfio.createMdev(Self.uuid(n))
      try vfio.assignAdapter(m, a)
      try vfio.assignDomain(m, q)
    }
    let last = try vfio.createMdev(Self.uuid(mdevs - 1))
    try vfio.assignAdapter(last, 255)
    precondition(vfio.mdevs.count == mdevs)
    precondition(mdevs < VFIOAPDriver.maxInstances || vfio.availableInstances == 0)
    // The measured operation does what it should: APQN (255, 255) is free, so the assignment
    // succeeds, links the queue, and the unassignment gives it back.
    try vfio.assignDomain(last, 255)
    precondition(last.matrix.aqm == APMask([255]) && vfio.owner(of: APQN(255, 255)) === last)
    try vfio.unassignDomain(last, 255)
    precondition(last.matrix.aqm.isEmpty && vfio.owner(of: APQN(255, 255)) == nil)
    self.kernel = kernel
    self.last = last
    assignPath = "/devices/vfio_ap/matrix/\(last.uuid)/assign_domain"
    unassignPath = "/devices/vfio_ap/matrix/\(last.uuid)/unassign_domain"
  }

  static func uuid(_ n: Int) -> String { String(format: "%08x-0000-4000-8000-%012x", n, n) }

  func assignAndUnassignThroughAPI() {
    try! kernel.vfioAP.assignDomain(last, 255)
    try! kernel.vfioAP.unassignDomain(last, 255)
  }

  func assignAndUnassignThroughSysfs() {
    try! kernel.write(assignPath, "255")
    try! kernel.write(unassignPath, "255")
  }
}
