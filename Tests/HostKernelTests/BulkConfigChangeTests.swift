import APModel
import Foundation
import Machine
import Testing

@testable import HostKernel

@Suite("vfio_ap: host configuration changes are batched (spec section 8)")
struct BulkConfigChangeTests {
  /// 255 adapters come to a host whose 255 guests' mdevs are over-provisioned with all of them:
  /// each guest gets exactly one APCB update for the whole change, and one when they go.
  @Test func twoHundredFiftyFiveAdaptersCostOneUpdatePerGuest() throws {
    let k = HostKernel(definition: machine(adapters: [0]))
    k.recordsUEvents = false
    #expect(echo(k, "-1-255", "/bus/ap/apmask") == nil)
    let adapters = APMask(1...255).hexString
    let zero = APMask().hexString
    var vms: [KVMVirtualMachine] = []
    for i in 1...255 {
      let uuid = String(format: "%08x-0000-4000-8000-%012x", i, i)
      let m = try k.vfioAP.createMdev(uuid)
      #expect(echo(k, "\(adapters),\(APMask([i]).hexString),\(zero)\n", mdevPath(uuid) + "/ap_config") == nil)
      let vm = k.kvm.createVM(name: "guest\(i)")
      try k.vfioAP.openDevice(m, kvm: vm)
      #expect(vm.apcb.apm.isEmpty && vm.apcb.aqm == APMask([i]))
      vms.append(vm)
    }
    #expect(vms.allSatisfy { $0.apcbUpdateCount == 1 })

    for apid in 1...255 { try k.machine.addAdapter(.init(apid: apid)) }
    k.notifyConfigurationChange()
    #expect(k.apBus.queues.count == 256 * 256)
    #expect(vms.allSatisfy { $0.apcbUpdateCount == 2 })
    for (i, vm) in vms.enumerated() {
      #expect(vm.apcb.apm == APMask(1...255))
      #expect(vm.apcb.aqm == APMask([i + 1]))
    }

    for apid in 1...255 { try k.machine.removeAdapter(apid) }
    k.notifyConfigurationChange()
    #expect(k.apBus.queues.count == 256)
    #expect(vms.allSatisfy { $0.apcbUpdateCount == 3 })
    #expect(vms.allSatisfy { $0.apcb.apm.isEmpty })
    #expect(k.machine.leaks.isEmpty)
  }

  @Test func domainsAddedInBulkAlsoCostOneUpdate() throws {
    let k = HostKernel(definition: machine(adapters: [1, 2, 3], domains: 0...0))
    #expect(echo(k, "-1-3", "/bus/ap/apmask") == nil)
    let m = makeMdev(k, uuid1, adapters: [1, 2, 3])
    #expect(
      echo(
        k, "\(APMask(1...3).hexString),\(APMask(0...200).hexString),\(APMask(0...200).hexString)",
        mdevPath(uuid1) + "/ap_config") == nil)
    let vm = k.kvm.createVM(name: "g")
    try k.vfioAP.openDevice(m, kvm: vm)
    #expect(vm.apcb.aqm == APMask([0]))
    for d in 1...200 {
      try k.machine.addUsageDomain(d)
      try k.machine.addControlDomain(d)
    }
    k.notifyConfigurationChange()
    #expect(vm.apcbUpdateCount == 2)
    #expect(vm.apcb.aqm == APMask(0...200))
    #expect(vm.apcb.adm == APMask(0...200))
  }
}
