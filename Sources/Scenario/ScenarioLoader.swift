import APModel
import Machine
import Planning
import Yams

/// A scenario file that cannot be used: the file, the key (`mdevs[1].domains`), the line, and why.
public struct ScenarioError: Error, Hashable, Sendable, CustomStringConvertible {
  public var source: String
  /// The key the problem is at, as a path (`kernel.apmask`, `guests[0].mdev`); empty for the
  /// whole document.
  public var key: String
  public var line: Int?
  public var message: String

  public init(source: String, key: String, line: Int?, message: String) {
    self.source = source
    self.key = key
    self.line = line
    self.message = message
  }

  /// `three-guests.yaml: mdevs[1].domains: 0x100 is above the machine's highest domain 0xff (line 14)`
  public var description: String {
    "\(source): \(key.isEmpty ? "" : key + ": ")\(message)\(line.map { " (line \($0))" } ?? "")"
  }
}

/// Reads scenario files (see ``Scenario`` for the format).
///
/// Every problem names its key and line, as the machine loader does: unknown keys (a typo must
/// not fall back to a default), values of the wrong kind, ids beyond the machine, and what the
/// kernel would refuse on the way there: an mdev's queue the masks reserve for the host
/// (EADDRNOTAVAIL), a queue in two mdevs (EADDRINUSE), a guest on a missing mdev or on an mdev
/// another guest has.
public enum ScenarioLoader {
  public static let keys: Set<String> = ["machine", "kernel", "mdevs", "guests"]
  public static let kernelKeys: Set<String> = ["apmask", "aqmask"]
  public static let mdevKeys: Set<String> = ["uuid", "adapters", "domains", "control-domains", "start"]
  public static let guestKeys: Set<String> = ["name", "cpu", "mdev"]

  /// Reads and checks a file; a machine file it names is read relative to it.
  public static func load(path: String) throws(ScenarioError) -> Scenario {
    let text: String
    do {
      text = try MachineDefinitionLoader.readText(path)
    } catch {
      throw ScenarioError(source: path, key: "", line: nil, message: error.message)
    }
    let dir = path.contains("/") ? String(path[..<path.lastIndex(of: "/")!]) : "."
    return try parse(yaml: text, source: path, directory: dir)
  }

