import APModel
import Machine
import SystemPackage
import Testing

@testable import HostKernel

@Suite("vfio_ap: hot plug into a running guest (spec sections 6, 7, 9)")
struct HotPlugTests {
  /// A host with adapters 5 and 6 free, an mdev with 05/06 x 0004/0047, and a VM attached.
  func attached() throws -> (HostKernel, MediatedDevice, KVMVirtualMachine) {
    let k = bootWithFreedAdapters()
    let m = makeMdev(k, uuid1, adapters: [5, 6], domains: [4, 0x47], controls: [4])
    let vm = k.kvm.createVM(name: "guest1", vcpus: 2)
    try k.vfioAP.openDevice(m, kvm: vm)
    return (k, m, vm)
  }

  @Test func openPushesTheAPCB() throws {
    let (_, m, vm) = try attached()
    #expect(vm.apcbUpdateCount == 1)
    #expect(vm.vcpuBlockCycles == 1)
    #expect(vm.apcb == m.shadowAPCB)
    #expect(vm.apcb.apqns == [APQN(5, 4), APQN(5, 0x47), APQN(6, 4), APQN(6, 0x47)])
    #expect(vm.apcb.adm == APMask([4]))
  }

  @Test func assignAndUnassignWhileRunning() throws {
    let (k, _, vm) = try attached()
    let p = mdevPath(uuid1)
    // Domain: one update, the guest sees the new column.
    #expect(echo(k, "0xab", p + "/assign_domain") == nil)
    #expect(vm.apcbUpdateCount == 2)
    #expect(vm.apcb.aqm == APMask([4, 0x47, 0xab]))
    #expect(cat(k, p + "/guest_matrix") == "05.0004\n05.0047\n05.00ab\n06.0004\n06.0047\n06.00ab\n")
    // Adapter: one update.
    #expect(echo(k, "-9", "/bus/ap/apmask") == nil)
    #expect(echo(k, "9", p + "/assign_adapter") == nil)
    #expect(vm.apcbUpdateCount == 3)
    #expect(vm.apcb.apm == APMask([5, 6, 9]))
    // Control domain: one update; sharing a control domain the host lacks changes nothing.
    #expect(echo(k, "7", p + "/assign_control_domain") == nil)
    #expect(vm.apcbUpdateCount == 4)
    #expect(vm.apcb.adm == APMask([4, 7]))
    // Assigning what is assigned: no update.
    #expect(echo(k, "7", p + "/assign_control_domain") == nil)
    #expect(echo(k, "9", p + "/assign_adapter") == nil)
    #expect(vm.apcbUpdateCount == 4)
    // Unassign each: one update each, and the queues that left the guest are zeroized.
    let zeroized = k.machine.queueState(APQN(9, 4)).zeroizeCount
    #expect(echo(k, "9", p + "/unassign_adapter") == nil)
    #expect(vm.apcbUpdateCount == 5)
    #expect(vm.apcb.apm == APMask([5, 6]))
    #expect(k.machine.queueState(APQN(9, 4)).zeroizeCount == zeroized + 1)
    #expect(echo(k, "0xab", p + "/unassign_domain") == nil)
    #expect(vm.apcbUpdateCount == 6)
    #expect(echo(k, "7", p + "/unassign_control_domain") == nil)
    #expect(vm.apcbUpdateCount == 7)
    #expect(vm.apcb.adm == APMask([4]))
    // Unassigning a control domain the guest never had: no update.
    #expect(echo(k, "0x10", p + "/assign_control_domain") == nil)
    #expect(vm.apcbUpdateCount == 8)
  }

  @Test func assignmentThatTheFilterDropsCostsNoUpdate() throws {
    let (k, _, vm) = try attached()
    // Adapter 0x30 is not in the host configuration: in the matrix, not in the guest.
    #expect(echo(k, "-0x30", "/bus/ap/apmask") == nil)
    #expect(echo(k, "0x30", mdevPath(uuid1) + "/assign_adapter") == nil)
    #expect(vm.apcbUpdateCount == 1)
    #expect(!vm.apcb.apm.contains(0x30))
  }

  @Test func unassignDomainDoesNotRefilter() throws {
    let (k, m, vm) = try attached()
    // Queue 06.0047 leaves vfio_ap: adapter 6 leaves the guest.
    #expect(echo(k, "06.0047", "/bus/ap/drivers/vfio_ap/unbind") == nil)
    #expect(vm.apcb.apm == APMask([5]))
    let updates = vm.apcbUpdateCount
    // Unassigning domain 0x47 would let adapter 6 back, but unassign does not filter.
    #expect(echo(k, "0x47", mdevPath(uuid1) + "/unassign_domain") == nil)
    #expect(vm.apcbUpdateCount == updates + 1)
    #expect(vm.apcb.apm == APMask([5]))
    #expect(m.shadowAPCB.apm == APMask([5]))
    // The next filtering event brings it back.
    #expect(echo(k, "0x48", mdevPath(uuid1) + "/assign_domain") == nil)
    #expect(vm.apcb.apm == APMask([5, 6]))
  }

