import APModel
import Yams

/// The adapter keys that say what a coprocessor reports about itself (see ``CCAMasterKeys``,
/// ``EP11ModuleInfo``, ``EP11DomainInfo``):
///
/// ```yaml
/// adapters:
///   - apid: 2
///     mode: cca
///     serial: 93LAB002                 # CCA: up to 8 characters
///     domains:                         # 'default' (every domain) or id lists, as usage-domains
///       default: { aes-cur: valid 0x9f3a51c2d4e6b708, aes-old: invalid }
///       0x10-0x11: { aes-new: full 0x0123456789abcdef, asym-cur: valid 0x<32 hex digits> }
///   - apid: 3
///     mode: ep11
///     serial: 93LAB003                 # EP11: up to 16 characters
///     api-ordinal: 7
///     fw-version: "7.15"
///     op-modes: [FIPS2021]
///     domains:
///       default: { wk-cur: valid 0x<64 hex digits>, wk-new: empty }
///       0x47: { wk-cur: invalid, op-modes: [] }
/// ```
///
/// A CCA domain names the registers `aes-`, `apka-` and `asym-` `new`, `cur` and `old`: a NEW
/// register is `empty`, `partial` or `full PATTERN`; a CURRENT or OLD one `invalid` or
/// `valid PATTERN`; any of them `unreported` (zcrypt shows `- -`). Patterns are hex (0x
/// optional): 16 digits for AES and APKA, 32 for ASYM, 64 for an EP11 wrapping key. An EP11
/// domain's `wk-cur` is `invalid` or `valid PATTERN`, its `wk-new` `empty`, `uncommitted
/// PATTERN` or `committed PATTERN`. What a domain entry leaves out comes from `default`, and what
/// that leaves out from the defaults derived from the adapter number.
extension MachineDefinitionLoader {
  /// The adapter keys only coprocessors take.
  static let coprocessorKeys: Set<String> = ["domains", "api-ordinal", "fw-version", "op-modes"]

  static let ccaRegisterKeys: [String] = ["aes", "apka", "asym"].flatMap { k in
    ["new", "cur", "old"].map { "\(k)-\($0)" }
  }

  /// What an adapter entry says about its coprocessor, applied to each of its adapters.
  struct CoprocessorFields {
    var masterKeys:
      (all: [(inout CCAMasterKeys) -> Void], domains: [(APMask, [(inout CCAMasterKeys) -> Void])]) =
        ([], [])
    var module: [(inout EP11ModuleInfo) -> Void] = []
    var ep11Domains:
      (all: [(inout EP11DomainInfo) -> Void], domains: [(APMask, [(inout EP11DomainInfo) -> Void])]) =
        ([], [])

    /// The adapter `base` with these fields over its defaults.
    func apply(to base: MachineDefinition.Adapter) -> MachineDefinition.Adapter {
      var a = base
      var keys = a.masterKeys.all
      for f in masterKeys.all { f(&keys) }
      a.masterKeys = PerDomain(keys)
      for (mask, fs) in masterKeys.domains {
        for d in mask {
          var k = a.masterKeys[d]
          for f in fs { f(&k) }
          a.masterKeys.overrides[d] = k
        }
      }
      for f in module { f(&a.ep11Module) }
      // A domain's modes default to the card's.
      var domain = EP11DomainInfo.defaultFor(apid: a.apid, opModes: a.ep11Module.opModes)
      for f in ep11Domains.all { f(&domain) }
      a.ep11Domains = PerDomain(domain)
      for (mask, fs) in ep11Domains.domains {
        for d in mask {
          var i = a.ep11Domains[d]
          for f in fs { f(&i) }
          a.ep11Domains.overrides[d] = i
        }
      }
      return a
    }
  }

