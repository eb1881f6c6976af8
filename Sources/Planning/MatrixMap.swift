import APModel

/// The adapters x domains grid of a host: the owner of every APQN and the control domains, as
/// `apvirt map` shows it on a terminal, in JSON and as an HTML page.
public struct MatrixMap: Sendable {
  public let snapshot: SysfsSnapshot
  /// Rows: the adapters the host has, has cards for, or an mdev holds; ascending.
  public let adapters: [APID]
  /// Columns: the usage and control domains the host has or an mdev holds; ascending.
  public let domains: [APQI]
  /// Each mdev's letter (`a`, `b`, ...; `#` after the 26th), by UUID.
  public let letters: [String: Character]
  public let cells: [APQN: APQNOwnership]

  public init(_ s: SysfsSnapshot) {
    snapshot = s
    let host = s.hostConfiguration
    var apm = host.apm.union(APMask(s.cards.keys))
    var dom = host.aqm.union(host.adm).union(APMask(s.queues.keys.map(\.apqi)))
    for m in s.mdevs {
      apm = apm.union(m.matrix.apm)
      dom = dom.union(m.matrix.aqm).union(m.matrix.adm)
    }
    adapters = Array(apm)
    domains = Array(dom)
    var letters: [String: Character] = [:]
    for (i, m) in s.mdevs.enumerated() {
      letters[m.uuid] = i < 26 ? Character(Unicode.Scalar(UInt8(ascii: "a") + UInt8(i))) : "#"
    }
    self.letters = letters
    var cells: [APQN: APQNOwnership] = [:]
    for a in adapters {
      for d in domains { cells[APQN(a, d)] = APQNOwnership(APQN(a, d), in: s) }
    }
    self.cells = cells
  }

  // MARK: - Symbols

  /// The cell's character: `!` checkstopped, `-` deconfigured, else the owner: `h` a host
  /// driver, `.` free for vfio_ap, the mdev's letter (upper case while its guest uses the APQN),
  /// `?` unbound, blank when the host does not have the APQN.
  public func symbol(_ c: APQNOwnership) -> Character {
    if c.checkstopped { return "!" }
    if c.deconfigured { return "-" }
    switch c.owner {
    case .host: return "h"
    case .free: return "."
    case .mdev(let u, let inUse):
      let l = letters[u] ?? "#"
      return inUse ? Character(l.uppercased()) : l
    case .unbound: return "?"
    case .none: return " "
    }
  }

  /// The control-domain row's character for domain `d`: the letter of the mdev that has it as a
  /// control domain (upper case while its guest has it), `*` for several, `.` in the host's ADM
  /// and no mdev's, blank otherwise.
  public func controlSymbol(_ d: Int) -> Character {
    let holders = snapshot.mdevs.filter { $0.matrix.adm.contains(d) }
    let inHost = snapshot.hostConfiguration.adm.contains(d)
    if holders.count > 1 { return "*" }
    if let m = holders.first {
      let l = letters[m.uuid] ?? "#"
      return m.inUse && inHost ? Character(l.uppercased()) : l
    }
    return inHost ? "." : " "
  }

  // MARK: - Terminal

  /// Columns per block: 64 domains in groups of 8 fit 80 columns with the row label.
  public static let domainsPerBlock = 64

