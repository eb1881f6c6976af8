import APModel
import ArgumentParser
import Foundation

/// `apvirt guest NAME INSTRUCTION APQN`: a guest's CPU issues an AP instruction.
struct GuestAP: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "guest",
    abstract: "Issue an AP instruction (tapq, nqap, dqap, zapq) from a running guest.",
    discussion: """
      The instruction runs against the guest's APCB, as the hardware interprets it: an APQN \
      outside it answers rc 01 (Q_NOT_AVAIL). NQAP sends --payload (hex, two digits a byte); \
      DQAP prints the reply (the emulated adapter answers with the request reversed followed by \
      the APQN). Each response code is printed with its name in the kernel's ap.h \
      (AP_RESPONSE_...): rc=00 (NORMAL). --json prints the reply as JSON.

        apvirt guest guest1 nqap 05.0004 --payload 0102
        apvirt guest guest1 dqap 05.0004
      """)
  static let instructions = ["tapq", "nqap", "dqap", "zapq"]

  @OptionGroup var options: DaemonOptions
  @Argument(help: "The guest's -name.") var name: String
  @Argument(help: "tapq, nqap, dqap or zapq.") var instruction: String
  @Argument(help: "The APQN: adapter and domain in hex, as sysfs names queues (05.0004).") var apqn: String
  @Option(help: "The request (hex, two digits a byte), for nqap.") var payload: String?
  @Flag(name: .long, help: "Print the reply as JSON.") var json = false

  func validate() throws {
    guard Self.instructions.contains(instruction) else {
      throw ValidationError("unknown instruction '\(instruction)': give tapq, nqap, dqap or zapq")
    }
    _ = try Self.queue(apqn)
    if let payload {
      guard instruction == "nqap" else {
        throw ValidationError("--payload is for nqap only: \(instruction) sends no request")
      }
      try Self.checkHex(payload)
    }
  }

  /// The APQN as sysfs names queues, `05.0004`, or what is wrong with it.
  static func queue(_ text: String) throws -> APQN {
    let form = "write the adapter and the domain in hex, without 0x, as sysfs names queues (05.0004)"
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 2 else { throw ValidationError("'\(text)' is not an APQN: \(form)") }
    var ids: [Int] = []
    for (part, what) in zip(parts, ["adapter", "domain"]) {
      guard !part.isEmpty, part.allSatisfy(\.isHexDigit), let n = Int(part, radix: 16) else {
        throw ValidationError("'\(text)' is not an APQN: the \(what) '\(part)' is not hex; \(form)")
      }
      guard n <= 0xff else {
        throw ValidationError(
          "'\(text)' is not an APQN: \(what) 0x\(String(n, radix: 16)) is out of range: \(what)s are 0x00-0xff"
        )
      }
      ids.append(n)
    }
    return APQN(ids[0], ids[1])
  }

  /// Refuses a payload that is not whole bytes of hex digits.
  static func checkHex(_ payload: String) throws {
    if let bad = payload.first(where: { !$0.isHexDigit }) {
      throw ValidationError(
        "--payload '\(payload)' is not hex ('\(bad)'): give the request as hex digits, two a byte (0102)")
    }
    if payload.count % 2 != 0 {
      throw ValidationError(
        "--payload '\(payload)' has an odd number of hex digits (\(payload.count)): give two a byte (0\(payload))"
      )
    }
  }

  /// The reply as `--json` prints it.
  struct Output: Codable, Equatable {
    var instruction: String
    var apqn: String
    var rc: String
    /// ap.h's name for the code, without AP_RESPONSE_.
    var rcName: String?
    var psmid: UInt64?
    var reply: String?
    var type: String?

    enum CodingKeys: String, CodingKey {
      case instruction, apqn, rc, psmid, reply, type
      case rcName = "rc_name"
    }
  }

  func run() throws {
    let queue = try Self.queue(apqn)
    let d = try options.client.call(
      ControlCommands.GuestAP(name: name, instruction: instruction, apqn: queue.description, payload: payload)
    )
    let rc = d["rc"] ?? ""
    let name = UInt8(rc, radix: 16).flatMap {
      APResponseCode(rawValue: $0).name(afterDQAP: instruction == "dqap")
    }
    if json {
      let out = Output(
        instruction: instruction, apqn: queue.description, rc: rc, rcName: name,
        psmid: d["psmid"].flatMap { UInt64($0) }, reply: d["reply"], type: d["type"])
      let e = JSONEncoder()
      e.outputFormatting = [.prettyPrinted, .sortedKeys]
      print(String(decoding: try e.encode(out), as: UTF8.self))
      return
    }
    print(
      d.sorted { $0.key < $1.key }.map { k, v in
        k == "rc" ? "rc=\(v)\(name.map { " (\($0))" } ?? "")" : "\(k)=\(v)"
      }.joined(separator: " "))
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
