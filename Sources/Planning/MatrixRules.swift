import APModel

/// Why a proposed write fails, one fact each, in the terms of the kernel's rules.
public enum RuleConflict: Error, Hashable, Sendable, CustomStringConvertible {
  /// The mdev's directory (or, before Linux 6.10, its `ap_config`) does not exist: ENOENT.
  case noSuchFile(String)
  /// `kstrtoul` or the mask grammar cannot read the value: EINVAL (ERANGE for an overflow).
  case unparsable(String, Errno)
  /// An id above `apm_max`, `aqm_max` or `adm_max`: ENODEV.
  case beyondMax(kind: IDKind, id: UInt64, max: Int)
  /// The APQN is owned by the host's default drivers (`ap_owned_by_def_drv`): EADDRNOTAVAIL.
  case reservedForHost(APQN, driverOverride: String?, driver: String?)
  /// Another mdev's assigned matrix holds the APQN: EADDRINUSE.
  case heldByMdev(APQN, uuid: String, inUse: Bool)
  /// A mask store would reserve for the host an APQN an mdev holds: EBUSY.
  case takenFromMdev(APQN, uuid: String, inUse: Bool)
  /// Linux 6.19: a mask cannot be stored while a queue has a `driver_override`: EINVAL.
  case driverOverrideSet(APQN, String)

  public enum IDKind: String, Hashable, Sendable {
    case adapter, domain
    case controlDomain = "control domain"

    var limitName: String {
      switch self {
      case .adapter: "apm_max"
      case .domain: "aqm_max"
      case .controlDomain: "adm_max"
      }
    }
    var file: String {
      switch self {
      case .adapter: "bus/ap/ap_max_adapter_id"
      case .domain, .controlDomain: "bus/ap/ap_max_domain_id"
      }
    }
  }

  public var errno: Errno {
    switch self {
    case .noSuchFile: .noSuchFileOrDirectory
    case .unparsable(_, let e): e
    case .beyondMax: .noSuchDevice
    case .reservedForHost: .addressNotAvailable
    case .heldByMdev: .addressInUse
    case .takenFromMdev: .resourceBusy
    case .driverOverrideSet: .invalidArgument
    }
  }

  public var description: String {
    switch self {
    case .noSuchFile(let p): return "\(p) does not exist"
    case .unparsable(let why, _): return why
    case .beyondMax(let kind, let id, let max):
      return
        "\(kind.rawValue) \(id) (0x\(String(id, radix: 16))) is beyond \(kind.limitName) \(max) (0x\(String(max, radix: 16)), \(kind.file))"
    case .reservedForHost(let q, let override, let driver):
      if let override {
        return "\(q) has driver_override \(override) and is bound to \(driver ?? "no driver"), a host driver"
      }
      return "\(q) is reserved for the host by apmask bit \(q.apid) and aqmask bit \(q.apqi)"
    case .heldByMdev(let q, let u, let inUse):
      return "\(q) is held by mdev \(u)\(inUse ? ", used by its guest" : "")"
    case .takenFromMdev(let q, let u, let inUse):
      return
        "\(q) would be reserved for the host but is held by mdev \(u)\(inUse ? ", used by its guest" : "")"
    case .driverOverrideSet(let q, let o):
      return "queue \(q) has driver_override \(o): masks and driver_override exclude each other (Linux 6.19)"
    }
  }
}

/// Why an adapter, a domain or a control domain of an mdev's matrix is not in its guest's APCB
/// (`guest_matrix`), as `vfio_ap_mdev_filter_matrix` and `vfio_ap_mdev_filter_cdoms` decide.
public enum FilterReason: Hashable, Sendable, CustomStringConvertible {
  /// Not in the host's AP configuration (QCI): over-provisioned; it is plugged in when it comes.
  case notInHostConfiguration
  /// The queue device does not exist.
  case queueMissing(APQN)
  /// The queue exists but is not bound to vfio_ap (a host driver has it, or none).
  case queueNotBound(APQN, driver: String?)

