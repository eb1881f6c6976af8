import APModel
import Foundation
import HostKernel
import Machine

/// The control socket's host commands: status and the kernel's log (the hardware commands are
/// `HardwareControl`). The requests and replies are in
/// `ControlMessages.swift`; the session that reads them is `ControlSession`.
enum ControlProtocol {
  static func status(_ host: EmulatedHost) -> HostStatus {
    host.withKernel { status($0) }
  }

  static func dmesg(_ host: EmulatedHost) -> String {
    host.withKernel { $0.log.dmesgText }
  }

  static func status(_ k: HostKernel) -> HostStatus {
    let (bound, total) = k.apBus.bindingCounts
    let mdevs = k.vfioAP.mdevs.values.sorted { $0.uuid < $1.uuid }.map { m in
      HostStatus.Mdev(
        uuid: m.uuid, matrix: m.matrix.apqns.map(\.description),
        guestMatrix: m.shadowAPCB.apqns.map(\.description), open: m.isOpen, vm: m.kvm.map { $0.name })
    }
    let vms = k.kvm.vms.values.sorted { $0.id < $1.id }.map { vm in
      HostStatus.VM(
        id: vm.id, name: vm.name, apcb: vm.apcb.apqns.map(\.description), apcbUpdates: vm.apcbUpdateCount)
    }
    let adapters = k.machine.adapters.values.sorted { $0.definition.apid < $1.definition.apid }.map { a in
      HostStatus.Adapter(
        apid: a.definition.apid, type: a.definition.type.name + a.definition.mode.typeSuffix,
        configured: a.configured, checkstopped: a.checkstopped)
    }
    return HostStatus(
      machine: k.machine.definition.name, adapters: adapters, usageDomains: k.machine.usageDomains.count,
      controlDomains: k.machine.controlDomains.count, queues: total, bound: bound,
      scans: Int(k.apBus.scanCount),
      mdevs: mdevs, vms: vms, apmask: k.apBus.apmask.hexString, aqmask: k.apBus.aqmask.hexString)
  }
}
