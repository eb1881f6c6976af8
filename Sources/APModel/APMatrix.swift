/// The three masks that make up an AP configuration: adapters (APM), usage domains (AQM) and
/// control domains (ADM). Used for QCI's answer, an mdev's assigned matrix and a guest's APCB.
public struct APMatrix: Hashable, Sendable {
  public var apm: APMask
  public var aqm: APMask
  public var adm: APMask

  public init(apm: APMask = .empty, aqm: APMask = .empty, adm: APMask = .empty) {
    self.apm = apm
    self.aqm = aqm
    self.adm = adm
  }

  public static let empty = APMatrix()

  /// Every APQN of apm x aqm, adapters ascending then domains ascending.
  public var apqns: [APQN] {
    var out: [APQN] = []
    out.reserveCapacity(apm.count * aqm.count)
    for a in apm { for q in aqm { out.append(APQN(a, q)) } }
    return out
  }

  public func contains(_ q: APQN) -> Bool { apm.contains(q.apid) && aqm.contains(q.apqi) }

  public var isEmpty: Bool { apm.isEmpty && aqm.isEmpty && adm.isEmpty }

  /// The kernel's `matrix` / `guest_matrix` text: `"%02lx.%04lx\n"` per APQN when both masks are
  /// non-empty, `"%02lx.\n"` per adapter or `".%04lx\n"` per domain when only one is, empty when
  /// neither is. Control domains are not shown.
  public var matrixText: String {
    var s = ""
    if !apm.isEmpty && !aqm.isEmpty {
      for a in apm { for q in aqm { s += hex2(a) + "." + hex4(q) + "\n" } }
    } else if !apm.isEmpty {
      for a in apm { s += hex2(a) + ".\n" }
    } else if !aqm.isEmpty {
      for q in aqm { s += "." + hex4(q) + "\n" }
    }
    return s
  }

  /// The `ap_config` text: three hex masks separated by commas, 201 bytes with the newline.
  public var apConfigText: String { "\(apm.hexString),\(aqm.hexString),\(adm.hexString)\n" }
}