  /// Parses a scenario's text. `directory` is where a `machine:` file name is taken from.
  public static func parse(yaml text: String, source: String, directory: String = ".") throws(ScenarioError)
    -> Scenario
  {
    func fail(_ key: String, _ node: Node?, _ m: String) -> ScenarioError {
      ScenarioError(source: source, key: key, line: node?.mark?.line, message: m)
    }
    let document: Node?
    do {
      document = try Yams.compose(yaml: text)
    } catch {
      throw fail("", nil, "not valid YAML: \(error)")
    }
    guard let document, let root = document.mapping else {
      throw fail(
        "", document, "the document must be a mapping of keys (\(keys.sorted().joined(separator: ", ")))")
    }
    try checkKeys(root, keys, "", fail)

    // The machine: a file name, or the definition itself.
    guard let machineNode = root["machine"] else {
      throw fail("machine", document, "missing: give a machine definition file or an inline definition")
    }
    var scenario: Scenario
    if let name = machineNode.scalar?.string {
      let path = name.hasPrefix("/") ? name : directory + "/" + name
      do {
        scenario = Scenario(machine: try MachineDefinitionLoader.load(path: path), machineFile: name)
      } catch {
        throw fail("machine", machineNode, "\(error)")
      }
    } else {
      do {
        scenario = Scenario(
          machine: try MachineDefinitionLoader.parse(node: machineNode, source: source + ": machine"))
      } catch {
        // The loader says where already (its keys and lines are the scenario's).
        throw ScenarioError(source: source, key: "", line: nil, message: "machine: " + error.message)
      }
    }
    let machine = scenario.machine
    // vfio_ap's apm_max and aqm_max: QCI's Na and Nd, or 63 and 15 without QCI.
    let maxAdapter = machine.facilities.qci ? machine.na : 63
    let maxDomain = machine.facilities.qci ? machine.nd : 15

    if let kernel = root["kernel"] {
      guard let k = kernel.mapping else {
        throw fail("kernel", kernel, "must be a mapping with apmask, aqmask")
      }
      try checkKeys(k, kernelKeys, "kernel", fail)
      for (name, node) in [("apmask", k["apmask"]), ("aqmask", k["aqmask"])] {
        guard let node else { continue }
        guard let text = node.scalar?.string, let mask = parseMask(text) else {
          throw fail(
            "kernel.\(name)", node,
            "'\(node.scalar?.string ?? "?")' is not a mask: 0x-hex (the kernel's), a list of bits and ranges (0-4,7-255, chzdev's), or +/- changes to the default (-5,-6)"
          )
        }
        if name == "apmask" { scenario.apmask = mask } else { scenario.aqmask = mask }
      }
    }

    var owner: [APQN: (String, Int?)] = [:]
    if let list = root["mdevs"] {
      guard let seq = list.sequence else { throw fail("mdevs", list, "must be a list of mdevs") }
      for (i, item) in seq.enumerated() {
        let here = "mdevs[\(i)]"
        guard let m = item.mapping else {
          throw fail(here, item, "must be a mapping (\(mdevKeys.sorted().joined(separator: ", ")))")
        }
        try checkKeys(m, mdevKeys, here, fail)
        guard let uuidNode = m["uuid"], let uuid = uuidNode.scalar?.string else {
          throw fail(here, item, "needs 'uuid'")
        }
        guard SysfsSnapshot.isUUID(uuid) else {
          throw fail(here + ".uuid", uuidNode, "'\(uuid)' is not a UUID (8-4-4-4-12 hex digits)")
        }
        if let other = scenario.mdevs.first(where: { $0.uuid == uuid.lowercased() }) {
          throw fail(here + ".uuid", uuidNode, "\(uuid) is defined twice (first at line \(other.line ?? 0))")
        }
        let apm = try ids(m["adapters"], here + ".adapters", max: maxAdapter, what: "adapter", fail)
        let aqm = try ids(m["domains"], here + ".domains", max: maxDomain, what: "domain", fail)
        let adm = try ids(
          m["control-domains"], here + ".control-domains", max: maxDomain, what: "domain", fail)
        var start = Scenario.StartMode.manual
        if let s = m["start"] {
          guard let mode = s.scalar.flatMap({ Scenario.StartMode(rawValue: $0.string) }) else {
            throw fail(here + ".start", s, "'\(s.scalar?.string ?? "?")' is neither auto nor manual")
          }
          start = mode
        }
        let mdev = Scenario.Mdev(
          uuid: uuid, matrix: APMatrix(apm: apm, aqm: aqm, adm: adm), start: start, line: item.mark?.line)
        // What assign_adapter and assign_domain would refuse.
        for q in mdev.matrix.apqns {
          if scenario.apmask.contains(q.apid) && scenario.aqmask.contains(q.apqi) {
            throw fail(
              here, item,
              "\(q) is reserved for the host by apmask bit \(q.apid) and aqmask bit \(q.apqi): vfio_ap cannot have it (EADDRNOTAVAIL); clear one of them under kernel:"
            )
          }
          if let (other, line) = owner[q] {
            throw fail(
              here, item,
              "\(q) is also in mdev \(other)\(line.map { " (line \($0))" } ?? ""): an APQN belongs to one mdev (EADDRINUSE)"
            )
          }
          owner[q] = (mdev.uuid, mdev.line)
        }
        scenario.mdevs.append(mdev)
      }
    }

    if let list = root["guests"] {
      guard let seq = list.sequence else { throw fail("guests", list, "must be a list of guests") }
      var users: [String: String] = [:]
      for (i, item) in seq.enumerated() {
        let here = "guests[\(i)]"
        guard let m = item.mapping else {
          throw fail(here, item, "must be a mapping (\(guestKeys.sorted().joined(separator: ", ")))")
        }
        try checkKeys(m, guestKeys, here, fail)
        guard let nameNode = m["name"], let name = nameNode.scalar?.string else {
          throw fail(here, item, "needs 'name'")
        }
        // The guest's name is a directory (`/run/apvirt/guests/NAME`).
        guard !name.isEmpty, name != ".", name != "..", !name.contains("/"), !name.contains("\0") else {
          throw fail(here + ".name", nameNode, "'\(name)' is not a file name")
        }
        if scenario.guests.contains(where: { $0.name == name }) {
          throw fail(here + ".name", nameNode, "a guest named '\(name)' is defined twice")
        }
        var cpu = "host"
        if let c = m["cpu"] {
          guard let text = c.scalar?.string, !text.isEmpty else {
            throw fail(here + ".cpu", c, "must be a CPU model (QEMU's -cpu)")
          }
          cpu = text
        }
        var uuid: String?
        if let u = m["mdev"] {
          guard let text = u.scalar?.string, scenario.mdev(text) != nil else {
            throw fail(
              here + ".mdev", u,
              "'\(u.scalar?.string ?? "?")' is not one of the scenario's mdevs\(scenario.mdevs.isEmpty ? " (it has none)" : "")"
            )
          }
          if let other = users[text.lowercased()] {
            throw fail(
              here + ".mdev", u, "guest \(other) uses \(text) already: an mdev has one guest (EBUSY)")
          }
          users[text.lowercased()] = name
          uuid = text
        }
        scenario.guests.append(Scenario.Guest(name: name, cpu: cpu, mdev: uuid, line: item.mark?.line))
      }
    }
    return scenario
  }