  public var description: String {
    switch self {
    case .notInHostConfiguration: "not in the host's AP configuration"
    case .queueMissing(let q): "queue \(q) is missing"
    case .queueNotBound(let q, let d):
      "queue \(q) is \(d.map { "bound to \($0)" } ?? "unbound"), not to vfio_ap"
    }
  }
}

/// The result of the kernel's filtering of one assigned matrix.
public struct FilteredMatrix: Hashable, Sendable {
  /// What the guest's APCB gets (the control domains included, which `guest_matrix` omits).
  public var guest: APMatrix
  public var droppedAdapters: [APID: FilterReason]
  public var droppedDomains: [APQI: FilterReason]
  public var droppedControlDomains: [Int: FilterReason]
}

/// What a proposed write would do: the errno the kernel would return, why, and the state after.
public struct WritePrediction: Sendable {
  public var write: SysfsWrite
  /// nil when the store succeeds.
  public var errno: Errno?
  /// Why it fails (every conflict found, in the kernel's order of checks).
  public var conflicts: [RuleConflict]
  /// What a successful store does, one sentence each; empty on failure.
  public var effects: [String]
  /// The state after the store (the state before when it fails or changes nothing).
  public var after: SysfsSnapshot

  public var succeeds: Bool { errno == nil }
}

/// The kernel's rules for the AP files, value in, result out: given a snapshot and a proposed
/// write, what `vfio_ap_ops.c` and `ap_bus.c` would answer, and the guest matrices it leads to.
/// It never drives a kernel; the emulated one is the test oracle that it agrees with.
public enum MatrixRules {
  // MARK: - Filtering

  /// `vfio_ap_mdev_filter_matrix` and `vfio_ap_mdev_filter_cdoms` from scratch, by the shared
  /// rule (``VFIOAPFilter``): adapters and domains the host's configuration lacks are dropped,
  /// and an adapter is dropped whole when one of its queues over the kept domains is missing or
  /// not bound to vfio_ap. (A queue whose last reset failed is dropped too, but sysfs does not
  /// show a reset's result.)
  public static func filter(_ matrix: APMatrix, in s: SysfsSnapshot) -> FilteredMatrix {
    let host = s.hostConfiguration
    let f = VFIOAPFilter.filterMatrix(matrix, host: host, previous: APMatrix()) { apqn -> FilterReason? in
      guard let q = s.queues[apqn] else { return .queueMissing(apqn) }
      return q.isBoundToVFIOAP ? nil : .queueNotBound(apqn, driver: q.driver)
    }
    var out = FilteredMatrix(
      guest: APMatrix(apm: f.apm, aqm: f.aqm, adm: VFIOAPFilter.filterCdoms(matrix.adm, host: host)),
      droppedAdapters: [:], droppedDomains: [:], droppedControlDomains: [:])
    for apid in f.adaptersNotInConfiguration { out.droppedAdapters[apid] = .notInHostConfiguration }
    for d in f.droppedByQueue { out.droppedAdapters[d.apid] = d.reason }
    for apqi in f.domainsNotInConfiguration { out.droppedDomains[apqi] = .notInHostConfiguration }
    for d in matrix.adm.subtracting(out.guest.adm) { out.droppedControlDomains[d] = .notInHostConfiguration }
    return out
  }

  // MARK: - Checks

  /// `vfio_ap_mdev_validate_masks` for `mdev` with a proposed matrix, by the shared rule
  /// (``VFIOAPRules/validateMasks(_:old:new:detail:)``): every APQN of apm x aqm owned by the
  /// host's default drivers (EADDRNOTAVAIL), else every APQN another mdev holds (EADDRINUSE).
  public static func validate(_ matrix: APMatrix, of uuid: String, in s: SysfsSnapshot) -> [RuleConflict] {
    let me = s.mdevs.firstIndex { $0.uuid == uuid }
    return RuleConflict.from(s.rules.validateMasks(me, old: APMatrix(), new: matrix, detail: .all), in: s)
  }

