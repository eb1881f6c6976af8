import APModel

#if canImport(Glibc)
  import Glibc
#endif

/// A sysfs file that cannot be read, or does not say what the kernel's would.
public struct SnapshotError: Error, Hashable, CustomStringConvertible {
  /// The full path of the file.
  public var path: String
  public var reason: String

  public init(path: String, reason: String) {
    self.path = path
    self.reason = reason
  }

  public var description: String { "\(path): \(reason)" }
}

extension SysfsSnapshot {
  /// Reads the AP bus, its cards and queues and vfio_ap's mdevs under `root` (`/sys`, the
  /// emulated host's mount, or a copy of one). A file every AP kernel has that is missing or
  /// unreadable throws, naming it; files of later kernels may be missing.
  public static func read(root: String) throws(SnapshotError) -> SysfsSnapshot {
    try read(from: POSIXSysfsRoot(root))
  }

  /// The same from any ``SysfsHost`` (an emulated kernel in the same process, in tests).
  public static func read(from host: some SysfsHost) throws(SnapshotError) -> SysfsSnapshot {
    let r = SysfsReader(host: host)
    var s = SysfsSnapshot(root: host.root)
    s.apmask = try r.mask("bus/ap/apmask")
    s.aqmask = try r.mask("bus/ap/aqmask")
    s.maxAdapterID = try r.int("bus/ap/ap_max_adapter_id")
    s.maxDomainID = try r.int("bus/ap/ap_max_domain_id")
    let adapters = try r.qciMask("bus/ap/ap_adapter_mask")
    let usage = try r.qciMask("bus/ap/ap_usage_domain_mask")
    let control = try r.qciMask("bus/ap/ap_control_domain_mask")
    if let adapters, let usage, let control { s.qci = APMatrix(apm: adapters, aqm: usage, adm: control) }
    s.interrupts = try r.optionalBool("bus/ap/ap_interrupts")
    s.features = try r.optional("bus/ap/features").map { text in
      let t = text.trimmingNewline
      return t == "-" ? [] : t.split(separator: " ").map(String.init)
    }

    for name in try r.list("devices/ap", required: false) where name.hasPrefix("card") {
      guard name.count == 6, let apid = Int(name.dropFirst(4), radix: 16), (0...255).contains(apid) else {
        continue
      }
      let dir = "devices/ap/" + name
      guard r.isDirectory(dir) else { continue }
      s.cards[apid] = SysfsSnapshot.Card(
        apid: apid, type: try r.optional(dir + "/type")?.trimmingNewline, driver: r.driver(dir),
        online: try r.optionalBool(dir + "/online"), config: try r.optionalBool(dir + "/config"),
        chkstop: try r.optionalBool(dir + "/chkstop"),
        rawHardwareType: try r.optionalInt(dir + "/raw_hwtype"),
        functions: try r.optional(dir + "/ap_functions").flatMap { t in
          let h = t.trimmingNewline
          return h.hasPrefix("0x") ? UInt32(h.dropFirst(2), radix: 16) : nil
        }, depth: try r.optionalInt(dir + "/depth"))
      for qname in try r.list(dir) {
        guard let apqn = APQN(qname), apqn.apid == apid, qname == apqn.description else { continue }
        let qdir = dir + "/" + qname
        guard r.isDirectory(qdir) else { continue }
        let override = try r.optional(qdir + "/driver_override")?.trimmingNewline
        s.queues[apqn] = SysfsSnapshot.Queue(
          apqn: apqn, driver: r.driver(qdir), online: try r.optionalBool(qdir + "/online"),
          config: try r.optionalBool(qdir + "/config"), chkstop: try r.optionalBool(qdir + "/chkstop"),
          status: try r.optional(qdir + "/status")?.trimmingNewline,
          driverOverride: override.flatMap { $0.isEmpty || $0 == "(null)" ? nil : $0 })
      }
    }

    if let mdevs = try r.mdevs() {
      s.hasVFIOAP = true
      s.mdevs = mdevs.map { m in
        var m = m
        m.inUse = m.matrix.apqns.contains { s.queues[$0]?.inUse == true }
        return m
      }
    } else {
      s.hasVFIOAP = false
    }
    return s
  }

