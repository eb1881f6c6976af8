import APModel
import Yams

#if canImport(Glibc)
  import Glibc
#endif

/// A machine definition that cannot be used, with where and why.
public struct MachineDefinitionError: Error, Hashable, Sendable, CustomStringConvertible {
  public var source: String
  public var message: String
  public init(source: String, message: String) {
    self.source = source
    self.message = message
  }
  public var description: String { "\(source): \(message)" }
}

/// Reads machine definitions from YAML.
///
/// ```yaml
/// name: z15-lab
/// na: 84            # highest APID (QCI Na)
/// nd: 84            # highest domain (QCI Nd)
/// apxa: true
/// facilities: [qci, apft, aqic]
/// crycb-format: 2   # 0, 1 or 2
/// kernel: 6.12      # the upstream kernel the host behaves as (default: apvirt's newest)
/// usage-domains: 0-84       # id lists: numbers (decimal or 0x hex) and ranges, or a YAML list
/// control-domains: 0-84
/// adapters:
///   - { apid: 3, type: CEX7, mode: cca }
///   - { apids: 4-7, type: CEX7, mode: ep11, configured: false }
///   - { apid: 8, mode: cca, serial: 93LAB008, domains: { default: { aes-cur: valid 0x9f3a51c2d4e6b708 } } }
///   - { apid: 9, reset-latency: 150ms, irq-latency: 5ms }   # firmware timing (default: instant)
/// ```
///
/// What a coprocessor reports about itself (`serial`; per domain, or for every domain with
/// `default`, its master keys or wrapping keys; EP11's `api-ordinal`, `fw-version`, `op-modes`)
/// is optional: see `MachineDefinitionLoader+Coprocessors.swift`.
///
/// Every problem is reported with the key it concerns; unknown keys are errors too, so that a
/// typo does not silently fall back to a default.
public enum MachineDefinitionLoader {
  /// Reads and checks a file. A file that cannot be read is reported with the system's reason,
  /// as the C tools do: `/etc: Is a directory`, `nofile.yaml: No such file or directory`.
  public static func load(path: String) throws(MachineDefinitionError) -> MachineDefinition {
    let text = try readFile(path)
    return try parse(yaml: text, source: path)
  }

  /// A whole regular file as UTF-8 text, with `strerror`'s words when it cannot be read (a
  /// scenario file is read the same way).
  public static func readText(_ path: String) throws(MachineDefinitionError) -> String {
    try readFile(path)
  }

  /// A whole regular file as UTF-8 text, with `strerror`'s words when it cannot be read.
  static func readFile(_ path: String) throws(MachineDefinitionError) -> String {
    let bytes: [UInt8]
    do throws(Errno) {
      bytes = try FileContents.read(path)
    } catch {
      throw MachineDefinitionError(source: path, message: String(cString: strerror(error.rawValue)))
    }
    guard let text = String(validating: bytes, as: UTF8.self) else {
      throw MachineDefinitionError(source: path, message: "not UTF-8 text")
    }
    return text
  }

  public static func parse(yaml text: String, source: String) throws(MachineDefinitionError)
    -> MachineDefinition
  {
    func fail(_ m: String) -> MachineDefinitionError { MachineDefinitionError(source: source, message: m) }
    let node: Node?
    do {
      // Yams's default resolver decides each plain scalar's tag with seven NSRegularExpressions
      // (ICU's regex engine, tens of pages of code and data for the daemon to keep mapped) at
      // every mapping lookup. Nothing here needs a resolved tag: values are read as text
      // (`string`), and `bool` looks at the scalar's own tag, which only a key's comparison
      // resolves; keys compare as their text under either resolver, as none of the known keys
      // reads as a number, a boolean or null.
      node = try Yams.compose(yaml: text, .basic)
    } catch {
      throw fail("not valid YAML: \(error)")
    }
    guard let node else { throw fail("the document must be a mapping of keys to values") }
    return try parse(node: node, source: source)
  }

