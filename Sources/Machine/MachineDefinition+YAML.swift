import APModel

extension MachineDefinition {
  /// The definition as YAML that ``MachineDefinitionLoader`` reads back to the same machine, in
  /// the loader's own keys: the limits, the facilities, the CRYCB format, the domains as id
  /// ranges, and the adapters, neighbours of one kind (type, mode, depth, configured, latencies)
  /// joined into one `apids:` entry. A serial number other than the default is kept; what a
  /// coprocessor reports about its keys (`domains:` of the loader) is not written.
  public var yamlText: String {
    var t = "name: \(yamlScalar(name))\n"
    t += "na: \(na)\n"
    t += "nd: \(nd)\n"
    t += "apxa: \(apxa)\n"
    var f: [String] = []
    if facilities.qci { f.append("qci") }
    if facilities.apft { f.append("apft") }
    if facilities.aqic { f.append("aqic") }
    t += "facilities: [\(f.joined(separator: ", "))]\n"
    t += "crycb-format: \(crycbFormat)\n"
    if let kernel { t += "kernel: \"\(kernel)\"\n" }
    t += "usage-domains: \(Self.idList(usageDomains))\n"
    t += "control-domains: \(Self.idList(controlDomains))\n"
    guard !adapters.isEmpty else { return t + "adapters: []\n" }
    t += "adapters:\n"
    var runs: [[Adapter]] = []
    for a in adapters.sorted(by: { $0.apid < $1.apid }) {
      if var last = runs.last, let prev = last.last, prev.apid + 1 == a.apid, Self.sameKind(prev, a),
        !Self.hasOwnSerial(prev), !Self.hasOwnSerial(a)
      {
        last.append(a)
        runs[runs.count - 1] = last
      } else {
        runs.append([a])
      }
    }
    for run in runs {
      let a = run[0]
      var fields: [String] = []
      if run.count == 1 {
        fields.append("apid: 0x\(padHex(a.apid, 2))")
      } else {
        fields.append("apids: 0x\(padHex(a.apid, 2))-0x\(padHex(run[run.count - 1].apid, 2))")
      }
      fields.append("type: \(a.type.name)")
      fields.append("mode: \(a.mode.rawValue)")
      if a.queueDepth != 8 { fields.append("depth: \(a.queueDepth)") }
      if !a.configured { fields.append("configured: false") }
      if Self.hasOwnSerial(a) { fields.append("serial: \(yamlScalar(a.serial))") }
      if a.resetLatency != 0 { fields.append("reset-latency: \(a.resetLatency)ns") }
      if a.irqLatency != 0 { fields.append("irq-latency: \(a.irqLatency)ns") }
      t += "  - { \(fields.joined(separator: ", ")) }\n"
    }
    return t
  }

  static func sameKind(_ a: Adapter, _ b: Adapter) -> Bool {
    a.type == b.type && a.mode == b.mode && a.queueDepth == b.queueDepth && a.configured == b.configured
      && a.resetLatency == b.resetLatency && a.irqLatency == b.irqLatency
  }

  static func hasOwnSerial(_ a: Adapter) -> Bool { a.serial != Adapter.defaultSerial(apid: a.apid) }

  /// `0x00-0x0b,0x47`: the ids of a mask as hex ranges (`0-11,71` when not `hex`), as the
  /// loader's id lists take them; `""` (quoted) for none.
  public static func idList(_ mask: APMask, hex: Bool = true) -> String {
    var pieces: [String] = []
    var start: Int?
    var prev = -2
    for b in mask {
      if b != prev + 1 {
        if let s = start { pieces.append(range(s, prev, hex)) }
        start = b
      }
      prev = b
    }
    if let s = start { pieces.append(range(s, prev, hex)) }
    return pieces.isEmpty ? "\"\"" : pieces.joined(separator: ",")
  }

  static func range(_ a: Int, _ z: Int, _ hex: Bool) -> String {
    let f = { (n: Int) in hex ? "0x\(padHex(n, 2))" : "\(n)" }
    return a == z ? f(a) : f(a) + "-" + f(z)
  }
}

/// A string as a YAML scalar: plain when that reads back as the same string, else quoted.
public func yamlScalar(_ s: String) -> String {
  let plain =
    !s.isEmpty && s.allSatisfy { $0.isLetter || $0.isNumber || "-_.".contains($0) }
    && !["true", "false", "yes", "no", "null", "on", "off", "~"].contains(s.lowercased())
    && Double(s) == nil && !s.hasPrefix("0x") && !s.hasPrefix("-") && !s.hasPrefix(".")
  if plain { return s }
  var out = "\""
  for c in s.unicodeScalars {
    switch c {
    case "\"": out += "\\\""
    case "\\": out += "\\\\"
    case "\n": out += "\\n"
    default: out.unicodeScalars.append(c)
    }
  }
  return out + "\""
}