  /// `8-4-4-4-12` hex digits with hyphens.
  public static func isUUID(_ s: some StringProtocol) -> Bool {
    let u = Array(s.utf8)
    guard u.count == 36 else { return false }
    for (i, c) in u.enumerated() {
      if [8, 13, 18, 23].contains(i) {
        if c != UInt8(ascii: "-") { return false }
      } else if !KernelNumber.isHexDigit(c) {
        return false
      }
    }
    return true
  }

  /// The `matrix` / `guest_matrix` text back into masks: `05.0004` lines, or `05.` / `.0004` when
  /// only adapters or only domains are assigned. Nil when a line is none of these.
  public static func parseMatrixText(_ text: String) -> APMatrix? {
    var m = APMatrix()
    for line in text.split(separator: "\n") {
      let parts = line.split(separator: ".", omittingEmptySubsequences: false)
      guard parts.count == 2, !(parts[0].isEmpty && parts[1].isEmpty) else { return nil }
      if !parts[0].isEmpty {
        guard parts[0].count == 2, let a = Int(parts[0], radix: 16) else { return nil }
        m.apm.insert(a)
      }
      if !parts[1].isEmpty {
        guard parts[1].count == 4, let q = Int(parts[1], radix: 16), q <= 255 else { return nil }
        m.aqm.insert(q)
      }
    }
    return m
  }

  /// The `ap_config` text (`0x...,0x...,0x...`) back into masks.
  public static func parseAPConfig(_ text: String) -> APMatrix? {
    let pieces = text.trimmingNewline.split(separator: ",", omittingEmptySubsequences: false)
    guard pieces.count == 3 else { return nil }
    var masks: [APMask] = []
    for p in pieces {
      guard p.hasPrefix("0x"), let m = try? MaskParser.hexToBitmap(Array(p.utf8)) else { return nil }
      masks.append(m)
    }
    return APMatrix(apm: masks[0], aqm: masks[1], adm: masks[2])
  }
}

/// Reads files of a ``SysfsHost`` with the system's reasons for failures.
struct SysfsReader {
  let host: any SysfsHost

  func path(_ relative: String) -> String { host.fullPath(relative) }

  func isDirectory(_ relative: String) -> Bool { host.isDirectory(relative) }

  /// The whole file, or nil when it does not exist.
  func optional(_ relative: String) throws(SnapshotError) -> String? {
    do throws(Errno) {
      return try host.read(relative).map { String(decoding: $0, as: UTF8.self) }
    } catch {
      throw SnapshotError(path: path(relative), reason: String(cString: strerror(error.rawValue)))
    }
  }

  func text(_ relative: String) throws(SnapshotError) -> String {
    guard let t = try optional(relative) else {
      throw SnapshotError(path: path(relative), reason: String(cString: strerror(ENOENT)))
    }
    return t
  }

  func mask(_ relative: String) throws(SnapshotError) -> APMask {
    let t = try text(relative)
    guard t.hasPrefix("0x"), let m = try? MaskParser.hexToBitmap(Array(t.utf8)) else {
      throw SnapshotError(path: path(relative), reason: "not a hex mask: \(t.quoted)")
    }
    return m
  }

  /// A QCI mask, nil when the kernel says `not supported` (no QCI) or the file is missing.
  func qciMask(_ relative: String) throws(SnapshotError) -> APMask? {
    guard let t = try optional(relative) else { return nil }
    if t.trimmingNewline == "not supported" { return nil }
    return try mask(relative)
  }

  func int(_ relative: String) throws(SnapshotError) -> Int {
    let t = try text(relative)
    guard let v = Int(t.trimmingNewline) else {
      throw SnapshotError(path: path(relative), reason: "not a number: \(t.quoted)")
    }
    return v
  }

