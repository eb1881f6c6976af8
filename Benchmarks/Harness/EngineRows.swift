import APModel
import BenchmarkFixtures
import Foundation
import HostKernel
import Machine

#if canImport(Glibc)
  import Glibc
#endif

/// The engine rows, in process: the same operations and states as EngineBenchmarks (boot of the
/// full architecture, the bulk add and remove of BulkChangeState), timed here with the same
/// clock as every other row so that one command prints the whole table, plus mdev creation.
struct EngineRows {
  var iterations = setting("ENGINE_ITERATIONS", 5)
  var mdevCreates = setting("MDEV_CREATES", 2000)

  func run() -> [TableLine] {
    var lines: [TableLine] = []

    note("engine: boot of the full architecture x \(iterations + 1)")
    var boot = Samples()
    for i in 0...iterations {
      let t0 = monotonicNanoseconds()
      let kernel = HostKernel(definition: .fullArchitecture())
      let t = Double(monotonicNanoseconds() - t0)
      precondition(kernel.apBus.queues.count == 256 * 256)
      if i > 0 { boot.append(t) }  // the first is the warm-up
    }
    lines.append(
      target(row: "boot, full architecture (65,536 queues)", "HostKernel(definition:)", boot, ms: 100))

    note("engine: bulk add/remove of 255 adapters with 255 guests x \(iterations + 1)")
    let state = try! BulkChangeState()
    var add = Samples()
    var remove = Samples()
    for i in 0...iterations {
      let before = state.updateCounts()
      var t0 = monotonicNanoseconds()
      state.addAdapters()
      let a = Double(monotonicNanoseconds() - t0)
      state.expectOneUpdateEach(since: before, queues: 256 * 256)
      let added = state.updateCounts()
      t0 = monotonicNanoseconds()
      state.removeAdapters()
      let r = Double(monotonicNanoseconds() - t0)
      state.expectOneUpdateEach(since: added, queues: 256)
      if i > 0 {
        add.append(a)
        remove.append(r)
      }
    }
    lines.append(
      target(row: "bulk add 255 adapters, 255 guests (1 APCB update each)", "in process", add, ms: 50))
    lines.append(target(row: "bulk remove of the same", "in process", remove, ms: 50))

    note("engine: mdev create x \(mdevCreates), through sysfs and through the API")
    let (sysfs, api) = mdevCreate()
    var l = target(row: "mdev create in process", "`echo UUID > create` (sysfs write)", sysfs, ms: 0.010)
    l.unit = .nanoseconds
    lines.append(l)
    l = target(row: "", "VFIOAPDriver.createMdev", api, ms: 0.010)
    l.unit = .nanoseconds
    lines.append(l)
    return lines
  }

  /// A line whose target is `ms` milliseconds at p50.
  func target(row: String, _ what: String, _ s: Samples, ms: Double) -> TableLine {
    let t = ms * 1_000_000
    let targetText = ms >= 1 ? "<= \(Int(ms)) ms" : "<= \(Int(ms * 1000)) us"
    return TableLine(
      row: row, what: what, unit: .milliseconds, samples: s, ratio: ratio(s.p50, t) + " of target (p50)",
      target: targetText, meets: s.p50 <= t)
  }

  /// On the embedded default machine (as the daemon boots it): create one mdev, timed, then
  /// remove it, untimed, so that every sample creates on the same state.
  func mdevCreate() -> (Samples, Samples) {
    let kernel = HostKernel(definition: .embeddedDefault)
    let create = "/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create"
    var sysfs = Samples()
    var api = Samples()
    let warmup = 100
    for i in 0..<(mdevCreates + warmup) {
      let uuid = String(format: "%08x-3333-4444-8555-%012x", i, i)
      let t0 = monotonicNanoseconds()
      _ = try! kernel.write(create, uuid + "\n")
      let t = Double(monotonicNanoseconds() - t0)
      try! kernel.vfioAP.removeMdev(kernel.vfioAP.mdevs[uuid]!)
      if i >= warmup { sysfs.append(t) }
    }
    for i in 0..<(mdevCreates + warmup) {
      let uuid = String(format: "%08x-6666-4777-8888-%012x", i, i)
      let t0 = monotonicNanoseconds()
      let m = try! kernel.vfioAP.createMdev(uuid)
      let t = Double(monotonicNanoseconds() - t0)
      try! kernel.vfioAP.removeMdev(m)
      if i >= warmup { api.append(t) }
    }
    return (sysfs, api)
  }
}