  /// `kstrtoul(buf, 0)`: the id to store (its limit is the rules' to check).
  static func parseID(_ bytes: [UInt8]) -> Result<UInt64, RuleConflict> {
    do {
      return .success(try KernelNumber.kstrtoul(bytes))
    } catch {
      let text = String(decoding: KernelNumber.cString(bytes), as: UTF8.self).quoted
      if error == .outOfRange {
        return .failure(.unparsable("\(text) does not fit in 64 bits (kstrtoul: ERANGE)", error))
      }
      return .failure(
        .unparsable(
          "\(text) is not a number as kstrtoul(buf, 0) reads one: decimal, 0x hex or 0-prefixed octal, an optional +, one optional newline, nothing else",
          error))
    }
  }

  // MARK: - Prediction

  /// What the kernel would answer to `w` in state `s`.
  public static func predict(_ w: SysfsWrite, in s: SysfsSnapshot) -> WritePrediction {
    switch w.target {
    case .apmask: return predictMask(w, in: s, adapters: true)
    case .aqmask: return predictMask(w, in: s, adapters: false)
    case .mdev(let uuid, let attribute):
      guard let m = s.mdev(uuid) else {
        return fail(w, s, [.noSuchFile("devices/vfio_ap/matrix/\(uuid)")])
      }
      if attribute == .apConfig && !m.hasAPConfig {
        return fail(w, s, [.noSuchFile(w.path + " (the kernel has no ap_config before Linux 6.10)")])
      }
      return predictMdev(w, m, attribute, in: s)
    }
  }

  static func fail(_ w: SysfsWrite, _ s: SysfsSnapshot, _ c: [RuleConflict]) -> WritePrediction {
    WritePrediction(write: w, errno: c[0].errno, conflicts: c, effects: [], after: s)
  }

  static func predictMdev(
    _ w: SysfsWrite, _ m: SysfsSnapshot.Mdev, _ attribute: SysfsWrite.MdevAttribute, in s: SysfsSnapshot
  ) -> WritePrediction {
    let kind: RuleConflict.IDKind
    let assigns: Bool
    switch attribute {
    case .assignAdapter: (kind, assigns) = (.adapter, true)
    case .unassignAdapter: (kind, assigns) = (.adapter, false)
    case .assignDomain: (kind, assigns) = (.domain, true)
    case .unassignDomain: (kind, assigns) = (.domain, false)
    case .assignControlDomain: (kind, assigns) = (.controlDomain, true)
    case .unassignControlDomain: (kind, assigns) = (.controlDomain, false)
    case .apConfig: return predictAPConfig(w, m, in: s)
    }
    let value: UInt64
    switch parseID(w.bytes) {
    case .failure(let c): return fail(w, s, [c])
    case .success(let v): value = v
    }
    let index = s.mdevs.firstIndex { $0.uuid == m.uuid }!
    let change: VFIOAPMatrixStore =
      assigns ? .assign(kind.rulesKind, value) : .unassign(kind.rulesKind, value)
    let result = s.rules.store(change, to: index, detail: .all)
    if !result.succeeds { return fail(w, s, RuleConflict.from(result.conflicts, in: s)) }
    if result.matrix == m.matrix {
      // The rules accepted the id, so it is within its limit.
      let id = Int(value)
      return noChange(
        w, s,
        "\(kind.rawValue) \(idText(kind, id)) is \(assigns ? "already" : "not") assigned to mdev \(m.shortID): nothing changes"
      )
    }
    // unassign_adapter / unassign_domain do not filter again.
    let refilter = assigns || kind == .controlDomain
    return succeed(w, m, result.matrix, in: s, refilter: refilter)
  }