  func optionalInt(_ relative: String) throws(SnapshotError) -> Int? {
    guard let t = try optional(relative) else { return nil }
    guard let v = Int(t.trimmingNewline) else {
      throw SnapshotError(path: path(relative), reason: "not a number: \(t.quoted)")
    }
    return v
  }

  func optionalBool(_ relative: String) throws(SnapshotError) -> Bool? {
    guard let t = try optional(relative) else { return nil }
    switch t.trimmingNewline {
    case "0": return false
    case "1": return true
    default: throw SnapshotError(path: path(relative), reason: "not 0 or 1: \(t.quoted)")
    }
  }

  func matrixText(_ relative: String) throws(SnapshotError) -> APMatrix {
    let t = try text(relative)
    guard let m = SysfsSnapshot.parseMatrixText(t) else {
      throw SnapshotError(path: path(relative), reason: "not a matrix: \(t.quoted)")
    }
    return m
  }

  /// vfio_ap's mediated devices, by UUID ascending, with their assigned matrices and
  /// `guest_matrix` (`inUse` false: that is the queues' to say); nil when
  /// `devices/vfio_ap/matrix` does not exist (vfio_ap is not loaded).
  func mdevs() throws(SnapshotError) -> [SysfsSnapshot.Mdev]? {
    let matrixDir = "devices/vfio_ap/matrix"
    guard isDirectory(matrixDir) else { return nil }
    var mdevs: [SysfsSnapshot.Mdev] = []
    for name in try list(matrixDir) where SysfsSnapshot.isUUID(name) && isDirectory(matrixDir + "/" + name) {
      let dir = matrixDir + "/" + name
      var matrix: APMatrix
      let config = try optional(dir + "/ap_config")
      if let config {
        guard let m = SysfsSnapshot.parseAPConfig(config) else {
          throw SnapshotError(path: path(dir + "/ap_config"), reason: "not three hex masks: \(config.quoted)")
        }
        matrix = m
      } else {
        matrix = try matrixText(dir + "/matrix")
        let cdoms = try text(dir + "/control_domains")
        for line in cdoms.split(separator: "\n") {
          guard let d = Int(line, radix: 16), (0...255).contains(d) else {
            throw SnapshotError(
              path: path(dir + "/control_domains"), reason: "not a control domain: \(String(line).quoted)")
          }
          matrix.adm.insert(d)
        }
      }
      let guest = try optional(dir + "/guest_matrix").map { text throws(SnapshotError) in
        guard let m = SysfsSnapshot.parseMatrixText(text) else {
          throw SnapshotError(path: path(dir + "/guest_matrix"), reason: "not a matrix: \(text.quoted)")
        }
        return m
      }
      mdevs.append(
        SysfsSnapshot.Mdev(
          uuid: name.lowercased(), matrix: matrix, guestMatrix: guest, hasAPConfig: config != nil))
    }
    return mdevs.sorted { $0.uuid < $1.uuid }
  }

  /// The last component of the `driver` link's target (the link may dangle in a copy).
  func driver(_ dir: String) -> String? {
    host.linkTarget(dir + "/driver")?.split(separator: "/").last.map(String.init)
  }

  /// The names in a directory, sorted; a missing one is empty unless `required`.
  func list(_ relative: String, required: Bool = true) throws(SnapshotError) -> [String] {
    do throws(Errno) {
      if let names = try host.list(relative) { return names }
      if !required { return [] }
      throw Errno.noSuchFileOrDirectory
    } catch {
      throw SnapshotError(path: path(relative), reason: String(cString: strerror(error.rawValue)))
    }
  }
}

extension String {
  /// Without one trailing newline.
  var trimmingNewline: String { hasSuffix("\n") ? String(dropLast()) : self }

  /// In double quotes, with a newline shown as `\n`.
  var quoted: String { "\"" + replacingOccurrences("\n", "\\n") + "\"" }

  func replacingOccurrences(_ a: String, _ b: String) -> String {
    split(separator: a, omittingEmptySubsequences: false).joined(separator: b)
  }
}
