import APModel
import Machine
import SystemPackage
import Testing

@testable import HostKernel

@Suite("A guest's kernel: its AP bus through its APCB")
struct GuestKernelTests {
  @Test func theGuestSeesExactlyItsAPCB() throws {
    let k = bootWithFreedAdapters()
    let m = makeMdev(k, uuid1, adapters: [5, 6], domains: [4, 0x47], controls: [4])
    let vm = k.kvm.createVM(name: "guest1")
    let g = HostKernel(guestOn: vm.createVCPU(), clock: k.clock, profile: k.profile)
    #expect(g.apBus.cards.isEmpty)
    try k.vfioAP.openDevice(m, kvm: vm)
    // The guest notices on its next scan.
    k.advance(by: 30_000_000_000)
    #expect(g.apBus.cards.keys.sorted() == [5, 6])
    #expect(
      g.apBus.queues.keys.sorted().map { APQN(rawValue: $0) } == [
        APQN(5, 4), APQN(5, 0x47), APQN(6, 4), APQN(6, 0x47),
      ])
    #expect(try g.read("/bus/ap/ap_usage_domain_mask") == APMask([4, 0x47]).hexString + "\n")
    #expect(try g.read("/bus/ap/ap_control_domain_mask") == APMask([4]).hexString + "\n")
    #expect(try g.read("/devices/ap/card06/type") == "CEX8P\n")
    #expect(try g.read("/devices/ap/card05/05.0047/online") == "1\n")
    #expect(try g.read("/bus/ap/bindings") == "4/4 (complete)\n")
    #expect((try? g.read("/devices/vfio_ap/matrix/features")) == nil)
    // Hot plug: the guest sees the new domain after its scan.
    #expect(echo(k, "0xab", mdevPath(uuid1) + "/assign_domain") == nil)
    #expect(g.apBus.queue(APQN(5, 0xab)) == nil)
    g.notifyConfigurationChange()
    #expect(g.apBus.queue(APQN(5, 0xab))?.driver == .cex4queue)
    // A queue the host takes away answers rc 01 to the guest, and leaves its bus at the next scan.
    #expect(echo(k, "6", mdevPath(uuid1) + "/unassign_adapter") == nil)
    #expect(k.machine.tapq(APQN(6, 4), vm.authority).0.responseCode == .queueNotAvailable)
    k.advance(by: 30_000_000_000)
    #expect(g.apBus.cards.keys.sorted() == [5])
  }

  @Test func withoutAPQCITheGuestProbesOnlyTheLowIDs() throws {
    let k = bootWithFreedAdapters("-5,-0x40")
    try k.machine.addAdapter(.init(apid: 0x40))
    k.notifyConfigurationChange()
    let m = makeMdev(k, uuid1, adapters: [5, 0x40], domains: [4, 0x20])
    let vm = k.kvm.createVM(name: "g")
    try k.vfioAP.openDevice(m, kvm: vm)
    let g = HostKernel(guestOn: vm.createVCPU(qci: false), clock: k.clock, profile: k.profile)
    #expect(try g.read("/bus/ap/features") == "-\n")
    #expect(g.apBus.queues.keys.sorted().map { APQN(rawValue: $0) } == [APQN(5, 4)])
    let blind = HostKernel(guestOn: vm.createVCPU(apft: false), clock: k.clock, profile: k.profile)
    #expect(blind.apBus.cards.isEmpty)
  }

  /// A KVM guest never loads vfio_ap: its AP bus lists zcrypt's drivers only, and it has no
  /// matrix device, while the host lists all three.
  @Test func theGuestHasNoVFIOAPDriver() throws {
    let k = bootWithFreedAdapters()
    let vm = k.kvm.createVM(name: "guest1")
    let g = HostKernel(guestOn: vm.createVCPU(), clock: k.clock, profile: k.profile)
    #expect(try g.sysfs.list("/bus/ap/drivers").map(\.name) == ["cex4card", "cex4queue"])
    #expect(try !g.sysfs.list("/devices").map(\.name).contains("vfio_ap"))
    #expect(throws: Errno.noSuchFileOrDirectory) { try g.sysfs.list("/bus/ap/drivers/vfio_ap") }
    #expect(try k.sysfs.list("/bus/ap/drivers").map(\.name) == ["cex4card", "cex4queue", "vfio_ap"])
    #expect(try k.sysfs.list("/devices").map(\.name).contains("vfio_ap"))
  }
}

/// Whatever a guest's kernel writes to its own sysfs, the LPAR and the host stay as they were:
/// every writable attribute of the guest's tree, with the values a guest's tools write.
@Suite("A guest's kernel cannot change the machine")
struct GuestIsolationTests {
  /// Every writable attribute under `dir`, without following links.
  static func writable(_ k: HostKernel, _ dir: String = "") -> [String] {
    guard let entries = try? k.sysfs.list(dir.isEmpty ? "/" : dir) else { return [] }
    var found: [String] = []
    for e in entries {
      let path = dir + "/" + e.name
      switch e.kind {
      case .directory: found += writable(k, path)
      case .attribute:
        if let info = try? k.sysfs.info(path, followLast: false), info.mode & 0o222 != 0 {
          found.append(path)
        }
      case .symlink: break
      }
    }
    return found
  }