  /// A definition from a YAML node already composed: a scenario's inline `machine:` mapping,
  /// whose lines are those of the scenario file.
  public static func parse(node: Node, source: String) throws(MachineDefinitionError) -> MachineDefinition {
    func fail(_ m: String) -> MachineDefinitionError { MachineDefinitionError(source: source, message: m) }
    guard let root = node.mapping else {
      throw fail("the definition must be a mapping of keys to values\(line(node))")
    }
    let known: Set<String> = [
      "name", "na", "nd", "apxa", "facilities", "crycb-format", "usage-domains", "control-domains",
      "adapters", "kernel",
    ]
    for key in root.keys {
      guard let k = key.string, known.contains(k) else {
        throw fail(
          "unknown key '\(key.string ?? "?")'\(line(key)) (known: \(known.sorted().joined(separator: ", ")))")
      }
    }
    let name = root["name"]?.string ?? "unnamed"
    // The scalar's text, not a number: `6.10` is not `6.1`.
    let kernel = root["kernel"]?.scalar?.string
    if root["kernel"] != nil {
      guard let kernel, kernel.split(separator: ".").count >= 2,
        kernel.split(separator: ".").allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) })
      else { throw fail("kernel: not a kernel version like 6.12\(line(root["kernel"]))") }
    }
    let apxa = try bool(root["apxa"], "apxa", default: true, fail)
    let limit = apxa ? 255 : 63
    let na = try int(root["na"], "na", default: apxa ? 255 : 63, range: 0...limit, fail)
    let nd = try int(root["nd"], "nd", default: apxa ? 255 : 15, range: 0...(apxa ? 255 : 15), fail)
    var facilities = APFacilities(qci: false, apft: false, aqic: false)
    if let f = root["facilities"] {
      guard let seq = f.sequence else { throw fail("'facilities' must be a list of qci, apft, aqic") }
      for item in seq {
        switch item.string?.lowercased() {
        case "qci", "12": facilities.qci = true
        case "apft", "15": facilities.apft = true
        case "aqic", "65": facilities.aqic = true
        default: throw fail("unknown facility '\(item.string ?? "?")' (known: qci, apft, aqic)")
        }
      }
    } else {
      facilities = .all
    }
    let format = try int(root["crycb-format"], "crycb-format", default: apxa ? 2 : 0, range: 0...2, fail)
    // KVM picks the format from the facilities: 0 without MSAX3, 1 with MSAX3 but no APXA, 2 with
    // both. crycb-format stands for MSAX3 (0: not installed), so with APXA it is 0 or 2.
    if format == 2 && !apxa {
      throw fail(
        "crycb-format 2 needs apxa: true\(line(root["crycb-format"])) (without APXA, KVM uses format 1 with MSAX3, 0 without)"
      )
    }
    if format == 1 && apxa {
      throw fail(
        "crycb-format 1 contradicts apxa: true\(line(root["crycb-format"])): KVM uses format 2 when APXA is installed (0 when MSAX3 is not); use crycb-format: 2, or apxa: false for format 1"
      )
    }
    let usage = try ids(root["usage-domains"], "usage-domains", max: nd, fail) ?? .all(through: nd)
    let control = try ids(root["control-domains"], "control-domains", max: nd, fail) ?? usage
    var adapters: [MachineDefinition.Adapter] = []
    var seen = Set<Int>()
    if let list = root["adapters"] {
      guard let seq = list.sequence else { throw fail("'adapters' must be a list\(line(list))") }
      for (index, item) in seq.enumerated() {
        let here = "adapters[\(index)]"
        guard let m = item.mapping else { throw fail("\(here) must be a mapping\(line(item))") }
        let allowed: Set<String> = Set([
          "apid", "apids", "type", "mode", "depth", "configured", "serial", "reset-latency", "irq-latency",
        ])
        .union(coprocessorKeys)
        for key in m.keys where !allowed.contains(key.string ?? "") {
          throw fail(
            "\(here): unknown key '\(key.string ?? "?")'\(line(key)) (known: \(allowed.sorted().joined(separator: ", ")))"
          )
        }
        var apids: [Int] = []
        if m["apid"] != nil && m["apids"] != nil {
          throw fail("\(here): both 'apid' and 'apids'\(line(item)); give one of them")
        }
        if let one = m["apid"] {
          apids = [try int(one, "\(here).apid", default: 0, range: 0...na, fail)]
        } else if let many = try ids(m["apids"], "\(here).apids", max: na, fail) {
          apids = Array(many)
        } else {
          throw fail("\(here) needs 'apid' or 'apids'\(line(item))")
        }
        let typeName = m["type"]?.string ?? "CEX8"
        guard let type = AdapterType(knownName: typeName) else {
          throw fail(
            "\(here).type: unknown adapter type '\(typeName)'\(line(m["type"])) (known: \(AdapterType.knownNames))"
          )
        }
        let modeName = m["mode"]?.string ?? "cca"
        guard let mode = AdapterMode(name: modeName) else {
          throw fail("\(here).mode: unknown mode '\(modeName)'\(line(m["mode"])) (known: cca, accel, ep11)")
        }
        if apids.count > 1, m["serial"] != nil {
          throw fail(
            "\(here).serial: one serial number for \(apids.count) adapters\(line(m["serial"])); give the adapter its own entry with 'apid'"
          )
        }
        let fields = try coprocessorFields(m, here: here, mode: mode, nd: nd, fail)
        let depth = try int(m["depth"], "\(here).depth", default: 8, range: 1...256, fail)
        let configured = try bool(m["configured"], "\(here).configured", default: true, fail)
        let resetLatency = try latency(m["reset-latency"], "\(here).reset-latency", fail)
        let irqLatency = try latency(m["irq-latency"], "\(here).irq-latency", fail)
        for apid in apids {
          guard seen.insert(apid).inserted else {
            throw fail("\(here): adapter 0x\(padHex(apid, 2)) is defined twice\(line(item))")
          }
          var adapter = fields.apply(
            to: .init(
              apid: apid, type: type, mode: mode, queueDepth: depth, configured: configured,
              serial: apids.count == 1 ? m["serial"]?.string : nil))
          adapter.resetLatency = resetLatency
          adapter.irqLatency = irqLatency
          adapters.append(adapter)
        }
      }
    }
    adapters.sort { $0.apid < $1.apid }
    var definition = MachineDefinition(
      name: name, na: na, nd: nd, apxa: apxa, facilities: facilities, crycbFormat: format,
      adapters: adapters, usageDomains: usage, controlDomains: control)
    definition.kernel = kernel
    return definition
  }

  /// ` (line N)` for a node that has a position, to point at it in the file.
  public static func line(_ node: Node?) -> String {
    guard let l = node?.mark?.line else { return "" }
    return " (line \(l))"
  }

  static func int(
    _ node: Node?, _ key: String, default d: Int, range: ClosedRange<Int>,
    _ fail: (String) -> MachineDefinitionError
  ) throws(MachineDefinitionError) -> Int {
    guard let node else { return d }
    guard let s = node.string, let v = parseNumber(s) else {
      throw fail("'\(key)' must be a number\(line(node))")
    }
    guard range.contains(v) else {
      throw fail("'\(key)' is \(v)\(line(node)), outside \(range.lowerBound)...\(range.upperBound)")
    }
    return v
  }

  /// A firmware latency: `150ms`, `500us`, `2s`, `20000ns`, or a bare number of milliseconds.
  static func latency(_ node: Node?, _ key: String, _ fail: (String) -> MachineDefinitionError)
    throws(MachineDefinitionError) -> UInt64
  {
    guard let node else { return 0 }
    guard let s = node.string, let ns = parseDuration(s) else {
      throw fail(
        "'\(key)' must be a duration such as 150ms, 500us, 2s or 20000ns (a bare number is milliseconds)\(line(node))"
      )
    }
    guard ns <= 3_600_000_000_000 else {
      throw fail("'\(key)' is \(node.string ?? "")\(line(node)), above 1 hour")
    }
    return ns
  }

  /// `150ms` -> 150,000,000 ns; `150` is milliseconds too. Nil for anything else.
  public static func parseDuration(_ text: String) -> UInt64? {
    let t = text.trimmingCharacters(in: " ").lowercased()
    let units: [(String, UInt64)] = [("ns", 1), ("us", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000)]
    var digits = t
    var scale: UInt64 = 1_000_000
    for (suffix, factor) in units where t.hasSuffix(suffix) {
      digits = String(t.dropLast(suffix.count))
      scale = factor
      break
    }
    guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber),
      let v = UInt64(digits)
    else { return nil }
    let (ns, overflow) = v.multipliedReportingOverflow(by: scale)
    return overflow ? nil : ns
  }

  static func bool(
    _ node: Node?, _ key: String, default d: Bool, _ fail: (String) -> MachineDefinitionError
  ) throws(MachineDefinitionError) -> Bool {
    guard let node else { return d }
    guard let v = node.bool else { throw fail("'\(key)' must be true or false\(line(node))") }
    return v
  }

  /// An id list: `0-5,8,0x0a-0x0b`, a single number, or a YAML list of numbers and ranges.
  static func ids(
    _ node: Node?, _ key: String, max: Int, _ fail: (String) -> MachineDefinitionError
  ) throws(MachineDefinitionError) -> APMask? {
    guard let node else { return nil }
    var pieces: [String] = []
    if let seq = node.sequence {
      for item in seq {
        guard let s = item.string else { throw fail("'\(key)' must list numbers and ranges\(line(item))") }
        pieces.append(s)
      }
    } else if let s = node.string {
      pieces = s.split(separator: ",").map(String.init)
    } else {
      throw fail("'\(key)' must be an id list such as 0-15,32\(line(node))")
    }
    var mask = APMask()
    for raw in pieces {
      let piece = raw.trimmingCharacters(in: " ")
      if piece.isEmpty { continue }
      let ends = piece.split(separator: "-", omittingEmptySubsequences: false).map(String.init)
      guard (1...2).contains(ends.count), let a = parseNumber(ends[0]),
        let z = ends.count == 2 ? parseNumber(ends[1]) : a
      else { throw fail("'\(key)': '\(piece)' is not a number or a range a-b\(line(node))") }
      guard a <= z else { throw fail("'\(key)': range '\(piece)' runs backwards\(line(node))") }
      guard z <= max else { throw fail("'\(key)': \(z) is above the machine's limit \(max)\(line(node))") }
      for b in a...z { mask.insert(b) }
    }
    return mask
  }

  static func parseNumber(_ s: String) -> Int? {
    let t = s.trimmingCharacters(in: " ").lowercased()
    if t.hasPrefix("0x") { return Int(t.dropFirst(2), radix: 16) }
    return Int(t)
  }
}

extension String {
  fileprivate func trimmingCharacters(in set: Character) -> String {
    var s = Substring(self)
    while s.first == set { s = s.dropFirst() }
    while s.last == set { s = s.dropLast() }
    return String(s)
  }
}
