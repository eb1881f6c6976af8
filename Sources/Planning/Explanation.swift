import APModel

#if canImport(Glibc)
  import Glibc
#endif

/// What `apvirt explain` is asked about.
public enum ExplainSubject: Hashable, Sendable {
  case apqn(APQN)
  case mdev(String)
  case write(SysfsWrite)

  /// `05.0004`, a UUID, or `echo VALUE > PATH`.
  public static func parse(_ text: String) throws(SysfsWrite.ParseError) -> ExplainSubject {
    let t = text.trimmingNewline
    if t.hasPrefix("echo ") || t.contains(">") { return .write(try SysfsWrite.parse(shell: t)) }
    if SysfsSnapshot.isUUID(t) { return .mdev(t.lowercased()) }
    let parts = t.split(separator: ".", omittingEmptySubsequences: false)
    if parts.count == 2, (1...2).contains(parts[0].count), (1...4).contains(parts[1].count),
      let a = Int(parts[0], radix: 16), let q = Int(parts[1], radix: 16), q <= 255
    {
      return .apqn(APQN(a, q))
    }
    throw SysfsWrite.ParseError(
      description:
        "\(t.quoted) is neither an APQN (05.0004), an mdev's UUID nor a write ('echo VALUE > PATH')")
  }
}

/// The answers of `apvirt explain`, as lines of text.
public enum Explanation {
  public static func lines(_ subject: ExplainSubject, in s: SysfsSnapshot) -> [String] {
    switch subject {
    case .apqn(let q): apqn(q, in: s)
    case .mdev(let u): mdev(u, in: s)
    case .write(let w): write(w, in: s)
    }
  }

  /// `Cannot assign requested address`
  public static func strerror(_ e: Errno) -> String { String(cString: Glibc.strerror(e.rawValue)) }

  // MARK: - An APQN

  public static func apqn(_ q: APQN, in s: SysfsSnapshot) -> [String] {
    let c = APQNOwnership(q, in: s)
    var out = ["\(q): \(c.summary)"]
    let a = s.apmask.contains(q.apid) ? 1 : 0
    let d = s.aqmask.contains(q.apqi) ? 1 : 0
    if let o = c.queue?.driverOverride {
      out.append(
        "  driver_override is \(o): the queue belongs to the driver it names, whatever the masks say")
    } else if c.reservedByMasks {
      out.append(
        "  apmask bit \(q.apid) and aqmask bit \(q.apqi) are both 1: reserved for the host's default (zcrypt) drivers"
      )
    } else {
      out.append(
        "  apmask bit \(q.apid) is \(a) and aqmask bit \(q.apqi) is \(d): not reserved for the host, vfio_ap may have it"
      )
    }
    let host = s.hostConfiguration
    if !host.contains(q) {
      var missing: [String] = []
      if !host.apm.contains(q.apid) { missing.append("adapter \(hex2(q.apid)) is not in ap_adapter_mask") }
      if !host.aqm.contains(q.apqi) {
        missing.append("domain \(hex4(q.apqi)) is not in ap_usage_domain_mask")
      }
      out.append("  not in the host's AP configuration: " + missing.joined(separator: ", "))
    } else if let queue = c.queue {
      var facts = [queue.driver.map { "bound to \($0)" } ?? "bound to no driver"]
      if let o = queue.online { facts.append("online \(o ? 1 : 0)") }
      if let v = queue.config ?? s.cards[q.apid]?.config { facts.append("config \(v ? 1 : 0)") }
      if let v = queue.chkstop ?? s.cards[q.apid]?.chkstop { facts.append("chkstop \(v ? 1 : 0)") }
      if let st = queue.status { facts.append("status \(st.quoted)") }
      out.append("  queue \(q): " + facts.joined(separator: ", "))
    } else {
      out.append(
        "  the host's configuration has it, but there is no queue device \(q) (the AP bus has not found it)")
    }
    switch c.owner {
    case .mdev(let u, _):
      let m = s.mdev(u)!
      out.append("  mdev \(u) holds it: adapter \(hex2(q.apid)) and domain \(hex4(q.apqi)) are in its matrix")
      let f = MatrixRules.filter(m.matrix, in: s)
      if c.inGuestMatrix {
        out.append(
          m.inUse
            ? "  its guest_matrix has it, and its guest uses it"
            : "  its guest_matrix has it; no guest uses it now")
      } else if let why = f.droppedAdapters[q.apid] {
        out.append("  not in its guest_matrix: adapter \(hex2(q.apid)) is filtered out: \(why)")
        if why == .notInHostConfiguration { out.append("  " + overProvisioned(q.apid)) }
      } else if let why = f.droppedDomains[q.apqi] {
        out.append("  not in its guest_matrix: domain \(hex4(q.apqi)) is \(why)")
      } else {
        out.append("  not in its guest_matrix, though no queue explains it: " + staleFilter)
      }
    case .host:
      if !c.reservedByMasks { break }
      let row = s.queues.keys.filter { $0.apid == q.apid && s.isReservedByMasks($0) }.count
      let column = s.queues.keys.filter { $0.apqi == q.apqi && s.isReservedByMasks($0) }.count
      out.append(
        "  to give it to vfio_ap clear one bit: 'echo -\(q.apid) > bus/ap/apmask' frees adapter \(hex2(q.apid)) on every domain (\(count(row, "queue"))), 'echo -\(q.apqi) > bus/ap/aqmask' frees domain \(hex4(q.apqi)) on every adapter (\(count(column, "queue")))"
      )
    case .free:
      out.append(
        "  assign it to an mdev U: 'echo 0x\(hex2(q.apid)) > devices/vfio_ap/matrix/U/assign_adapter' and 'echo 0x\(hex4(q.apqi)) > devices/vfio_ap/matrix/U/assign_domain'"
      )
    case .unbound:
      out.append("  no driver is bound: bind it through bus/ap/drivers/vfio_ap/bind or bus/ap/drivers_probe")
    case .none:
      break
    }
    return out
  }

