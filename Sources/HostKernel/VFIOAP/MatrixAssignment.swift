import APModel
import SystemPackage

/// The assignment stores of an mdev's sysfs attributes (`vfio_ap_ops.c`): each store either
/// succeeds whole or fails with the kernel's errno and leaves the mdev as it was. What a store is
/// allowed to do is decided by the rules shared with the planner (``VFIOAPRules``); here is what
/// the kernel then does: the ownership index, the queue links, the filtering, the guest's APCB,
/// the resets and the log.
extension VFIOAPDriver {
  /// Asks the shared rules (``VFIOAPRules/store(_:to:detail:)``) what `change` does to `m`'s
  /// matrix and returns the matrix after it; a refused store throws the rules' errno and leaves
  /// the mdev as it was. A sharing conflict (`vfio_ap_mdev_verify_no_sharing`) is logged per
  /// APQN on this mdev, as `vfio_ap_mdev_log_sharing_err` does.
  func decide(_ m: MediatedDevice, _ change: VFIOAPMatrixStore) throws(Errno) -> APMatrix {
    let result = rules.store(change, to: m, detail: .first)
    guard let first = result.conflicts.first else { return result.matrix }
    if case .sharedWith(let other, let a, let q) = first {
      for apid in a {
        for apqi in q {
          // Before d33d729afcc8 (6.15) both conflicts had one text.
          mdevLog(
            m,
            kernel.profile.hasSharingMessageFix
              ? "Userspace may not assign queue \(hex2(apid)).\(hex4(apqi)) to mdev: already assigned to \(other.uuid)"
              : "Userspace may not re-assign queue \(hex2(apid)).\(hex4(apqi)) already assigned to \(other.uuid)"
          )
        }
      }
    }
    throw first.errno
  }

  /// An id as the rules take it: what `kstrtoul` gave (a negative one is beyond every limit).
  static func storedID(_ id: Int) -> UInt64 { id < 0 ? .max : UInt64(id) }

  /// Parses an id for assign/unassign: `kstrtoul(buf, 0)`; the limit is the rules' business.
  func parseID(_ bytes: [UInt8]) throws(Errno) -> UInt64 { try KernelNumber.kstrtoul(bytes) }

  // MARK: - Adapters

  /// `assign_adapter`.
  public func assignAdapter(_ m: MediatedDevice, _ apid: APID) throws(Errno) {
    try assign(m, .adapter, Self.storedID(apid))
  }

  /// `assign_adapter`, `assign_domain` and `assign_control_domain` with the id as `kstrtoul`
  /// gave it.
  func assign(_ m: MediatedDevice, _ kind: VFIOAPIDKind, _ id: UInt64) throws(Errno) {
    let new = try decide(m, .assign(kind, id))
    guard new != m.matrix else { return }
    // The rules accepted the id, so it is within its limit.
    let id = Int(id)
    switch kind {
    case .adapter: assignedAdapter(m, id, new)
    case .domain: assignedDomain(m, id, new)
    case .controlDomain:
      m.matrix = new
      if filterCdoms(m) { updateGuestAPCB(m) }
    }
  }

  /// `unassign_adapter`, `unassign_domain` and `unassign_control_domain` with the id as
  /// `kstrtoul` gave it.
  func unassign(_ m: MediatedDevice, _ kind: VFIOAPIDKind, _ id: UInt64) throws(Errno) {
    let new = try decide(m, .unassign(kind, id))
    guard new != m.matrix else { return }
    let id = Int(id)
    switch kind {
    case .adapter: hotUnplugAdapters(m, APMask([id]))
    case .domain: hotUnplugDomains(m, APMask([id]))
    case .controlDomain:
      m.matrix = new
      if m.shadowAPCB.adm.contains(id) {
        m.shadowAPCB.adm.remove(id)
        updateGuestAPCB(m)
      }
    }
  }

  /// What a successful `assign_adapter` does: ownership, the queue links, the filtering.
  func assignedAdapter(_ m: MediatedDevice, _ apid: APID, _ new: APMatrix) {
    m.matrix = new
    setOwner(m, apm: APMask([apid]), aqm: m.matrix.aqm)
    linkAdapter(m, apid)
    let (changed, filtered) = filterMatrix(m)
    if changed {
      updateGuestAPCB(m)
      resetQueues(m, apids: filtered)
    }
  }

  /// `unassign_adapter`: no re-filtering.
  public func unassignAdapter(_ m: MediatedDevice, _ apid: APID) throws(Errno) {
    try unassign(m, .adapter, Self.storedID(apid))
  }

  /// `vfio_ap_mdev_hot_unplug_adapters`: unlink the adapters' queues, clear them from the
  /// assigned matrix and the guest's APCB (one update if the guest had any), reset the queues
  /// the guest had.
  func hotUnplugAdapters(_ m: MediatedDevice, _ apids: APMask) {
    var qlist: [VFIOAPQueue] = []
    var apcbUpdate = false
    for apid in apids {
      qlist += unlinkAdapter(m, apid)
      setOwner(nil, apm: APMask([apid]), aqm: m.matrix.aqm)
      m.matrix.apm.remove(apid)
      if m.shadowAPCB.apm.contains(apid) {
        m.shadowAPCB.apm.remove(apid)
        apcbUpdate = true
      }
    }
    if apcbUpdate { updateGuestAPCB(m) }
    resetQList(qlist)
  }

  /// Links the vfio_ap queues of a newly assigned adapter.
  func linkAdapter(_ m: MediatedDevice, _ apid: APID) {
    for apqi in m.matrix.aqm { linkAPQN(m, APQN(apid, apqi)) }
  }

