import APModel
import Foundation
import HostKernel
import Machine

/// The control socket's host commands: what an operator does outside Linux (HMC/SE actions on
/// the LPAR's AP configuration) and status. The requests and replies are in
/// `ControlMessages.swift`; the session that reads them is `ControlSession`.
enum ControlProtocol {
  static func status(_ host: EmulatedHost, guests: GuestRegistry? = nil, boot: [HostDaemon.BootStep] = [])
    -> HostStatus
  {
    // What the guests' own locks guard is read before the host's lock is taken: a guest takes
    // its lock and then the host's, never the other way round.
    let entries = guests?.guests.withLock { $0 } ?? [:]
    let processes = Dictionary(
      entries.values.map { e in
        (
          e.guest.vmID,
          GuestProcess(pid: e.guest.emulatorPID, status: e.guest.status, qmp: e.monitors.map(\.path))
        )
      }, uniquingKeysWith: { a, _ in a })
    return host.withKernel { status($0, guests: processes, boot: boot) }
  }

  /// What the daemon knows of a guest's process, by KVM VM id.
  struct GuestProcess: Sendable {
    var pid: Int32?
    var status: String
    var qmp: [String]
  }

  static func dmesg(_ host: EmulatedHost) -> String {
    host.withKernel { $0.log.dmesgText }
  }

  static func adapterConfig(_ c: ControlCommands.AdapterConfig, _ host: EmulatedHost) throws(ControlFailure) {
    try hardware(host) { m throws(MachineOperationError) in try m.setConfigured(c.apid, c.configured) }
  }

  static func adapterCheckstop(_ c: ControlCommands.AdapterCheckstop, _ host: EmulatedHost)
    throws(ControlFailure)
  {
    try hardware(host) { m throws(MachineOperationError) in try m.setCheckstopped(c.apid, c.checkstopped) }
  }

  static func adapterAdd(_ c: ControlCommands.AdapterAdd, _ host: EmulatedHost) throws(ControlFailure) {
    let typeName = c.type ?? "CEX8"
    let modeName = c.mode ?? "cca"
    guard let type = AdapterType(name: typeName) else {
      throw ControlFailure("unknown adapter type '\(typeName)'")
    }
    guard let mode = AdapterMode(name: modeName) else { throw ControlFailure("unknown mode '\(modeName)'") }
    try hardware(host) { m throws(MachineOperationError) in
      try m.addAdapter(.init(apid: c.apid, type: type, mode: mode))
    }
  }

  static func adapterRemove(_ c: ControlCommands.AdapterRemove, _ host: EmulatedHost) throws(ControlFailure) {
    try hardware(host) { m throws(MachineOperationError) in try m.removeAdapter(c.apid) }
  }

  /// Adds or removes a domain as a usage and/or a control domain. Both parts are checked before
  /// either is made, so a refused operation changes nothing.
  static func domain(add: Bool, _ d: Int, usage: Bool, control: Bool, _ host: EmulatedHost)
    throws(ControlFailure)
  {
    guard usage || control else {
      throw ControlFailure("nothing to do: neither a usage nor a control domain")
    }
    try hardware(host) { m throws(MachineOperationError) in
      let nd = m.definition.nd
      guard (0...nd).contains(d) else { throw .outOfRange("domain", d, nd) }
      if add {
        if usage && m.usageDomains.contains(d) { throw .alreadyPresent("usage domain", d) }
        if control && m.controlDomains.contains(d) { throw .alreadyPresent("control domain", d) }
        if usage { try m.addUsageDomain(d) }
        if control { try m.addControlDomain(d) }
      } else {
        if usage && !m.usageDomains.contains(d) { throw .notPresent("usage domain", d) }
        if control && !m.controlDomains.contains(d) { throw .notPresent("control domain", d) }
        if usage { try m.removeUsageDomain(d) }
        if control { try m.removeControlDomain(d) }
      }
    }
  }

  /// A change on the LPAR, then the configuration-change notification: the host scans at once.
  static func hardware(_ host: EmulatedHost, _ op: (APMachine) throws(MachineOperationError) -> Void)
    throws(ControlFailure)
  {
    let result: Result<Void, MachineOperationError> = host.withKernel { k in
      do throws(MachineOperationError) {
        try op(k.machine)
      } catch {
        return .failure(error)
      }
      k.notifyConfigurationChange()
      return .success(())
    }
    if case .failure(let e) = result { throw ControlFailure(e.description) }
  }

  /// The host's state, with what the daemon knows of its guests' processes and of its boot.
  static func status(
    _ k: HostKernel, guests: [Int: GuestProcess] = [:], boot: [HostDaemon.BootStep] = []
  )
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
        pid: entry?.pid, status: entry?.status, qmp: entry?.qmp ?? [])
    }
    let adapters = k.machine.adapters.values.sorted { $0.definition.apid < $1.definition.apid }.map { a in
      HostStatus.Adapter(
        apid: a.definition.apid, type: a.definition.type.name + a.definition.mode.typeSuffix,
        mode: a.definition.mode.lszcryptName, configured: a.configured, checkstopped: a.checkstopped)
    }
    return HostStatus(
      machine: k.machine.definition.name, crycbFormat: k.machine.definition.crycbFormat, adapters: adapters,
      usageDomains: k.machine.usageDomains.count, controlDomains: k.machine.controlDomains.count,
      queues: total, bound: bound, drivers: drivers, scans: Int(k.apBus.scanCount),
      mdevs: mdevs, vms: vms, apmask: k.apBus.apmask.hexString, aqmask: k.apBus.aqmask.hexString, boot: boot)
  }
}