  static let staleFilter =
    "it was filtered out earlier and nothing has filtered again since (unassign_domain does not re-filter), or a reset of one of its queues did not complete; the next assign, ap_config write or AP bus scan filters again"

  static func overProvisioned(_ apid: APID) -> String {
    "adapter \(hex2(apid)) is assigned ahead of the hardware (over-provisioned): the kernel keeps it in matrix and plugs it into the guest when it comes, if every one of its queues binds to vfio_ap"
  }

  // MARK: - An mdev

  public static func mdev(_ uuid: String, in s: SysfsSnapshot) -> [String] {
    guard let m = s.mdev(uuid) else {
      let known = s.mdevs.map(\.uuid)
      return [
        "no mdev \(uuid.lowercased()) under \(s.root)/devices/vfio_ap/matrix"
          + (known.isEmpty ? " (there are none)" : "; there are: " + known.joined(separator: " "))
      ]
    }
    var out = ["mdev \(m.uuid): \(m.inUse ? "used by a guest" : "no guest uses it")"]
    out.append("  matrix: \(MatrixRules.matrixSummary(m.matrix))")
    let f = MatrixRules.filter(m.matrix, in: s)
    let guest = m.guestMatrix ?? APMatrix(apm: f.guest.apm, aqm: f.guest.aqm)
    out.append(
      "  guest_matrix\(m.guestMatrix == nil ? " (computed: this kernel has no guest_matrix)" : ""): "
        + MatrixRules.matrixSummary(APMatrix(apm: guest.apm, aqm: guest.aqm)))
    for apid in m.matrix.apm where !guest.apm.contains(apid) {
      if let why = f.droppedAdapters[apid] {
        out.append("  adapter \(hex2(apid)) is not in guest_matrix: \(why)")
        if why == .notInHostConfiguration { out.append("    " + overProvisioned(apid)) }
      } else if guest.aqm.isEmpty {
        continue
      } else {
        out.append(
          "  adapter \(hex2(apid)) is not in guest_matrix, though every queue is bound to vfio_ap: "
            + staleFilter)
      }
    }
    for apqi in m.matrix.aqm where !guest.aqm.contains(apqi) {
      let why = f.droppedDomains[apqi]
      out.append(
        "  domain \(hex4(apqi)) is not in guest_matrix: "
          + (why.map { "\($0) (ap_usage_domain_mask)" }
            ?? "unassign does not re-filter; the next filtering adds it"))
    }
    if m.matrix.apm.isEmpty != m.matrix.aqm.isEmpty {
      out.append(
        "  the guest gets no APQN until the mdev has \(m.matrix.apm.isEmpty ? "an adapter" : "a domain") as well"
      )
    }
    for d in m.matrix.adm {
      out.append(
        "  control domain \(hex4(d)): "
          + (s.hostConfiguration.adm.contains(d)
            ? "the guest gets it (the host's ap_control_domain_mask has it)"
            : "not in the host's ap_control_domain_mask: the guest does not get it"))
    }
    let shared = s.mdevs.filter { $0.uuid != m.uuid && $0.matrix.adm.intersects(m.matrix.adm) }
    for o in shared {
      out.append(
        "  shares control domains \(MatrixRules.list(o.matrix.adm.intersection(m.matrix.adm), hex4)) with mdev \(o.uuid) (allowed)"
      )
    }
    return out
  }

  // MARK: - A write

  public static func write(_ w: SysfsWrite, in s: SysfsSnapshot) -> [String] {
    let p = MatrixRules.predict(w, in: s)
    var out = [w.description]
    if let e = p.errno {
      out.append("  fails with \(e.symbolicName) (\(strerror(e))):")
      for c in p.conflicts.prefix(8) { out.append("    " + c.description) }
      if p.conflicts.count > 8 { out.append("    and \(p.conflicts.count - 8) more") }
      if let hint = hint(p, in: s) { out.append("  " + hint) }
    } else {
      out.append("  succeeds:")
      for e in p.effects { out.append("    " + e) }
    }
    return out
  }

  /// What would make a refused write pass.
  static func hint(_ p: WritePrediction, in s: SysfsSnapshot) -> String? {
    switch p.conflicts.first {
    case .reservedForHost(_, nil, _)?:
      var apids = APMask()
      var apqis = APMask()
      for case .reservedForHost(let q, nil, _) in p.conflicts {
        apids.insert(q.apid)
        apqis.insert(q.apqi)
      }
      let a = apids.map { "-\($0)" }.joined(separator: ",")
      let d = apqis.map { "-\($0)" }.joined(separator: ",")
      return
        "give them to vfio_ap first: 'echo \(a) > bus/ap/apmask' (whole adapters) or 'echo \(d) > bus/ap/aqmask' (whole domains)"
    case .heldByMdev(_, let u, _)?:
      return "an APQN can be in one mdev's matrix only: unassign it from mdev \(u) first"
    case .takenFromMdev(_, let u, _)?:
      return "unassign those APQNs from mdev \(u) first; clearing mask bits is never refused"
    case .beyondMax?:
      return
        "this host's adapter and domain numbers end at ap_max_adapter_id \(s.maxAdapterID) and ap_max_domain_id \(s.maxDomainID)"
    default:
      return nil
    }
  }

  static func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }
}