  /// Reads `serial`, `domains`, `api-ordinal`, `fw-version` and `op-modes` of the adapter entry
  /// `m` (named `here`) of mode `mode`.
  static func coprocessorFields(
    _ m: Node.Mapping, here: String, mode: AdapterMode, nd: Int, _ fail: (String) -> MachineDefinitionError
  ) throws(MachineDefinitionError) -> CoprocessorFields {
    if let s = m["serial"] {
      let limit = mode == .cca ? 8 : 16
      guard let v = s.string, !v.isEmpty, v.count <= limit,
        v.unicodeScalars.allSatisfy({ (0x21...0x7e).contains($0.value) })
      else {
        throw fail(
          "'\(here).serial' must be 1 to \(limit) letters, digits or other visible ASCII characters\(line(s)) (a \(mode == .cca ? "CCA" : mode == .ep11 ? "EP11" : "card's") serial number, such as 93AADF05)"
        )
      }
    }
    var fields = CoprocessorFields()
    if mode == .accel {
      for key in m.keys {
        guard let k = key.string, coprocessorKeys.contains(k) else { continue }
        throw fail(
          "'\(here).\(k)'\(line(key)): an accelerator reports no master keys, modes or firmware; \(coprocessorKeys.sorted().joined(separator: ", ")) are for mode cca or ep11"
        )
      }
      return fields
    }
    if mode == .cca {
      for key in m.keys {
        guard let k = key.string, k != "domains", coprocessorKeys.contains(k) else { continue }
        throw fail(
          "'\(here).\(k)'\(line(key)) is for EP11 coprocessors (mode ep11); a CCA adapter takes serial and domains"
        )
      }
    }
    if mode == .ep11 {
      if let n = m["api-ordinal"] {
        let v = try int(n, "\(here).api-ordinal", default: 0, range: 0...Int(UInt32.max), fail)
        fields.module.append { $0.apiOrdinal = UInt32(v) }
      }
      if let n = m["fw-version"] {
        let parts = (n.string ?? "").split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 2, let major = UInt8(parts[0]), let minor = UInt8(parts[1]) else {
          throw fail(
            "'\(here).fw-version' must be MAJOR.MINOR, each 0 to 255, such as 7.15\(line(n))"
          )
        }
        fields.module.append {
          $0.firmwareMajor = major
          $0.firmwareMinor = minor
        }
      }
      if let n = m["op-modes"] {
        let modes = try opModes(n, "\(here).op-modes", fail)
        fields.module.append { $0.opModes = modes }
      }
    }
    guard let domains = m["domains"] else { return fields }
    let key = "\(here).domains"
    guard let map = domains.mapping else {
      throw fail("'\(key)' must be a mapping of 'default' or domain id lists to settings\(line(domains))")
    }
    for (selector, value) in map {
      let name = selector.string ?? "?"
      let entry = "\(key).\(name)"
      let mask: APMask?
      if name == "default" {
        mask = nil
      } else {
        do {
          mask = try ids(selector, key, max: nd, fail)
        } catch {
          throw fail(
            "\(error.message)\(line(selector)); a domain entry is 'default' or an id list such as 4,0x10-0x13"
          )
        }
      }
      guard let settings = value.mapping else {
        throw fail(
          "'\(entry)' must be a mapping\(line(value)) such as { \(mode == .cca ? "aes-cur: invalid" : "wk-cur: invalid") }"
        )
      }
      if mode == .cca {
        let fs = try ccaSettings(settings, entry, fail)
        if let mask { fields.masterKeys.domains.append((mask, fs)) } else { fields.masterKeys.all += fs }
      } else {
        let fs = try ep11Settings(settings, entry, fail)
        if let mask { fields.ep11Domains.domains.append((mask, fs)) } else { fields.ep11Domains.all += fs }
      }
    }
    return fields
  }

  /// A list of EP11 operational modes (or one of them).
  static func opModes(_ n: Node, _ key: String, _ fail: (String) -> MachineDefinitionError)
    throws(MachineDefinitionError) -> Set<EP11OpMode>
  {
    let items: [Node] = n.sequence.map(Array.init) ?? [n]
    var modes = Set<EP11OpMode>()
    for item in items {
      guard let s = item.string, let mode = EP11OpMode(name: s) else {
        throw fail(
          "'\(key)': unknown operational mode '\(item.string ?? "?")'\(line(item)) (known: \(EP11OpMode.knownNames))"
        )
      }
      modes.insert(mode)
    }
    return modes
  }

  /// A register's value: its state word and, where the state holds a key, its pattern.
  static func register(
    _ n: Node, _ key: String, states: [String], withPattern: Set<String>, length: Int,
    _ fail: (String) -> MachineDefinitionError
  ) throws(MachineDefinitionError) -> (String, VerificationPattern) {
    let words = (n.string ?? "").split(separator: " ").map(String.init)
    let usage =
      states.map { withPattern.contains($0) ? "'\($0) 0x' and \(2 * length) hex digits" : "'\($0)'" }
      .joined(separator: ", ")
    guard let state = words.first?.lowercased(), states.contains(state), words.count <= 2 else {
      throw fail("'\(key)' is '\(n.string ?? "?")'\(line(n)): give one of \(usage)")
    }
    guard withPattern.contains(state) else {
      if words.count == 2 {
        throw fail("'\(key)': a register that is \(state) has no pattern\(line(n)); give '\(state)' alone")
      }
      return (state, [])
    }
    guard words.count == 2, let pattern = hexBytes(words[1], count: length) else {
      throw fail(
        "'\(key)': \(state) needs its verification pattern\(line(n)), 0x and \(2 * length) hex digits ('\(state) 0x\(String(repeating: "0", count: 2 * length))')"
      )
    }
    return (state, pattern)
  }

