import APModel
import Foundation
import HostKernel
import Machine

/// The control socket's commands: what an operator does outside Linux (HMC/SE actions on the
/// LPAR's AP configuration) and status. QMP's framing and shapes: `{"execute": NAME,
/// "arguments": {...}}` in, `{"return": ...}` or `{"error": {"class": ..., "desc": ...}}` out.
enum ControlProtocol {
  struct Failure: Error {
    var desc: String
    var errorClass = "GenericError"
  }

  /// Runs one command against the host. `quit` is handled by the daemon.
  static func execute(_ name: String, _ args: [String: Any], host: EmulatedHost) throws(Failure) -> Any {
    func id(_ key: String) throws(Failure) -> Int {
      if let n = args[key] as? Int { return n }
      if let s = args[key] as? String, let n = parseID(s) { return n }
      throw Failure(desc: "Parameter '\(key)' is missing or not a number")
    }
    func flag(_ key: String, _ def: Bool? = nil) throws(Failure) -> Bool {
      if let b = args[key] as? Bool { return b }
      if let d = def { return d }
      throw Failure(desc: "Parameter '\(key)' is missing or not a boolean")
    }
    switch name {
    case "status":
      // Built under the lock, handed out as bytes (a dictionary of Any is not Sendable).
      let data = host.withKernel { k in try? JSONSerialization.data(withJSONObject: status(k)) }
      return data.flatMap { try? JSONSerialization.jsonObject(with: $0) } ?? [String: Any]()
    case "dmesg":
      return host.withKernel { $0.log.dmesgText }
    case "hw-adapter-config":
      let apid = try id("apid")
      let on = try flag("configured")
      return try hardware(host) { m throws(MachineOperationError) in try m.setConfigured(apid, on) }
    case "hw-adapter-checkstop":
      let apid = try id("apid")
      let on = try flag("checkstopped")
      return try hardware(host) { m throws(MachineOperationError) in try m.setCheckstopped(apid, on) }
    case "hw-adapter-add":
      let apid = try id("apid")
      let typeName = args["type"] as? String ?? "CEX8"
      let modeName = args["mode"] as? String ?? "cca"
      guard let type = AdapterType(name: typeName) else {
        throw Failure(desc: "unknown adapter type '\(typeName)'")
      }
      guard let mode = AdapterMode(name: modeName) else { throw Failure(desc: "unknown mode '\(modeName)'") }
      return try hardware(host) { m throws(MachineOperationError) in
        try m.addAdapter(.init(apid: apid, type: type, mode: mode))
      }
    case "hw-adapter-remove":
      let apid = try id("apid")
      return try hardware(host) { m throws(MachineOperationError) in try m.removeAdapter(apid) }
    case "hw-domain-add", "hw-domain-remove":
      let d = try id("domain")
      let usage = try flag("usage", true)
      let control = try flag("control", true)
      let add = name == "hw-domain-add"
      return try hardware(host) { m throws(MachineOperationError) in
        if usage { try add ? m.addUsageDomain(d) : m.removeUsageDomain(d) }
        if control { try add ? m.addControlDomain(d) : m.removeControlDomain(d) }
      }
    default:
      throw Failure(desc: "The command \(name) has not been found", errorClass: "CommandNotFound")
    }
  }

  /// A change on the LPAR, then the configuration-change notification: the host scans at once.
  static func hardware(_ host: EmulatedHost, _ op: (APMachine) throws(MachineOperationError) -> Void)
    throws(Failure)
    -> Any
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
    if case .failure(let e) = result { throw Failure(desc: e.description) }
    return [String: Any]()
  }

  static func parseID(_ s: String) -> Int? {
    let t = s.lowercased()
    if t.hasPrefix("0x") { return Int(t.dropFirst(2), radix: 16) }
    return Int(t)
  }

  static func status(_ k: HostKernel) -> [String: Any] {
    let (bound, total) = k.apBus.bindingCounts
    let mdevs = k.vfioAP.mdevs.values.sorted { $0.uuid < $1.uuid }.map { m -> [String: Any] in
      [
        "uuid": m.uuid, "matrix": m.matrix.apqns.map(\.description),
        "guest_matrix": m.shadowAPCB.apqns.map(\.description), "open": m.isOpen,
        "vm": m.kvm.map { $0.name } ?? NSNull(),
      ]
    }
    let vms = k.kvm.vms.values.sorted { $0.id < $1.id }.map { vm -> [String: Any] in
      [
        "id": vm.id, "name": vm.name, "apcb": vm.apcb.apqns.map(\.description),
        "apcb_updates": vm.apcbUpdateCount,
      ]
    }
    let adapters = k.machine.adapters.values.sorted { $0.definition.apid < $1.definition.apid }.map {
      a -> [String: Any] in
      [
        "apid": a.definition.apid, "type": a.definition.type.name + a.definition.mode.typeSuffix,
        "configured": a.configured, "checkstopped": a.checkstopped,
      ]
    }
    return [
      "machine": k.machine.definition.name, "adapters": adapters,
      "usage_domains": k.machine.usageDomains.count, "control_domains": k.machine.controlDomains.count,
      "queues": total, "bound": bound, "scans": Int(k.apBus.scanCount), "mdevs": mdevs, "vms": vms,
      "apmask": k.apBus.apmask.hexString, "aqmask": k.apBus.aqmask.hexString,
    ]
  }
}