  /// The grid as text, at most 80 columns wide: blocks of 64 domains, each with a two-line
  /// header (the domain's high and low hex digit), a row per adapter and the control-domain row;
  /// then the legend and the mdevs. With `color`, ANSI colours.
  public func text(color: Bool = false) -> String {
    let host = snapshot.hostConfiguration
    var out = "AP map of \(snapshot.root)\n\(count(host.apm.count, "adapter")), "
    out += "\(count(host.aqm.count, "usage domain")), \(count(host.adm.count, "control domain"))\n"
    if adapters.isEmpty || domains.isEmpty {
      out += "no adapters or domains\n"
      return out
    }
    var start = 0
    while start < domains.count {
      let block = Array(domains[start..<min(start + Self.domainsPerBlock, domains.count)])
      out += "\n"
      out += "    " + row(block) { d in Character(String(d >> 4, radix: 16)) } + "\n"
      out += "    " + row(block) { d in Character(String(d & 15, radix: 16)) } + "\n"
      for a in adapters {
        out += trimmed(hex2(a) + "  " + row(block) { d in paint(symbol(cells[APQN(a, d)]!), color) }) + "\n"
      }
      out += trimmed("ctl " + row(block) { d in paint(controlSymbol(d), color) }) + "\n"
      start += Self.domainsPerBlock
    }
    out += "\n"
    out += "h host driver  . free for vfio_ap  a-z held by an mdev (A-Z: used by its guest)\n"
    out += "- deconfigured  ! checkstopped  ? unbound  blank: the host does not have it\n"
    out += "ctl: . host control domain  a-z an mdev's control domain  * several mdevs'\n"
    for m in snapshot.mdevs {
      out += "\(letters[m.uuid]!) \(m.shortID): \(mdevSummary(m))\n"
      let missing = filteredAdapters(m)
      if !missing.isEmpty {
        out += wrap("not in guest_matrix: " + missing.joined(separator: ", "), indent: "  ")
      }
    }
    return out
  }

  /// `2 adapters x 1 domain, 1 control domain; used by a guest`
  public func mdevSummary(_ m: SysfsSnapshot.Mdev) -> String {
    var s = "\(count(m.matrix.apm.count, "adapter")) x \(count(m.matrix.aqm.count, "domain"))"
    if !m.matrix.adm.isEmpty { s += ", \(count(m.matrix.adm.count, "control domain"))" }
    s += m.inUse ? "; used by a guest" : "; no guest"
    return s
  }

  /// The adapters of `m`'s matrix that its guest_matrix lacks, each with the reason in short:
  /// `02 (02.0047 unbound)`, `07 (not in the host's configuration)`.
  public func filteredAdapters(_ m: SysfsSnapshot.Mdev) -> [String] {
    let f = MatrixRules.filter(m.matrix, in: snapshot)
    let guest = m.guestMatrix ?? f.guest
    return m.matrix.apm.subtracting(guest.apm).map { apid in
      let why: String
      switch f.droppedAdapters[apid] {
      case .notInHostConfiguration?: why = "not in the host's configuration"
      case .queueMissing(let q)?: why = "\(q) missing"
      case .queueNotBound(let q, nil)?: why = "\(q) unbound"
      case .queueNotBound(let q, let d?)?: why = "\(q) bound to \(d)"
      case nil: why = "not filtered again since it was dropped"
      }
      return "\(hex2(apid)) (\(why))"
    }
  }

  /// Lines of at most 80 columns after `indent`, continued two blanks further in.
  func wrap(_ text: String, indent: String) -> String {
    var lines: [String] = []
    var line = indent
    for word in text.split(separator: " ") {
      if line.count > indent.count && line.count + 1 + word.count > 80 {
        lines.append(line)
        line = indent + "  " + word
      } else {
        line += (line.count > indent.count ? " " : "") + word
      }
    }
    lines.append(line)
    return lines.map { $0 + "\n" }.joined()
  }

  func row(_ block: [APQI], _ f: (APQI) -> String) -> String {
    var s = ""
    for (i, d) in block.enumerated() {
      if i > 0 && i % 8 == 0 { s += " " }
      s += f(d)
    }
    return s
  }

  func row(_ block: [APQI], _ f: (APQI) -> Character) -> String {
    row(block) { (d: APQI) -> String in String(f(d)) }
  }

  func paint(_ c: Character, _ color: Bool) -> String {
    guard color else { return String(c) }
    let code: String
    switch c {
    case "h", "-": code = "2"
    case ".": code = "32"
    case "!": code = "1;31"
    case "?": code = "33"
    case " ", "*": return String(c)
    default:
      let palette = ["33", "34", "35", "36", "31", "32"]
      let lower = Character(c.lowercased())
      let i = Int(lower.asciiValue ?? 97) - 97
      code = (c.isUppercase ? "1;" : "") + palette[max(0, i) % palette.count]
    }
    return "\u{1b}[\(code)m\(c)\u{1b}[0m"
  }

  /// Without trailing blanks.
  func trimmed(_ s: String) -> String {
    var s = s
    while s.last == " " { s.removeLast() }
    return s
  }

  func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }
}
