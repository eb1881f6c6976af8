import APModel
import Foundation
import HostKernel
import Machine

/// The control socket's host commands: status and the kernel's log (the hardware commands are
/// `HardwareControl`). The requests and replies are in
/// `ControlMessages.swift`; the session that reads them is `ControlSession`.
enum ControlProtocol {
  static func status(
    _ host: EmulatedHost, guests: GuestRegistry? = nil, boot: [HostDaemon.BootStep] = [], state: String? = nil
  ) -> HostStatus {
    // What the guests' own locks guard is read before the host's lock is taken: a guest takes
    // its lock and then the host's, never the other way round.
    let entries = guests?.guests.withLock { $0 } ?? [:]
    let processes = Dictionary(
      entries.values.map { e in
        (
          e.guest.vmID,
          GuestProcess(
            pid: e.guest.emulatorPID, status: e.guest.status, qmp: e.monitors.map(\.path),
            cpu: e.guest.cpuOption,
            mdev: e.guest.device?.uuid)
        )
      }, uniquingKeysWith: { a, _ in a })
    var st = host.withKernel { status($0, guests: processes, boot: boot) }
    st.state = state.map { $0.hasPrefix("/") ? $0 : FileManager.default.currentDirectoryPath + "/" + $0 }
    return st
  }

  /// What the daemon knows of a guest's process, by KVM VM id.
  struct GuestProcess: Sendable {
    var pid: Int32?
    var status: String
    var qmp: [String]
    /// `-cpu` as given.
    var cpu: String?
    /// The mdev of its vfio-ap device.
    var mdev: String?
  }

  static func dmesg(_ host: EmulatedHost) -> String {
    host.withKernel { $0.log.dmesgText }
  }

  /// The host's state, with what the daemon knows of its guests' processes and of its boot.
  static func status(_ k: HostKernel, guests: [Int: GuestProcess] = [:], boot: [HostDaemon.BootStep] = [])
    -> HostStatus
  {
    let (bound, total) = k.apBus.bindingCounts
    var drivers: [String: Int] = [:]
    for q in k.apBus.queues.values { drivers[q.driver?.name ?? "none", default: 0] += 1 }
    let mdevs = k.vfioAP.mdevs.values.sorted { $0.uuid < $1.uuid }.map { m in
      HostStatus.Mdev(
        uuid: m.uuid, matrix: m.matrix.apqns.map(\.description),
        controlDomains: m.matrix.adm.map { hex4($0) },
        guestMatrix: m.shadowAPCB.apqns.map(\.description), open: m.isOpen, vm: m.kvm.map { $0.name })
    }
    let vms = k.kvm.vms.values.sorted { $0.id < $1.id }.map { vm in
      let entry = guests[vm.id]
      return HostStatus.VM(
        id: vm.id, name: vm.name, apcb: vm.apcb.apqns.map(\.description), apcbUpdates: vm.apcbUpdateCount,
        pid: entry?.pid, status: entry?.status, qmp: entry?.qmp ?? [], cpu: entry?.cpu, mdev: entry?.mdev)
    }
    let adapters = k.machine.adapters.values.sorted { $0.definition.apid < $1.definition.apid }.map { a in
      HostStatus.Adapter(
        apid: a.definition.apid, type: a.definition.type.name + a.definition.mode.typeSuffix,
        mode: a.definition.mode.lszcryptName, configured: a.configured, checkstopped: a.checkstopped,
        resetLatencyMs: Double(a.resetLatency) / 1e6, irqLatencyMs: Double(a.irqLatency) / 1e6)
    }
    let faults = k.machine.faults.map { target, f in
      HostStatus.Fault(target: target.description, fault: f.fault.rawValue, remaining: f.remaining)
    }.sorted { $0.target < $1.target }
    return HostStatus(
      machine: k.machine.definition.name, kernel: k.profile.description,
      crycbFormat: k.machine.definition.crycbFormat, adapters: adapters,
      usageDomains: k.machine.usageDomains.count, controlDomains: k.machine.controlDomains.count,
      queues: total, bound: bound, drivers: drivers, scans: Int(k.apBus.scanCount),
      mdevs: mdevs, vms: vms, apmask: k.apBus.apmask.hexString, aqmask: k.apBus.aqmask.hexString, boot: boot,
      faults: faults)
  }
}
