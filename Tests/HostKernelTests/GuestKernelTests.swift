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
    let g = k.bootGuestKernel(on: vm)
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
    let g = k.bootGuestKernel(on: vm, qci: false)
    #expect(try g.read("/bus/ap/features") == "-\n")
    #expect(g.apBus.queues.keys.sorted().map { APQN(rawValue: $0) } == [APQN(5, 4)])
    let blind = k.bootGuestKernel(on: vm, apft: false)
    #expect(blind.apBus.cards.isEmpty)
  }

  /// A KVM guest never loads vfio_ap: its AP bus lists zcrypt's drivers only, and it has no
  /// matrix device, while the host lists all three.
  @Test func theGuestHasNoVFIOAPDriver() throws {
    let k = bootWithFreedAdapters()
    let vm = k.kvm.createVM(name: "guest1")
    let g = k.bootGuestKernel(on: vm)
    #expect(try g.sysfs.list("/bus/ap/drivers").map(\.name) == ["cex4card", "cex4queue"])
    #expect(try !g.sysfs.list("/devices").map(\.name).contains("vfio_ap"))
    #expect(throws: Errno.noSuchFileOrDirectory) { try g.sysfs.list("/bus/ap/drivers/vfio_ap") }
    #expect(try k.sysfs.list("/bus/ap/drivers").map(\.name) == ["cex4card", "cex4queue", "vfio_ap"])
    #expect(try k.sysfs.list("/devices").map(\.name).contains("vfio_ap"))
  }
}