  /// What the host and the LPAR look like: the machine's adapters, the host's cards and queues,
  /// the masks, the mdevs and every VM's APCB. For a guest's kernel, which has no machine and no
  /// KVM, its cards, queues and masks.
  static func snapshot(_ k: HostKernel) -> String {
    let adapters = k.machine.map { Array($0.adapters.values) } ?? []
    var s = adapters.sorted { $0.definition.apid < $1.definition.apid }
      .map { "\($0.definition.apid) \($0.configured) \($0.checkstopped)" }.joined(separator: ",")
    for c in k.apBus.cards.values.sorted(by: { $0.apid < $1.apid }) {
      s += "|\(c.name) \(cat(k, c.directory.path + "/config")) \(cat(k, c.directory.path + "/online"))"
    }
    s += "|" + k.apBus.queues.values.map { "\($0.name)=\($0.driver?.name ?? "-")" }.sorted().joined()
    s += "|" + cat(k, "/bus/ap/apmask") + cat(k, "/bus/ap/aqmask")
    let vfio: VFIOAPDriver? = k.vfioAP
    for m in (vfio?.mdevs.values).map(Array.init)?.sorted(by: { $0.uuid < $1.uuid }) ?? [] {
      s += "|" + cat(k, mdevPath(m.uuid) + "/matrix") + cat(k, mdevPath(m.uuid) + "/guest_matrix")
    }
    for vm in (k.kvm.map { Array($0.vms.values) } ?? []).sorted(by: { $0.id < $1.id }) {
      s += "|\(vm.apcb.apqns)"
    }
    return s
  }

  /// The guest's kernel has no machine and no KVM: its CPU, the vCPU, is all it has of the
  /// hardware. The host does not hold it: it follows the host's clock while its owner keeps it,
  /// and once dropped it is gone.
  @Test func theGuestsKernelHasOnlyItsCPUAndFollowsTheHostsClock() throws {
    let k = bootWithFreedAdapters()
    let m = makeMdev(k, uuid1, adapters: [5], domains: [4])
    let vm = k.kvm.createVM(name: "guest1")
    try k.vfioAP.openDevice(m, kvm: vm)
    k.advance(by: 1_000_000_000)
    var g: HostKernel? = HostKernel(guestOn: vm.createVCPU(), clock: k.clock, profile: k.profile)
    #expect(g?.machine == nil && g?.kvm == nil && g?.role == .guest(vm: vm.id))
    #expect(g?.now == k.now)
    #expect(g?.cpu.qci()?.matrix == vm.apcb)
    #expect(g?.cpu.tapq(APQN(6, 4)).0.responseCode == .queueNotAvailable)
    // PQAP(AQIC) is KVM's: the guest's queue has interruptions on, the LPAR's queue does not.
    #expect(try g?.read("/devices/ap/card05/05.0004/interrupt") == "Interrupts enabled.\n")
    #expect(k.machine.queueState(APQN(5, 4)).interruptsEnabled == false)
    k.advance(by: 5_000_000_000)
    #expect(g?.now == k.now)
    weak let gone = g
    g = nil
    #expect(gone == nil)
    k.advance(by: 5_000_000_000)
  }

  @Test func everyWritableGuestAttributeLeavesTheMachineAlone() throws {
    let k = bootWithFreedAdapters()
    let m1 = makeMdev(k, uuid1, adapters: [5], domains: [4, 0x47], controls: [4])
    let m2 = makeMdev(k, uuid2, adapters: [6], domains: [4])
    let vm1 = k.kvm.createVM(name: "guest1")
    let vm2 = k.kvm.createVM(name: "guest2")
    let g1 = HostKernel(guestOn: vm1.createVCPU(), clock: k.clock, profile: k.profile)
    let g2 = HostKernel(guestOn: vm2.createVCPU(), clock: k.clock, profile: k.profile)
    try k.vfioAP.openDevice(m1, kvm: vm1)
    try k.vfioAP.openDevice(m2, kvm: vm2)
    g1.notifyConfigurationChange()
    g2.notifyConfigurationChange()
    #expect(g1.apBus.cards.keys.sorted() == [5])
    let before = Self.snapshot(k)
    let other = Self.snapshot(g2)
    // A guest cannot switch its adapter off for the LPAR: QEMU offers no AP reconfiguration.
    #expect(echo(g1, "0", "/devices/ap/card05/config") == .notSupported)
    #expect(cat(g1, "/devices/ap/card05/config") == "1\n")
    #expect(echo(g1, "1", "/devices/ap/card05/config") == nil)
    let files = Self.writable(g1)
    #expect(files.contains("/devices/ap/card05/config"))
    #expect(files.count > 20, "\(files)")
    for file in files where !file.hasSuffix("/uevent") {
      for value in ["0", "1", "0\n", "-5", "+5", "0x0", "5", "vfio_ap", "\n"] {
        _ = echo(g1, value, file)
      }
    }
    #expect(Self.snapshot(k) == before)
    #expect(Self.snapshot(g2) == other)
    #expect(k.machine.adapters[5]?.configured == true)
  }
}
