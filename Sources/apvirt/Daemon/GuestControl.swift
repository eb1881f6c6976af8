import APModel
import Foundation
import HostKernel
import VMM

/// Control-socket commands aimed at one running guest: what its CPUs do with AP instructions,
/// and the device hot plug libvirt's attach-device and detach-device drive.
enum GuestControl {
  static func guest(_ name: String, _ registry: GuestRegistry) throws(ControlFailure) -> Guest {
    guard let g = registry.guest(named: name) else {
      throw ControlFailure("no guest named '\(name)' is running", errorClass: "DeviceNotFound")
    }
    return g
  }

  static func device(_ c: ControlCommands.GuestDevice, _ registry: GuestRegistry) throws(ControlFailure)
    -> ControlCommands.GuestDevice.Device?
  {
    guard let d = try guest(c.name, registry).device else { return nil }
    return .init(id: d.id, sysfsdev: d.sysfsdev, uuid: d.uuid, path: d.qomPath)
  }

  static func deviceAdd(_ c: ControlCommands.GuestDeviceAdd, _ registry: GuestRegistry) throws(ControlFailure)
    -> ControlCommands.GuestDeviceAdd.Reply
  {
    let g = try guest(c.name, registry)
    // `driver` first, as QEMU's device_add reads it.
    let ordered = c.props.sorted { QEMUCommandLine.driverFirst($0.key, $1.key) }
      .map { ($0.key, QMPValue.string($0.value)) }
    do throws(DeviceError) {
      return .init(path: try g.deviceAdd(ordered))
    } catch {
      throw ControlFailure(error.message, errorClass: error.errorClass)
    }
  }

  static func deviceDel(_ c: ControlCommands.GuestDeviceDel, _ registry: GuestRegistry) throws(ControlFailure)
  {
    let g = try guest(c.name, registry)
    do throws(DeviceError) {
      try g.deviceDel(c.id)
    } catch {
      throw ControlFailure(error.message, errorClass: error.errorClass)
    }
  }

  /// One AP instruction from the guest's CPU, interpreted against its APCB.
  static func apInstruction(_ c: ControlCommands.GuestAP, _ registry: GuestRegistry) throws(ControlFailure)
    -> [String: String]
  {
    let g = try guest(c.name, registry)
    guard let apqn = APQN(c.apqn) else {
      throw ControlFailure("Parameter 'apqn' must be an APQN such as 05.0004")
    }
    let instruction = c.instruction ?? "tapq"
    guard ["tapq", "nqap", "dqap", "zapq"].contains(instruction) else {
      throw ControlFailure("Parameter 'instruction' must be tapq, nqap, dqap or zapq")
    }
    guard let payload = hexBytes(c.payload ?? "") else {
      throw ControlFailure("Parameter 'payload' must be hex digits, two per byte")
    }
    let psmid = c.psmid ?? 1
    // The guest's CPU is its kernel's: the vCPU under the VM's APCB.
    let result: [String: String]? = g.withKernel { gk in
      guard let cpu = gk?.cpu else { return nil }
      switch instruction {
      case "nqap":
        let s = cpu.nqap(apqn, psmid: psmid, payload: payload)
        return ["rc": s.responseCode.description]
      case "dqap":
        let (s, msg) = cpu.dqap(apqn)
        var r = ["rc": s.responseCode.description]
        if let msg {
          r["psmid"] = String(msg.psmid)
          r["reply"] = msg.payload.map { String(format: "%02x", $0) }.joined()
        }
        return r
      case "zapq":
        return ["rc": cpu.zapq(apqn).responseCode.description]
      default:
        let (s, info) = cpu.tapq(apqn)
        var r = ["rc": s.responseCode.description]
        if let info { r["type"] = info.type.name + info.mode.typeSuffix }
        return r
      }
    }
    guard let result else { throw ControlFailure("the guest has no VM") }
    return result
  }

  /// Hex text as bytes; nil when it is not whole bytes of hex digits.
  static func hexBytes(_ s: String) -> [UInt8]? {
    let digits = Array(s.utf8)
    guard digits.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    out.reserveCapacity(digits.count / 2)
    var i = 0
    while i < digits.count {
      guard let hi = hexValue(digits[i]), let lo = hexValue(digits[i + 1]) else { return nil }
      out.append(hi << 4 | lo)
      i += 2
    }
    return out
  }

  static func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
    default: nil
    }
  }
}