  /// Unlinks an adapter's queues; returns those that were in the guest's APCB.
  func unlinkAdapter(_ m: MediatedDevice, _ apid: APID) -> [VFIOAPQueue] {
    var inGuest: [VFIOAPQueue] = []
    for apqi in m.matrix.aqm {
      if let q = m.linkedQueue(APQN(apid, apqi)) {
        if m.shadowAPCB.apm.contains(apid) && m.shadowAPCB.aqm.contains(apqi) { inGuest.append(q) }
        q.matrixMdev = nil
      }
    }
    return inGuest
  }

  // MARK: - Domains

  /// `assign_domain`.
  public func assignDomain(_ m: MediatedDevice, _ apqi: APQI) throws(Errno) {
    try assign(m, .domain, Self.storedID(apqi))
  }

  /// What a successful `assign_domain` does: ownership, the queue links, the filtering.
  func assignedDomain(_ m: MediatedDevice, _ apqi: APQI, _ new: APMatrix) {
    m.matrix = new
    setOwner(m, apm: m.matrix.apm, aqm: APMask([apqi]))
    linkDomain(m, apqi)
    let (changed, filtered) = filterMatrix(m)
    if changed {
      updateGuestAPCB(m)
      resetQueues(m, apids: filtered)
    }
  }

  /// `unassign_domain`: no re-filtering, so an adapter dropped only because of this domain stays
  /// out of the guest until the next filtering event (a quirk the kernel has).
  public func unassignDomain(_ m: MediatedDevice, _ apqi: APQI) throws(Errno) {
    try unassign(m, .domain, Self.storedID(apqi))
  }

  func hotUnplugDomains(_ m: MediatedDevice, _ apqis: APMask) {
    var qlist: [VFIOAPQueue] = []
    var apcbUpdate = false
    for apqi in apqis {
      qlist += unlinkDomain(m, apqi)
      setOwner(nil, apm: m.matrix.apm, aqm: APMask([apqi]))
      m.matrix.aqm.remove(apqi)
      if m.shadowAPCB.aqm.contains(apqi) {
        m.shadowAPCB.aqm.remove(apqi)
        apcbUpdate = true
      }
    }
    if apcbUpdate { updateGuestAPCB(m) }
    resetQList(qlist)
  }

  func linkDomain(_ m: MediatedDevice, _ apqi: APQI) {
    for apid in m.matrix.apm { linkAPQN(m, APQN(apid, apqi)) }
  }

  func unlinkDomain(_ m: MediatedDevice, _ apqi: APQI) -> [VFIOAPQueue] {
    var inGuest: [VFIOAPQueue] = []
    for apid in m.matrix.apm {
      if let q = m.linkedQueue(APQN(apid, apqi)) {
        if m.shadowAPCB.apm.contains(apid) && m.shadowAPCB.aqm.contains(apqi) { inGuest.append(q) }
        q.matrixMdev = nil
      }
    }
    return inGuest
  }

  /// `vfio_ap_mdev_link_apqn`: a queue bound to vfio_ap joins the mdev's table.
  func linkAPQN(_ m: MediatedDevice, _ apqn: APQN) {
    guard let v = queue(apqn) else { return }
    link(m, v)
  }

  /// The link itself, for a queue whose record the caller has (the probe has just made it).
  func link(_ m: MediatedDevice, _ v: VFIOAPQueue) { v.matrixMdev = m }

  // MARK: - Control domains

  /// `assign_control_domain`: no mask or sharing checks; the guest gets it if the host has it.
  public func assignControlDomain(_ m: MediatedDevice, _ id: Int) throws(Errno) {
    try assign(m, .controlDomain, Self.storedID(id))
  }

  /// `unassign_control_domain`.
  public func unassignControlDomain(_ m: MediatedDevice, _ id: Int) throws(Errno) {
    try unassign(m, .controlDomain, Self.storedID(id))
  }

  // MARK: - ap_config

  /// The `ap_config` text that counts: at most the first 201 bytes.
  static let apConfigLength = 201

  /// `ap_config_store`: three absolute masks; the rules validate (EADDRNOTAVAIL, EADDRINUSE)
  /// before the range check (ENODEV); all or nothing. On success: unplug removed adapters, then removed
  /// domains, link the added ones, filter, update the guest if anything changed.
  public func storeAPConfig(_ m: MediatedDevice, _ bytes: [UInt8]) throws(Errno) {
    let pieces = MaskParser.apConfigPieces(bytes, length: Self.apConfigLength)
    guard pieces.count == 3 else { throw .invalidArgument }
    let new = APMatrix(
      apm: try MaskParser.hexToBitmap(Array(pieces[0])), aqm: try MaskParser.hexToBitmap(Array(pieces[1])),
      adm: try MaskParser.hexToBitmap(Array(pieces[2])))
    try applyAPConfig(m, new)
  }

  /// What `ap_config` does with three parsed masks.
  public func applyAPConfig(_ m: MediatedDevice, _ new: APMatrix) throws(Errno) {
    let old = m.matrix
    let removedAPM = old.apm.subtracting(new.apm)
    let removedAQM = old.aqm.subtracting(new.aqm)
    let addedAPM = new.apm.subtracting(old.apm)
    let addedAQM = new.aqm.subtracting(old.aqm)
    _ = try decide(m, .apConfig(new))
    hotUnplugAdapters(m, removedAPM)
    hotUnplugDomains(m, removedAQM)
    // Ownership: what remains of the old product is still ours; add the new product.
    m.matrix = new
    setOwner(m, apm: new.apm, aqm: new.aqm)
    for apid in addedAPM { linkAdapter(m, apid) }
    for apqi in addedAQM { linkDomain(m, apqi) }
    var (update, filtered) = filterMatrix(m)
    update = filterCdoms(m) || update
    if update {
      updateGuestAPCB(m)
      resetQueues(m, apids: filtered)
    }
  }
}
