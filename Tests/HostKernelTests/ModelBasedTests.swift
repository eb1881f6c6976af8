import APModel
import Foundation
import Machine
import SystemPackage
import Testing

@testable import HostKernel

/// SplitMix64: a small seeded generator, so a failing run can be replayed from its seed.
struct SeededGenerator: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

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

@Suite("vfio_ap: randomized model-based run")
struct ModelBasedTests {
  static let uuids = (1...3).map { String(format: "%08x-1111-4222-8333-%012x", $0, $0) }
  static let maxID = 7

  /// Random operations of every kind, with the system's invariants checked after each step.
  @Test(arguments: Array(1...8) as [UInt64])
  func randomOperationsKeepTheInvariants(seed: UInt64) throws {
    var rng = SeededGenerator(seed: seed)
    let def = MachineDefinition(
      name: "model", na: Self.maxID, nd: Self.maxID,
      adapters: (0...5).map { .init(apid: $0, mode: .cca, queueDepth: 4) },
      usageDomains: APMask(0...5), controlDomains: APMask(0...6))
    let k = HostKernel(definition: def)
    k.recordsUEvents = false
    // Start with most of the machine free for vfio_ap, so that guests get queues early.
    #expect(echo(k, "-0-4", "/bus/ap/apmask") == nil)
    var steps = 0
    var failures = 0
    for _ in 0..<2000 {
      let before = ObservableState(k)
      let (description, result) = step(k, &rng)
      steps += 1
      // A blocked remove is not a failure: the kernel is waiting for the VMM (and has already
      // taken the guest's masks away).
      if let errno = result, errno != VFIOAPDriver.blockedUntilReleased {
        failures += 1
        let unchanged = ObservableState(k) == before
        #expect(
          unchanged,
          "seed \(seed) step \(steps): \(description) failed with \(errno.symbolicName) but changed state")
      }
      checkInvariants(k, "seed \(seed) step \(steps): \(description)")
    }
    // The run did exercise both outcomes.
    #expect(failures > 50)
    #expect(steps - failures > 300)
  }

  func id(_ rng: inout SeededGenerator) -> Int { Int.random(in: 0...(Self.maxID + 2), using: &rng) }

  func numberText(_ n: Int, _ rng: inout SeededGenerator) -> String {
    switch Int.random(in: 0..<8, using: &rng) {
    case 0: "0x\(String(n, radix: 16))"
    case 1: "0\(String(n, radix: 8))"
    case 2: "\(n)\n"
    case 3: ["", "x", "-1", "5 ", "0x", "99999999999999999999"].randomElement(using: &rng)!
    default: "\(n)"
    }
  }

  func maskText(_ rng: inout SeededGenerator) -> String {
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
  func step(_ k: HostKernel, _ rng: inout SeededGenerator) -> (String, Errno?) {
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
        k.vfioAP.closeDevice(m)
        #expect(k.vfioAP.mdev(uuid) == nil)
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

  func checkInvariants(_ k: HostKernel, _ context: String) {
    let bus: APBus = k.apBus
    let vfio: VFIOAPDriver = k.vfioAP
    // Each queue is bound to the driver its reservation says (or, unbound by hand, to none).
    for q in bus.queues.values {
      let wanted: APDriver = bus.isReservedForHost(q.apqn) ? .cex4queue : .vfioAP
      #expect(
        q.driver == nil || q.driver == wanted,
        "\(context): \(q.apqn) bound to \(String(describing: q.driver))")
    }
    // No APQN in two mdevs, and the ownership index agrees.
    let mdevs = Array(vfio.mdevs.values)
    for (i, a) in mdevs.enumerated() {
      for b in mdevs[(i + 1)...] {
        let shared = a.matrix.apm.intersects(b.matrix.apm) && a.matrix.aqm.intersects(b.matrix.aqm)
        #expect(!shared, "\(context): \(a.uuid) and \(b.uuid) share APQNs")
      }
    }
    for apid in 0...Self.maxID {
      for apqi in 0...Self.maxID {
        let apqn = APQN(apid, apqi)
        let holder = mdevs.first { $0.matrix.contains(apqn) }
        #expect(vfio.owner(of: apqn) === holder, "\(context): owner index wrong for \(apqn)")
      }
    }
    // Each VM's APCB lies in its mdev's matrix and the host configuration, and holds only
    // queues bound to vfio_ap; a guest reaches exactly its APCB.
    let config = bus.configuration
    for vm in k.kvm.vms.values {
      let m = mdevs.first { $0.kvm === vm }
      if m == nil {
        #expect(vm.apcb.isEmpty, "\(context): VM \(vm.id) without mdev has an APCB")
      }
      for apqn in vm.apcb.apqns {
        #expect(m?.matrix.contains(apqn) == true, "\(context): \(apqn) in VM \(vm.id) but not assigned")
        #expect(config.contains(apqn), "\(context): \(apqn) in VM \(vm.id) but not in the host configuration")
        #expect(
          bus.queue(apqn)?.driver == .vfioAP, "\(context): \(apqn) in VM \(vm.id) but not bound to vfio_ap")
      }
      #expect(vm.apcb.adm.isSubset(of: m?.matrix.adm ?? APMask()), "\(context): control domains")
      for apid in 0...Self.maxID {
        for apqi in 0...Self.maxID {
          let apqn = APQN(apid, apqi)
          let reached = k.machine.tapq(apqn, vm.authority).0.responseCode != .queueNotAvailable
          #expect(reached == vm.apcb.contains(apqn), "\(context): VM \(vm.id) reach of \(apqn)")
        }
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
      #expect(ok || releasing, "\(context): \(apqn) holds state of guest \(id) outside its APCB")
    }
    // A queue changes hands only zeroized.
    let leaks = k.machine.leaks.map { "\($0.0) \($0.from)->\($0.to)" }
    #expect(leaks.isEmpty, "\(context): leaks \(leaks)")
  }
}
