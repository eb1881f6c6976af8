import APModel
import Foundation
import Machine
import SystemPackage
import TestSupport
import Testing

@testable import HostKernel

/// Everything a user can observe, to show that a failed store changed nothing.
struct ObservableState: Equatable {
  var apmask: APMask
  var aqmask: APMask
  var drivers: [Int: APDriver?]
  var mdevs: [String: [APMatrix]]
  var apcbs: [Int: APMatrix]
  var updates: [Int: Int]

  init(_ k: HostKernel) {
    apmask = k.apBus.apmask
    aqmask = k.apBus.aqmask
    drivers = k.apBus.queues.mapValues { $0.driver }
    mdevs = k.vfioAP.mdevs.mapValues { [$0.matrix, $0.shadowAPCB] }
    apcbs = k.kvm.vms.mapValues(\.apcb)
    updates = k.kvm.vms.mapValues(\.apcbUpdateCount)
  }
}

/// A seeded model-based run of the whole stack: random operations of every kind (mask edits,
/// assign/unassign, `ap_config`, mdev create/remove, VM attach/detach, changes of the machine,
/// binds and unbinds, guests' NQAP/DQAP), with the system's invariants checked after every step.
///
/// **Length.** CI runs the default, 50 seeds x 2,000 steps = 100,000 steps (the seeds run in
/// parallel; about 10 s of CPU in the debug build). Environment variables make it longer, or
/// replay one seed:
/// - `APVIRT_LONG=1`: 200 seeds x 10,000 steps = 2,000,000 steps, for a reader with a few
///   minutes to spare: `APVIRT_LONG=1 swift test --filter ModelBasedTests`.
/// - `APVIRT_MODEL_SEEDS=N`: seeds 1...N. `APVIRT_MODEL_STEPS=N`: steps per seed. Both override
///   the defaults and `APVIRT_LONG`.
/// - `APVIRT_MODEL_SEED=S`: seed S alone, to replay a failure (a failure names its seed and
///   step; a seed repeats its steps exactly).
/// - `APVIRT_MODEL_FULL_EVERY=N`: TAPQ over every APQN only every N steps (see below), for a
///   faster long run; the default, 1, sweeps after every step.
///
/// **What is checked.** After every step:
/// - a store that failed left ``ObservableState`` unchanged (one snapshot per step: the state
///   after a step is the state before the next);
/// - every queue is bound to the driver its reservation says, or to none;
/// - no two mdevs share an APQN, and the ownership index agrees with the mdevs' matrices over
///   every APQN 0...7 x 0...7 (brute force);
/// - every VM's APCB lies in its mdev's matrix and in the host configuration and holds only
///   queues bound to vfio_ap, its control domains in its mdev's;
/// - TAPQ reaches, for each VM, exactly its APCB: TAPQ over every APQN 0...7 x 0...7. With
///   `APVIRT_MODEL_FULL_EVERY=N` the sweep over every APQN runs every N steps, after the last
///   step, for a VM that is new and when the machine's configuration changed; the other steps
///   test the APQNs in the VM's APCB before or after the step, the only ones whose answer
///   could have changed;
/// - no queue holds a guest's state outside that guest's APCB, and no queue changed hands
///   without being zeroized (the machine's leak record).
///
/// A seed stops at the first step that breaks an invariant, and reports what broke there.
@Suite("vfio_ap: randomized model-based run")
struct ModelBasedTests {
  static let uuids = (1...3).map { String(format: "%08x-1111-4222-8333-%012x", $0, $0) }
  static let maxID = 7
  /// Every APQN the run can touch: adapters and domains 0...7.
  static let everyAPQN = (0...maxID).flatMap { apid in (0...maxID).map { APQN(apid, $0) } }

  /// How long the run is: the seeds, the steps per seed, and how often TAPQ sweeps every APQN.
  struct RunLength: Sendable {
    var seeds: [UInt64]
    var steps: Int
    var fullReachEvery: Int