  static func idText(_ kind: RuleConflict.IDKind, _ id: Int) -> String {
    kind == .adapter ? hex2(id) : hex4(id)
  }

  static func noChange(_ w: SysfsWrite, _ s: SysfsSnapshot, _ why: String) -> WritePrediction {
    WritePrediction(write: w, errno: nil, conflicts: [], effects: [why], after: s)
  }

  /// `ap_config_store`: three absolute masks from the first 201 bytes; EADDRNOTAVAIL and
  /// EADDRINUSE before ENODEV; all or nothing.
  static func predictAPConfig(_ w: SysfsWrite, _ m: SysfsSnapshot.Mdev, in s: SysfsSnapshot)
    -> WritePrediction
  {
    let pieces = MaskParser.apConfigPieces(w.bytes)
    var masks: [APMask] = []
    for (n, name) in ["adapter", "usage domain", "control domain"].enumerated() {
      guard n < pieces.count else {
        return fail(
          w, s,
          [
            .unparsable(
              "ap_config needs three masks separated by commas; the \(name) mask is missing", .invalidArgument
            )
          ])
      }
      let token = pieces[n]
      guard let mask = try? MaskParser.hexToBitmap(Array(token)) else {
        return fail(
          w, s,
          [
            .unparsable(
              "the \(name) mask \(String(decoding: token, as: UTF8.self).quoted) is not hex digits (after an optional 0x), at most 64",
              .invalidArgument)
          ])
      }
      masks.append(mask)
    }
    let new = APMatrix(apm: masks[0], aqm: masks[1], adm: masks[2])
    if new == m.matrix {
      return noChange(w, s, "mdev \(m.shortID) already has this configuration: nothing changes")
    }
    let index = s.mdevs.firstIndex { $0.uuid == m.uuid }!
    let result = s.rules.store(.apConfig(new), to: index, detail: .all)
    if !result.succeeds { return fail(w, s, RuleConflict.from(result.conflicts, in: s)) }
    return succeed(w, m, new, in: s, refilter: true)
  }

  /// A successful store to an mdev: the new matrix, and the guest matrix the kernel's filtering
  /// (or, for an unassign, the mere removal) gives.
  static func succeed(
    _ w: SysfsWrite, _ m: SysfsSnapshot.Mdev, _ new: APMatrix, in s: SysfsSnapshot, refilter: Bool
  ) -> WritePrediction {
    var after = s
    let i = after.mdevs.firstIndex { $0.uuid == m.uuid }!
    after.mdevs[i].matrix = new
    let oldGuest = m.guestMatrix ?? filter(m.matrix, in: s).guest
    var guest: APMatrix
    if refilter {
      guest = filter(new, in: s).guest
    } else {
      // unassign_adapter / unassign_domain: no re-filtering (the kernel's quirk).
      guest = oldGuest
      guest.apm = guest.apm.intersection(new.apm)
      guest.aqm = guest.aqm.intersection(new.aqm)
    }
    if m.guestMatrix != nil { after.mdevs[i].guestMatrix = APMatrix(apm: guest.apm, aqm: guest.aqm) }
    var effects: [String] = []
    let added = APMatrix(
      apm: new.apm.subtracting(m.matrix.apm), aqm: new.aqm.subtracting(m.matrix.aqm),
      adm: new.adm.subtracting(m.matrix.adm))
    let removed = APMatrix(
      apm: m.matrix.apm.subtracting(new.apm), aqm: m.matrix.aqm.subtracting(new.aqm),
      adm: m.matrix.adm.subtracting(new.adm))
    var change: [String] = []
    if !added.apm.isEmpty { change.append("gains adapter\(plural(added.apm)) \(list(added.apm, hex2))") }
    if !added.aqm.isEmpty { change.append("gains domain\(plural(added.aqm)) \(list(added.aqm, hex4))") }
    if !added.adm.isEmpty {
      change.append("gains control domain\(plural(added.adm)) \(list(added.adm, hex4))")
    }
    if !removed.apm.isEmpty {
      change.append("loses adapter\(plural(removed.apm)) \(list(removed.apm, hex2))")
    }
    if !removed.aqm.isEmpty { change.append("loses domain\(plural(removed.aqm)) \(list(removed.aqm, hex4))") }
    if !removed.adm.isEmpty {
      change.append("loses control domain\(plural(removed.adm)) \(list(removed.adm, hex4))")
    }
    effects.append(
      "mdev \(m.uuid) \(change.joined(separator: ", ")); its matrix becomes \(matrixSummary(new))")
    let over = new.apm.subtracting(s.hostConfiguration.apm)
    if !over.isEmpty && !added.apm.intersection(over).isEmpty {
      effects.append(
        "adapter\(plural(over)) \(list(over, hex2)) \(over.count == 1 ? "is" : "are") not in the host's AP configuration: assigned ahead (over-provisioned), plugged in when \(over.count == 1 ? "it comes" : "they come") if every queue binds to vfio_ap"
      )
    }
    effects += guestEffects(old: oldGuest, new: guest, of: m)
    if refilter {
      let f = filter(new, in: s)
      for (apid, why) in f.droppedAdapters.sorted(by: { $0.key < $1.key })
      where why != .notInHostConfiguration {
        effects.append("adapter \(hex2(apid)) stays out of guest_matrix: \(why)")
      }
    } else if guest != filter(new, in: s).guest {
      effects.append(
        "unassign does not re-filter: adapters filtered out before stay out of guest_matrix until the next assign, ap_config write or AP bus scan"
      )
    }
    return WritePrediction(write: w, errno: nil, conflicts: [], effects: effects, after: after)
  }