  @Test func queueRemovalTakesTheAdapterOut() throws {
    let (k, _, vm) = try attached()
    let before = k.machine.queueState(APQN(5, 0x47)).zeroizeCount
    #expect(echo(k, "05.0004", "/bus/ap/drivers/vfio_ap/unbind") == nil)
    #expect(vm.apcbUpdateCount == 2)
    #expect(vm.apcb.apm == APMask([6]))
    // The adapter's other queue was reset.
    #expect(k.machine.queueState(APQN(5, 0x47)).zeroizeCount == before + 1)
  }

  @Test func apConfigCanCostThreeUpdates() throws {
    let (k, _, vm) = try attached()
    #expect(echo(k, "-7", "/bus/ap/apmask") == nil)
    // Remove adapter 6 and domain 0x47, add adapter 7 and domain 0xab.
    let text = "\(APMask([5, 7]).hexString),\(APMask([4, 0xab]).hexString),\(APMask([4]).hexString)\n"
    #expect(echo(k, text, mdevPath(uuid1) + "/ap_config") == nil)
    #expect(vm.apcbUpdateCount == 4)
    #expect(vm.apcb.apqns == [APQN(5, 4), APQN(5, 0xab), APQN(7, 4), APQN(7, 0xab)])
    // The same configuration again: nothing.
    #expect(echo(k, text, mdevPath(uuid1) + "/ap_config") == nil)
    #expect(vm.apcbUpdateCount == 4)
  }

  @Test func overProvisionedAdapterIsPluggedWhenTheLPARGetsIt() throws {
    let (k, m, vm) = try attached()
    #expect(echo(k, "-0x20", "/bus/ap/apmask") == nil)
    #expect(echo(k, "0x20", mdevPath(uuid1) + "/assign_adapter") == nil)
    #expect(!vm.apcb.apm.contains(0x20))
    #expect(vm.apcbUpdateCount == 1)
    try k.machine.addAdapter(.init(apid: 0x20, type: .cex8, mode: .cca))
    k.notifyConfigurationChange()
    #expect(vm.apcbUpdateCount == 2)
    #expect(vm.apcb.apm == APMask([5, 6, 0x20]))
    #expect(m.shadowAPCB == vm.apcb)
    // And it leaves with one update when the LPAR loses it; its queues are not reset (gone).
    try k.machine.removeAdapter(0x20)
    k.advance(by: 30_000_000_000)
    #expect(vm.apcbUpdateCount == 3)
    #expect(vm.apcb.apm == APMask([5, 6]))
    #expect(cat(k, mdevPath(uuid1) + "/matrix").contains("20.0004"))
  }

  @Test func domainAndControlDomainLeaveTheLPAR() throws {
    let (k, _, vm) = try attached()
    try k.machine.removeUsageDomain(0x47)
    try k.machine.removeControlDomain(4)
    k.notifyConfigurationChange()
    #expect(vm.apcbUpdateCount == 2)
    #expect(vm.apcb.aqm == APMask([4]))
    #expect(vm.apcb.adm.isEmpty)
    try k.machine.addUsageDomain(0x47)
    try k.machine.addControlDomain(4)
    k.notifyConfigurationChange()
    #expect(vm.apcbUpdateCount == 3)
    #expect(vm.apcb.aqm == APMask([4, 0x47]))
    #expect(vm.apcb.adm == APMask([4]))
  }

  @Test func crycbFormat0TruncatesSilently() throws {
    // A machine without APXA: 64 adapters, 16 domains, format 0.
    let d = machine(adapters: [1, 2, 60], domains: 0...15, na: 63, nd: 15, apxa: false, format: 0)
    let k = HostKernel(definition: d)
    #expect(echo(k, "-1,-2,-60", "/bus/ap/apmask") == nil)
    let m = makeMdev(k, uuid1, adapters: [1, 60], domains: [0, 15], controls: [15])
    #expect(echo(k, "64", mdevPath(uuid1) + "/assign_adapter") == .noSuchDevice)
    #expect(echo(k, "16", mdevPath(uuid1) + "/assign_domain") == .noSuchDevice)
    let vm = k.kvm.createVM(name: "old")
    try k.vfioAP.openDevice(m, kvm: vm)
    #expect(vm.crycbFormat == 0 && vm.crycbdFormatBits == 0)
    #expect(vm.apcb.apqns == [APQN(1, 0), APQN(1, 15), APQN(60, 0), APQN(60, 15)])
  }

  @Test func crycbFormat1DropsAdaptersAbove63() throws {
    // A format-2-capable machine whose VMM chose format 1 for the guest.
    let k = bootWithFreedAdapters("-5,-0x50")
    try k.machine.addAdapter(.init(apid: 0x50))
    k.notifyConfigurationChange()
    let m = makeMdev(k, uuid1, adapters: [5, 0x50], domains: [4, 0x20])
    let vm = k.kvm.createVM(name: "f1", crycbFormat: 1)
    try k.vfioAP.openDevice(m, kvm: vm)
    #expect(vm.crycbdFormatBits == 1)
    #expect(m.shadowAPCB.apqns.count == 4)
    #expect(vm.apcb.apqns == [APQN(5, 4)])
  }
}