    /// From the environment (see the suite's documentation).
    init(_ env: [String: String]) {
      func number(_ name: String) -> Int? { env[name].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil } }
      let long = env["APVIRT_LONG"].map { !["", "0"].contains($0) } ?? false
      let seedCount = number("APVIRT_MODEL_SEEDS") ?? (long ? 200 : 50)
      seeds = number("APVIRT_MODEL_SEED").map { [UInt64($0)] } ?? (1...seedCount).map(UInt64.init)
      steps = number("APVIRT_MODEL_STEPS") ?? (long ? 10_000 : 2000)
      fullReachEvery = number("APVIRT_MODEL_FULL_EVERY") ?? 1
    }
  }

  static let run = RunLength(ProcessInfo.processInfo.environment)

  /// One run: a seed under a kernel profile.
  struct Case: Sendable, CustomStringConvertible {
    var seed: UInt64
    var profile: KernelProfile
    var description: String { "seed \(seed), Linux \(profile)" }
  }

  /// Every seed under the newest kernel, and a fifth of them under each older profile.
  static let cases: [Case] =
    run.seeds.map { Case(seed: $0, profile: .newest) }
    + KernelProfile.known.filter { $0 != .newest }.flatMap { p in
      run.seeds.prefix(max(1, run.seeds.count / 5)).map { Case(seed: $0, profile: p) }
    }

  /// Random operations of every kind, with the system's invariants checked after each step.
  @Test(arguments: ModelBasedTests.cases)
  func randomOperationsKeepTheInvariants(_ c: Case) throws {
    let seed = c.seed
    let run = Self.run
    var rng = SplitMix64(seed: seed)
    let def = MachineDefinition(
      name: "model", na: Self.maxID, nd: Self.maxID,
      adapters: (0...5).map { .init(apid: $0, mode: .cca, queueDepth: 4) },
      usageDomains: APMask(0...5), controlDomains: APMask(0...6))
    let k = HostKernel(definition: def, profile: c.profile)
    k.recordsUEvents = false
    // Start with most of the machine free for vfio_ap, so that guests get queues early.
    #expect(echo(k, "-0-4", "/bus/ap/apmask") == nil)
    var failures = 0
    var state = ObservableState(k)
    var generation = k.machine.configGeneration
    for n in 1...run.steps {
      let (description, result) = step(k, &rng)
      let after = ObservableState(k)
      var v = Violations()
      // A blocked remove is not a failure: the kernel is waiting for the VMM (and has already
      // taken the guest's masks away).
      if let errno = result, errno != VFIOAPDriver.blockedUntilReleased {
        failures += 1
        v.check(after == state, "failed with \(errno.symbolicName) but changed state")
      }
      let machineChanged = k.machine.configGeneration != generation
      generation = k.machine.configGeneration
      checkInvariants(
        k, since: state, machineChanged: machineChanged,
        fullReach: n % run.fullReachEvery == 0 || n == run.steps,
        &v)
      state = after
      if !v.messages.isEmpty {
        for message in v.messages.prefix(10) {
          Issue.record("seed \(seed) step \(n): \(description): \(message)")
        }
        if v.messages.count > 10 { Issue.record("seed \(seed) step \(n): \(v.messages.count - 10) more") }
        return
      }
    }
    // The run did exercise both outcomes (at 2,000 steps: more than 50 failures, 300 successes).
    if run.steps >= 1000 {
      #expect(failures > run.steps / 40)
      #expect(run.steps - failures > run.steps * 3 / 20)
    }
  }

  func id(_ rng: inout SplitMix64) -> Int { Int.random(in: 0...(Self.maxID + 2), using: &rng) }

  func numberText(_ n: Int, _ rng: inout SplitMix64) -> String {
    switch Int.random(in: 0..<8, using: &rng) {
    case 0: "0x\(String(n, radix: 16))"
    case 1: "0\(String(n, radix: 8))"
    case 2: "\(n)\n"
    case 3: ["", "x", "-1", "5 ", "0x", "99999999999999999999"].randomElement(using: &rng)!
    default: "\(n)"
    }
  }

  func maskText(_ rng: inout SplitMix64) -> String {
    switch Int.random(in: 0..<4, using: &rng) {
    case 0:
      var m = APMask()
      for _ in 0..<Int.random(in: 0...6, using: &rng) {
        m.insert(Int.random(in: 0...Self.maxID, using: &rng))
      }
      return m.hexString
    case 1:
      let a = Int.random(in: 0...Self.maxID, using: &rng)
      let b = Int.random(in: a...Self.maxID, using: &rng)
      return (Bool.random(using: &rng) ? "+" : "-") + "\(a)-\(b)"
    case 2: return ["0X1", "+300", "+1 ,+2", "zz", "\n"].randomElement(using: &rng)!
    default:
      return (Bool.random(using: &rng) ? "+" : "-") + "\(Int.random(in: 0...Self.maxID, using: &rng))"
    }
  }

  /// One random operation; returns its description and the errno of a failed store.
  func step(_ k: HostKernel, _ rng: inout SplitMix64) -> (String, Errno?) {
    let uuid = Self.uuids.randomElement(using: &rng)!
    let m = k.vfioAP.mdev(uuid)
    func store(_ text: String, _ path: String) -> (String, Errno?) {
      ("echo \(text.debugDescription) > \(path)", echo(k, text, path))
    }
    let choice = Int.random(in: 0..<24, using: &rng)
    // Operations on an mdev that does not exist create it instead.
    if m == nil && [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 22, 23].contains(choice) {
      return store(uuid, createPath)
    }
    switch choice {
    case 0, 1:
      return store(maskText(&rng), Bool.random(using: &rng) ? "/bus/ap/apmask" : "/bus/ap/aqmask")
    case 2:
      return store(uuid, createPath)
    case 3:
      guard let m else { return ("no mdev", nil) }
      if m.isOpen && Bool.random(using: &rng) {
        // The VMM honours the request: it closes, and the blocked remove goes through.
        _ = echo(k, "1", mdevPath(uuid) + "/remove")
        let vm = m.kvm
        k.vfioAP.closeDevice(m)
        #expect(k.vfioAP.mdev(uuid) == nil)
        // The VMM keeps its VM, without the device, until the next such release; then it goes.
        // (Kept for ever, idle VMs would pile up, and every step would check them all.)
        for idle in k.kvm.vms.values
        where idle !== vm && !k.vfioAP.mdevs.values.contains(where: { $0.kvm === idle }) {
          k.kvm.destroyVM(idle)
        }
        return ("remove \(uuid) while open, released by the VMM", nil)
      }
      return store(
        numberText(Int.random(in: 0..<4, using: &rng) == 0 ? 1 : 0, &rng), mdevPath(uuid) + "/remove")
    case 4...10:
      guard m != nil else { return ("no mdev", nil) }
      let attr = [
        "assign_adapter", "assign_domain", "assign_control_domain", "unassign_adapter", "unassign_domain",
        "unassign_control_domain", "assign_adapter", "assign_domain",
      ].randomElement(using: &rng)!
      return store(numberText(id(&rng), &rng), mdevPath(uuid) + "/" + attr)
    case 11:
      guard m != nil else { return ("no mdev", nil) }
      let text = [maskText(&rng), maskText(&rng), maskText(&rng)].joined(separator: ",") + "\n"
      return store(text, mdevPath(uuid) + "/ap_config")
    case 12, 22, 23:
      guard let m, !m.isOpen else { return ("attach: nothing", nil) }
      let vm = k.kvm.createVM(name: uuid)
      do {
        try k.vfioAP.openDevice(m, kvm: vm)
      } catch {
        k.kvm.destroyVM(vm)
        return ("open", error)
      }
      return ("attach \(uuid)", nil)
    case 13:
      guard let m, m.isOpen else { return ("detach: nothing", nil) }
      let vm = m.kvm!
      k.vfioAP.closeDevice(m)
      k.kvm.destroyVM(vm)
      return ("detach \(uuid)", nil)
    case 14, 20, 21:
      // A guest uses its queues.
      for vm in k.kvm.vms.values.sorted(by: { $0.id < $1.id }) {
        // Mostly its own queues, sometimes any.
        let own = vm.apcb.apqns
        let apqn =
          !own.isEmpty && Int.random(in: 0..<5, using: &rng) > 0
          ? own.randomElement(using: &rng)!
          : APQN(Int.random(in: 0...Self.maxID, using: &rng), Int.random(in: 0...Self.maxID, using: &rng))
        if Bool.random(using: &rng) {
          _ = k.machine.nqap(apqn, psmid: 1, payload: [1, 2], vm.authority)
        } else {
          _ = k.machine.dqap(apqn, vm.authority)
        }
      }
      return ("guest NQAP/DQAP", nil)
    case 15, 16:
      let apid = Int.random(in: 0...Self.maxID, using: &rng)
      let dom = Int.random(in: 0...Self.maxID, using: &rng)
      switch Int.random(in: 0..<7, using: &rng) {
      case 0: try? k.machine.addAdapter(.init(apid: apid, queueDepth: 4))
      case 1: try? k.machine.removeAdapter(apid)
      case 2: try? k.machine.addUsageDomain(dom)
      case 3: try? k.machine.removeUsageDomain(dom)
      case 4: try? k.machine.addControlDomain(dom)
      case 5: try? k.machine.removeControlDomain(dom)
      default: try? k.machine.setCheckstopped(apid, Bool.random(using: &rng))
      }
      if Bool.random(using: &rng) { k.notifyConfigurationChange() } else { k.advance(by: 31_000_000_000) }
      return ("machine change", nil)
    case 17:
      let apid = Int.random(in: 0...Self.maxID, using: &rng)
      return store(Bool.random(using: &rng) ? "1" : "0", "/devices/ap/card\(hex2(apid))/config")
    case 18:
      let q = APQN(Int.random(in: 0...Self.maxID, using: &rng), Int.random(in: 0...Self.maxID, using: &rng))
      let driver = ["vfio_ap", "cex4queue"].randomElement(using: &rng)!
      return store(q.description, "/bus/ap/drivers/\(driver)/\(Bool.random(using: &rng) ? "unbind" : "bind")")
    default:
      let q = APQN(Int.random(in: 0...Self.maxID, using: &rng), Int.random(in: 0...Self.maxID, using: &rng))
      return store(q.description, "/bus/ap/drivers_probe")
    }
  }

  /// The invariants after a step (the suite's documentation lists them).
  /// `before` is the state before the step; `fullReach` asks for TAPQ over every APQN for
  /// every VM; `machineChanged` says the machine's configuration changed in this step.
  func checkInvariants(
    _ k: HostKernel, since before: ObservableState, machineChanged: Bool, fullReach: Bool,
    _ v: inout Violations
  ) {
    let bus: APBus = k.apBus
    let vfio: VFIOAPDriver = k.vfioAP
    // Each queue is bound to the driver its reservation says (or, unbound by hand, to none).
    for q in bus.queues.values {
      let wanted: APDriver = bus.isReservedForHost(q.apqn) ? .cex4queue : .vfioAP
      v.check(q.driver == nil || q.driver == wanted, "\(q.apqn) bound to \(String(describing: q.driver))")
    }
    // No APQN in two mdevs, and the ownership index agrees, brute force: every APQN of every
    // mdev's matrix is indexed to that mdev, and every other APQN 0...7 x 0...7 to none.
    let mdevs = Array(vfio.mdevs.values)
    for (i, a) in mdevs.enumerated() {
      for b in mdevs[(i + 1)...] {
        let shared = a.matrix.apm.intersects(b.matrix.apm) && a.matrix.aqm.intersects(b.matrix.aqm)
        v.check(!shared, "\(a.uuid) and \(b.uuid) share APQNs")
      }
    }
    var holders = [MediatedDevice?](repeating: nil, count: Self.everyAPQN.count)
    for m in mdevs {
      for apqn in m.matrix.apqns {
        v.check(vfio.owner(of: apqn) === m, "owner index wrong for \(apqn) of \(m.uuid)")
        if apqn.apid <= Self.maxID && apqn.apqi <= Self.maxID {
          holders[apqn.apid * (Self.maxID + 1) + apqn.apqi] = m
        }
      }
    }
    // (An index loop: zip's generic iterator is slow in a debug build.)
    for i in holders.indices where holders[i] == nil {
      let apqn = Self.everyAPQN[i]
      v.check(
        vfio.owner(of: apqn) == nil,
        "owner index wrong for \(apqn): \(vfio.owner(of: apqn)?.uuid ?? "") but in no matrix")
    }
    // Each VM's APCB lies in its mdev's matrix and the host configuration, and holds only
    // queues bound to vfio_ap; a guest reaches exactly its APCB.
    let config = bus.configuration
    for vm in k.kvm.vms.values {
      let m = mdevs.first { $0.kvm === vm }
      if m == nil {
        v.check(vm.apcb.isEmpty, "VM \(vm.id) without mdev has an APCB")
      }
      let apqns = vm.apcb.apqns
      for apqn in apqns {
        v.check(m?.matrix.contains(apqn) == true, "\(apqn) in VM \(vm.id) but not assigned")
        v.check(config.contains(apqn), "\(apqn) in VM \(vm.id) but not in the host configuration")
        v.check(bus.queue(apqn)?.driver == .vfioAP, "\(apqn) in VM \(vm.id) but not bound to vfio_ap")
      }
      v.check(vm.apcb.adm.isSubset(of: m?.matrix.adm ?? APMask()), "VM \(vm.id) control domains")
      // TAPQ can answer differently only where the APCB or the machine changed.
      var tested = Self.everyAPQN
      if !fullReach && !machineChanged, let previous = before.apcbs[vm.id] {
        tested = apqns + previous.apqns.filter { !vm.apcb.contains($0) }
      }
      let authority = vm.authority
      for apqn in tested {
        let reached = k.machine.tapq(apqn, authority).0.responseCode != .queueNotAvailable
        v.check(reached == vm.apcb.contains(apqn), "VM \(vm.id) reach of \(apqn)")
      }
    }
    // Guest state stays where the guest is: a queue holding a guest's state is in that guest's
    // APCB, unless the guest is being asked to let go of its mdev (the kernel resets the
    // queues when the VMM closes it), or the adapter is checkstopped (nothing reaches it, and
    // its recovery clears it).
    for (apqn, owner) in k.machine.ownedQueues {
      guard case .guest(let id) = owner, k.machine.adapters[apqn.apid]?.checkstopped != true else { continue }
      let vm = k.kvm.vms[id]
      let releasing = mdevs.contains { $0.kvm === vm && $0.removalPending }
      let ok = vm.map { $0.apcb.contains(apqn) } ?? false
      v.check(ok || releasing, "\(apqn) holds state of guest \(id) outside its APCB")
    }
    // A queue changes hands only zeroized.
    let leaks = k.machine.leaks
    v.check(leaks.isEmpty, "leaks \(leaks.map { "\($0.0) \($0.from)->\($0.to)" })")
  }
}

/// The invariants broken at one step: the checks cost a comparison each, and a message is
/// built only for one that fails.
struct Violations {
  var messages: [String] = []
  mutating func check(_ ok: Bool, _ message: @autoclosure () -> String) {
    if !ok { messages.append(message()) }
  }
}
