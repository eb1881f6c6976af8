import ArgumentParser
import Foundation

/// `apvirt guest NAME INSTRUCTION APQN`: a guest's CPU issues an AP instruction.
struct GuestAP: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "guest",
    abstract: "Issue an AP instruction (tapq, nqap, dqap, zapq) from a running guest.",
    discussion: """
      The instruction runs against the guest's APCB, as the hardware interprets it: an APQN \
      outside it answers rc 01. NQAP sends --payload (hex); DQAP prints the reply (the emulated \
      adapter answers with the request reversed followed by the APQN).

        apvirt guest guest1 nqap 05.0004 --payload 0102
        apvirt guest guest1 dqap 05.0004
      """)
  @OptionGroup var options: DaemonOptions
  @Argument(help: "The guest's -name.") var name: String
  @Argument(help: "tapq, nqap, dqap or zapq.") var instruction: String
  @Argument(help: "The APQN, 05.0004.") var apqn: String
  @Option(help: "The request (hex), for nqap.") var payload = ""

  func run() throws {
    let d = try options.client.call(
      ControlCommands.GuestAP(name: name, instruction: instruction, apqn: apqn, payload: payload))
    print(d.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
  }
}

/// A libvirt `<hostdev mode='subsystem' type='mdev' model='vfio-ap'>` element.
struct HostdevXML {
  var uuid: String
  var alias: String?
  var hasBootOrder: Bool

  struct Failure: Error, CustomStringConvertible {
    var description: String
  }

  static func attribute(_ name: String, in tag: Substring) -> String? {
    for q in ["'", "\""] {
      if let r = tag.range(of: "\(name)=\(q)") {
        let rest = tag[r.upperBound...]
        if let end = rest.firstIndex(of: Character(q)) { return String(rest[..<end]) }
      }
    }
    return nil
  }

  static func tag(_ name: String, in text: String) -> Substring? {
    guard let r = text.range(of: "<\(name)") else { return nil }
    let rest = text[r.lowerBound...]
    guard let end = rest.firstIndex(of: ">") else { return nil }
    return rest[...end]
  }

  /// Reads the element from a file, with the command line's error.
  static func load(_ file: String) throws -> HostdevXML {
    let xml = try readTextFile(file)
    do {
      return try parse(xml)
    } catch {
      throw RuntimeError("\(file): \(error)")
    }
  }

  /// Reads the element with libvirt's checks and texts.
  static func parse(_ text: String) throws(Failure) -> HostdevXML {
    guard let hostdev = tag("hostdev", in: text) else { throw Failure(description: "no <hostdev> element") }
    guard attribute("mode", in: hostdev) == "subsystem", attribute("type", in: hostdev) == "mdev" else {
      throw Failure(
        description: "unsupported configuration: only <hostdev mode='subsystem' type='mdev'> is emulated")
    }
    guard attribute("model", in: hostdev) == "vfio-ap" else {
      throw Failure(
        description: "unsupported configuration: only mediated devices of model vfio-ap are emulated")
    }
    guard let address = tag("address", in: text), let uuid = attribute("uuid", in: address) else {
      throw Failure(description: "XML error: Missing 'uuid' attribute for element 'address'")
    }
    let alias = tag("alias", in: text).flatMap { attribute("name", in: $0) }
    return HostdevXML(uuid: uuid.lowercased(), alias: alias, hasBootOrder: tag("boot", in: text) != nil)
  }
}

/// `apvirt attach-device NAME FILE.xml`: what `virsh attach-device` does for a vfio-ap hostdev.
struct AttachDevice: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "attach-device",
    abstract: "Hot plug a libvirt vfio-ap <hostdev> into a running guest, as virsh attach-device.")
  @OptionGroup var options: DaemonOptions
  @Argument(help: "The guest.") var name: String
  @Argument(help: "A file holding the <hostdev> element.") var file: String

  func run() throws {
    let h = try HostdevXML.load(file)
    if h.hasBootOrder {
      throw ValidationError(
        "unsupported configuration: booting from assigned devices is not supported by mediated devices of model vfio-ap"
      )
    }
    let client = options.client
    if try client.call(ControlCommands.GuestDevice(name: name)) != nil {
      throw ValidationError("unsupported configuration: Only one hostdev of model vfio-ap is supported")
    }
    let sysfsdev = "/sys/bus/mdev/devices/\(h.uuid)"
    _ = try client.call(
      ControlCommands.GuestDeviceAdd(
        name: name, props: ["driver": "vfio-ap", "id": h.alias ?? "hostdev0", "sysfsdev": sysfsdev]))
    print("Device attached successfully")
  }
}

/// `apvirt detach-device NAME FILE.xml`
struct DetachDevice: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "detach-device",
    abstract: "Unplug a libvirt vfio-ap <hostdev> from a running guest, as virsh detach-device.")
  @OptionGroup var options: DaemonOptions
  @Argument(help: "The guest.") var name: String
  @Argument(help: "A file holding the <hostdev> element.") var file: String

  func run() throws {
    let h = try HostdevXML.load(file)
    let client = options.client
    guard let d = try client.call(ControlCommands.GuestDevice(name: name)), d.uuid == h.uuid else {
      throw ValidationError("operation failed: matching host device not found")
    }
    _ = try client.call(ControlCommands.GuestDeviceDel(name: name, id: d.id ?? d.path))
    print("Device detached successfully")
  }
}