  static func ccaSettings(_ m: Node.Mapping, _ entry: String, _ fail: (String) -> MachineDefinitionError)
    throws(MachineDefinitionError) -> [(inout CCAMasterKeys) -> Void]
  {
    var fs: [(inout CCAMasterKeys) -> Void] = []
    for (keyNode, value) in m {
      let k = keyNode.string ?? "?"
      guard ccaRegisterKeys.contains(k) else {
        throw fail(
          "'\(entry)': unknown key '\(k)'\(line(keyNode)) (known: \(ccaRegisterKeys.joined(separator: ", ")))"
        )
      }
      let parts = k.split(separator: "-").map(String.init)
      let (kind, which) = (parts[0], parts[1])
      let path: WritableKeyPath<CCAMasterKeys, CCAMasterKey> =
        kind == "aes" ? \.aes : kind == "apka" ? \.apka : \.asym
      let length = CCAMasterKeys.patternLength(kind)
      if which == "new" {
        let (state, p) = try register(
          value, "\(entry).\(k)", states: ["empty", "partial", "full", "unreported"], withPattern: ["full"],
          length: length, fail)
        let v: CCAMasterKey.New =
          switch state {
          case "empty": .empty
          case "partial": .partial
          case "full": .full(p)
          default: .unreported
          }
        fs.append { $0[keyPath: path].new = v }
      } else {
        let (state, p) = try register(
          value, "\(entry).\(k)", states: ["invalid", "valid", "unreported"], withPattern: ["valid"],
          length: length, fail)
        let v: CCAMasterKey.Register =
          switch state {
          case "invalid": .invalid
          case "valid": .valid(p)
          default: .unreported
          }
        if which == "cur" {
          fs.append { $0[keyPath: path].current = v }
        } else {
          fs.append { $0[keyPath: path].old = v }
        }
      }
    }
    return fs
  }

  static func ep11Settings(_ m: Node.Mapping, _ entry: String, _ fail: (String) -> MachineDefinitionError)
    throws(MachineDefinitionError) -> [(inout EP11DomainInfo) -> Void]
  {
    var fs: [(inout EP11DomainInfo) -> Void] = []
    let known = ["wk-cur", "wk-new", "op-modes"]
    for (keyNode, value) in m {
      let k = keyNode.string ?? "?"
      switch k {
      case "wk-cur":
        let (state, p) = try register(
          value, "\(entry).\(k)", states: ["invalid", "valid"], withPattern: ["valid"],
          length: EP11DomainInfo.patternLength, fail)
        let v: EP11DomainInfo.Current = state == "valid" ? .valid(p) : .invalid
        fs.append { $0.current = v }
      case "wk-new":
        let (state, p) = try register(
          value, "\(entry).\(k)", states: ["empty", "uncommitted", "committed"],
          withPattern: ["uncommitted", "committed"], length: EP11DomainInfo.patternLength, fail)
        let v: EP11DomainInfo.New =
          switch state {
          case "uncommitted": .uncommitted(p)
          case "committed": .committed(p)
          default: .empty
          }
        fs.append { $0.new = v }
      case "op-modes":
        let modes = try opModes(value, "\(entry).op-modes", fail)
        fs.append { $0.opModes = modes }
      default:
        throw fail("'\(entry)': unknown key '\(k)'\(line(keyNode)) (known: \(known.joined(separator: ", ")))")
      }
    }
    return fs
  }

  /// `count` bytes from hex digits (an optional 0x first), or nil.
  static func hexBytes(_ s: String, count: Int) -> VerificationPattern? {
    var t = Substring(s.lowercased())
    if t.hasPrefix("0x") { t = t.dropFirst(2) }
    guard t.count == 2 * count, t.allSatisfy(\.isHexDigit) else { return nil }
    var bytes: [UInt8] = []
    var i = t.startIndex
    while i < t.endIndex {
      let j = t.index(i, offsetBy: 2)
      bytes.append(UInt8(t[i..<j], radix: 16)!)
      i = j
    }
    return bytes
  }
}