  static func checkKeys(
    _ m: Node.Mapping, _ known: Set<String>, _ here: String, _ fail: (String, Node?, String) -> ScenarioError
  ) throws(ScenarioError) {
    for key in m.keys {
      guard let k = key.string, known.contains(k) else {
        throw fail(
          here, key, "unknown key '\(key.string ?? "?")' (known: \(known.sorted().joined(separator: ", ")))")
      }
    }
  }

  /// An id list (`0-5,8,0x0a-0x0b`, one number, or a YAML list of them), each at most `max`.
  static func ids(
    _ node: Node?, _ key: String, max: Int, what: String, _ fail: (String, Node?, String) -> ScenarioError
  ) throws(ScenarioError) -> APMask {
    guard let node else { return APMask() }
    var pieces: [(String, Node)] = []
    if let seq = node.sequence {
      for item in seq {
        guard let s = item.scalar?.string else { throw fail(key, item, "must list numbers and ranges") }
        pieces.append((s, item))
      }
    } else if let s = node.scalar?.string {
      pieces = s.split(separator: ",").map { (String($0), node) }
    } else {
      throw fail(key, node, "must be an id list such as 5,6 or 0x04-0x07")
    }
    var mask = APMask()
    for (raw, at) in pieces {
      let piece = raw.filter { $0 != " " }
      if piece.isEmpty { continue }
      let ends = piece.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
      guard (1...2).contains(ends.count), let a = number(ends[0]),
        let z = ends.count == 2 ? number(ends[1]) : a
      else { throw fail(key, at, "'\(piece)' is not a number or a range a-b") }
      guard a <= z else { throw fail(key, at, "range '\(piece)' runs backwards") }
      guard z <= max else {
        throw fail(key, at, "0x\(padHex(z, 2)) is above the machine's highest \(what) 0x\(padHex(max, 2))")
      }
      for b in a...z { mask.insert(b) }
    }
    return mask
  }

  static func number(_ s: String) -> Int? {
    let t = s.lowercased()
    let n = t.hasPrefix("0x") ? Int(t.dropFirst(2), radix: 16) : Int(t)
    guard let n, n >= 0 else { return nil }
    return n
  }

  /// A mask under `kernel:`: `0x` and hex digits only is a mask as the kernel reads it
  /// (left-aligned: `0xf9ff` is bits 0-4 and 7-15), `+`/`-` terms are changes to the boot
  /// default (every bit on), anything else is the bits that are on, chzdev's way (`0-4,7-255`,
  /// `0x05,0x06`).
  public static func parseMask(_ text: String) -> APMask? {
    let t = text.filter { $0 != " " }
    let lower = t.lowercased()
    if lower.hasPrefix("0x"), lower.dropFirst(2).allSatisfy(\.isHexDigit) {
      return try? MaskParser.hexToBitmap(Array(lower.utf8))
    }
    if t.hasPrefix("+") || t.hasPrefix("-") {
      return try? MaskParser.modifyBitmap(Array(t.utf8), .all())
    }
    var mask = APMask()
    for piece in t.split(separator: ",") {
      let ends = piece.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
      guard (1...2).contains(ends.count), let a = number(ends[0]),
        let z = ends.count == 2 ? number(ends[1]) : a,
        a <= z, z <= 255
      else { return nil }
      for b in a...z { mask.insert(b) }
    }
    return mask
  }
}
