import APModel
import Foundation
import HostKernel
import VMM

/// Control-socket commands aimed at one running guest: what its CPUs do with AP instructions,
/// and the device hot plug libvirt's attach-device and detach-device drive.
enum GuestControl {
  static func execute(_ name: String, _ args: [String: Any], registry: GuestRegistry) throws(ControlProtocol
    .Failure) -> Any
  {
    guard let guestName = args["name"] as? String else { throw .init(desc: "Parameter 'name' is missing") }
    guard let g = registry.guest(named: guestName) else {
      throw .init(desc: "no guest named '\(guestName)' is running", errorClass: "DeviceNotFound")
    }
    switch name {
    case "guest-ap":
      return try apInstruction(g, args)
    case "guest-device":
      guard let d = g.device else { return NSNull() }
      return ["id": d.id ?? NSNull(), "sysfsdev": d.sysfsdev, "uuid": d.uuid, "path": d.qomPath]
        as [String: Any]
    case "guest-device-add":
      guard let props = args["props"] as? [String: Any] else {
        throw .init(desc: "Parameter 'props' is missing")
      }
      let ordered = props.keys.sorted { a, b in a == "driver" ? true : (b == "driver" ? false : a < b) }.map {
        ($0, QMPValue(props[$0]!))
      }
      do throws(DeviceError) {
        return ["path": try g.deviceAdd(ordered)]
      } catch {
        throw .init(desc: error.message, errorClass: error.errorClass)
      }
    case "guest-device-del":
      guard let id = args["id"] as? String else { throw .init(desc: "Parameter 'id' is missing") }
      do throws(DeviceError) {
        try g.deviceDel(id)
        return [String: Any]()
      } catch {
        throw .init(desc: error.message, errorClass: error.errorClass)
      }
    default:
      throw .init(desc: "The command \(name) has not been found", errorClass: "CommandNotFound")
    }
  }

  /// One AP instruction from the guest's CPU, interpreted against its APCB.
  static func apInstruction(_ g: Guest, _ args: [String: Any]) throws(ControlProtocol.Failure) -> Any {
    guard let text = args["apqn"] as? String, let apqn = APQN(text) else {
      throw .init(desc: "Parameter 'apqn' must be an APQN such as 05.0004")
    }
    let instruction = args["instruction"] as? String ?? "tapq"
    let payload = hexBytes(args["payload"] as? String ?? "")
    let psmid = UInt64(args["psmid"] as? Int ?? 1)
    let vm = g.vmID
    let result: [String: String]? = g.host.withKernel { k in
      guard let authority = k.kvm.vms[vm]?.authority else { return nil }
      let m = k.machine
      switch instruction {
      case "nqap":
        let s = m.nqap(apqn, psmid: psmid, payload: payload, authority)
        return ["rc": s.responseCode.description]
      case "dqap":
        let (s, msg) = m.dqap(apqn, authority)
        var r = ["rc": s.responseCode.description]
        if let msg {
          r["psmid"] = String(msg.psmid)
          r["reply"] = msg.payload.map { String(format: "%02x", $0) }.joined()
        }
        return r
      case "zapq":
        return ["rc": m.zapq(apqn, authority).responseCode.description]
      default:
        let (s, info) = m.tapq(apqn, authority)
        var r = ["rc": s.responseCode.description]
        if let info { r["type"] = info.type.name + info.mode.typeSuffix }
        return r
      }
    }
    guard let result else { throw .init(desc: "the guest has no VM") }
    return result
  }

  static func hexBytes(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var i = s.startIndex
    while i < s.endIndex, let j = s.index(i, offsetBy: 2, limitedBy: s.endIndex),
      let b = UInt8(s[i..<j], radix: 16)
    {
      out.append(b)
      i = j
    }
    return out
  }
}