  /// What the guest gains and loses, and which queues get reset.
  static func guestEffects(old: APMatrix, new: APMatrix, of m: SysfsSnapshot.Mdev) -> [String] {
    let oldQ = Set(old.apqns)
    let newQ = Set(new.apqns)
    let gained = newQ.subtracting(oldQ).sorted()
    let lost = oldQ.subtracting(newQ).sorted()
    var out: [String] = []
    let who = m.inUse ? "its guest" : "guest_matrix (no guest uses it now)"
    let shown = matrixSummary(APMatrix(apm: new.apm, aqm: new.aqm))
    if gained.isEmpty && lost.isEmpty {
      if old.apm == new.apm && old.aqm == new.aqm {
        out.append("\(who): no change (\(shown))")
      } else {
        out.append("\(who) becomes \(shown)")
      }
    } else {
      if !gained.isEmpty { out.append("\(who) gains \(apqnList(gained))") }
      if !lost.isEmpty {
        out.append("\(who) loses \(apqnList(lost))" + (m.inUse ? "; those queues are reset (zeroized)" : ""))
      }
    }
    return out
  }

  // MARK: - apmask / aqmask

  /// `apmask_store` / `aqmask_store`.
  static func predictMask(_ w: SysfsWrite, in s: SysfsSnapshot, adapters: Bool) -> WritePrediction {
    let name = adapters ? "apmask" : "aqmask"
    if let q = s.queues.values.sorted(by: { $0.apqn < $1.apqn }).first(where: { $0.driverOverride != nil }) {
      return fail(w, s, [.driverOverrideSet(q.apqn, q.driverOverride!)])
    }
    let current = adapters ? s.apmask : s.aqmask
    let new: APMask
    do {
      new = try MaskParser.parse(w.bytes, current: current)
    } catch {
      return fail(
        w, s,
        [
          .unparsable(
            "\(String(decoding: KernelNumber.cString(w.bytes), as: UTF8.self).quoted) is not a mask: +N/-N terms (ranges N-M, numbers below 256) or hex digits",
            .invalidArgument)
        ])
    }
    if new == current { return noChange(w, s, "\(name) already is \(new.hexString): nothing changes") }
    let reserved = new.subtracting(current)
    if !reserved.isEmpty {
      // `vfio_ap_mdev_resource_in_use` for the newly reserved part: EBUSY.
      let inUse =
        adapters
        ? s.rules.resourceInUse(apm: reserved, aqm: s.aqmask, detail: .all)
        : s.rules.resourceInUse(apm: s.apmask, aqm: reserved, detail: .all)
      if !inUse.isEmpty { return fail(w, s, RuleConflict.from(inUse, in: s, taken: true)) }
    }
    var after = s
    if adapters { after.apmask = new } else { after.aqmask = new }
    // Re-probe: every queue whose reservation changed binds to the driver that now owns it.
    var toHost: [APQN] = []
    var toVFIO: [APQN] = []
    for (apqn, q) in s.queues {
      let was = s.isReservedByMasks(apqn)
      let now = after.isReservedByMasks(apqn)
      guard was != now else { continue }
      after.queues[apqn]!.driver = now ? SysfsSnapshot.defaultQueueDriver : SysfsSnapshot.vfioAPDriver
      after.queues[apqn]!.status = now ? nil : (s.holder(of: apqn) == nil ? "unassigned" : "assigned")
      _ = q
      if now { toHost.append(apqn) } else { toVFIO.append(apqn) }
    }
    var effects = ["\(name) becomes \(new.hexString)"]
    if !toHost.isEmpty {
      effects.append(
        "\(toHost.count) queue\(toHost.count == 1 ? "" : "s") go\(toHost.count == 1 ? "es" : "") from vfio_ap to the host's \(SysfsSnapshot.defaultQueueDriver) (reset on the way): \(apqnList(toHost.sorted()))"
      )
    }
    if !toVFIO.isEmpty {
      effects.append(
        "\(toVFIO.count) queue\(toVFIO.count == 1 ? "" : "s") go\(toVFIO.count == 1 ? "es" : "") from the host's drivers to vfio_ap (reset on the way): \(apqnList(toVFIO.sorted()))"
      )
    }
    if toHost.isEmpty && toVFIO.isEmpty { effects.append("no queue changes driver") }
    // A queue that comes to vfio_ap joins the mdev that holds it, which is filtered again.
    for (i, m) in after.mdevs.enumerated() where toVFIO.contains(where: { m.matrix.contains($0) }) {
      let old = m.guestMatrix ?? filter(m.matrix, in: s).guest
      let g = filter(m.matrix, in: after).guest
      if m.guestMatrix != nil { after.mdevs[i].guestMatrix = APMatrix(apm: g.apm, aqm: g.aqm) }
      effects += guestEffects(old: old, new: g, of: m).map { "mdev \(m.shortID): " + $0 }
    }
    return WritePrediction(write: w, errno: nil, conflicts: [], effects: effects, after: after)
  }

  // MARK: - Text

  static func plural(_ m: APMask) -> String { m.count == 1 ? "" : "s" }

  static func list(_ m: APMask, _ f: (Int) -> String) -> String { m.map(f).joined(separator: " ") }

  /// At most eight APQNs, then how many more.
  public static func apqnList(_ q: [APQN]) -> String {
    let shown = q.prefix(8).map(\.description).joined(separator: " ")
    return q.count > 8 ? shown + " and \(q.count - 8) more" : shown
  }

  /// `adapters 05 06 x domains 0004 0047, control domains 0004` or `empty`.
  public static func matrixSummary(_ m: APMatrix) -> String {
    var parts: [String] = []
    if !m.apm.isEmpty || !m.aqm.isEmpty {
      parts.append(
        "adapters \(m.apm.isEmpty ? "none" : list(m.apm, hex2)) x domains \(m.aqm.isEmpty ? "none" : list(m.aqm, hex4))"
      )
    }
    if !m.adm.isEmpty { parts.append("control domains \(list(m.adm, hex4))") }
    return parts.isEmpty ? "empty" : parts.joined(separator: ", ")
  }
}
