import APModel
import Foundation
import HostKernel
import Machine

/// The host of `BulkConfigChangeTests`, shared by EngineBenchmarks' bulk benchmarks and the
/// table harness so that both measure the same setup: only adapter 0 in the LPAR, all 256 domains, apmask
/// `-1-255`, and 255 guests whose mdevs are over-provisioned with adapters 1-255 and each own
/// one domain `i`.
public final class BulkChangeState: @unchecked Sendable {
  public let kernel: HostKernel
  public let vms: [KVMVirtualMachine]

  public init() throws {
    let kernel = HostKernel(
      definition: MachineDefinition(
        name: "bulk", adapters: [.init(apid: 0)], usageDomains: .all(), controlDomains: .all()))
    kernel.recordsUEvents = false
    try kernel.write("/bus/ap/apmask", "-1-255")
    let adapters = APMask(1...255).hexString
    let zero = APMask().hexString
    var vms: [KVMVirtualMachine] = []
    for i in 1...255 {
      let uuid = String(format: "%08x-0000-4000-8000-%012x", i, i)
      let m = try kernel.vfioAP.createMdev(uuid)
      try kernel.write(
        "/devices/vfio_ap/matrix/\(uuid)/ap_config", "\(adapters),\(APMask([i]).hexString),\(zero)\n")
      let vm = kernel.kvm.createVM(name: "guest\(i)")
      try kernel.vfioAP.openDevice(m, kvm: vm)
      precondition(vm.apcb.apm.isEmpty && vm.apcb.aqm == APMask([i]))
      vms.append(vm)
    }
    precondition(kernel.apBus.queues.count == 256)
    self.kernel = kernel
    self.vms = vms
  }

  public func updateCounts() -> [Int] { vms.map(\.apcbUpdateCount) }

  public func addAdapters() {
    for apid in 1...255 { try! kernel.machine.addAdapter(.init(apid: apid)) }
    kernel.notifyConfigurationChange()
  }

  public func removeAdapters() {
    for apid in 1...255 { try! kernel.machine.removeAdapter(apid) }
    kernel.notifyConfigurationChange()
  }

  /// Every guest got exactly one APCB update for the change.
  public func expectOneUpdateEach(since before: [Int], queues: Int) {
    precondition(kernel.apBus.queues.count == queues, "queue count \(kernel.apBus.queues.count)")
    for (vm, count) in zip(vms, before) {
      precondition(
        vm.apcbUpdateCount == count + 1,
        "\(vm.name): \(vm.apcbUpdateCount - count) APCB updates for one configuration change")
    }
  }
}
