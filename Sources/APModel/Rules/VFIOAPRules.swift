/// Why vfio_ap refuses a store to an mdev's matrix, one fact each, in the order the kernel checks.
public enum VFIOAPConflict<Mdev: Equatable>: Equatable {
  /// An id above `apm_max`, `aqm_max` or `adm_max` (`ap_matrix_overflow_check` for `ap_config`):
  /// ENODEV.
  case beyondMax(VFIOAPIDKind, id: UInt64, max: Int)
  /// The APQN belongs to the host's default drivers (`ap_owned_by_def_drv`), by the masks or by
  /// its `driver_override`: EADDRNOTAVAIL.
  case ownedByDefaultDriver(APQN, override: APQueueOverride?)
  /// Another mdev's assigned matrix holds `apm x aqm` of the proposed one
  /// (`vfio_ap_mdev_verify_no_sharing`): EADDRINUSE for an assignment. The AP bus turns the same
  /// finding for a mask store (`vfio_ap_mdev_resource_in_use`) into EBUSY.
  case sharedWith(Mdev, apm: APMask, aqm: APMask)

  /// The errno of an mdev store that meets this conflict.
  public var errno: Errno {
    switch self {
    case .beyondMax: .noSuchDevice
    case .ownedByDefaultDriver: .addressNotAvailable
    case .sharedWith: .addressInUse
    }
  }
}

extension VFIOAPConflict: Sendable where Mdev: Sendable {}

/// How many conflicts to collect: the kernel stops at the first (and logs it), an explanation
/// wants them all.
public enum VFIOAPRuleDetail: Hashable, Sendable {
  /// The first conflict of the first failing check, as the kernel reports it.
  case first
  /// Every conflict of the first failing check.
  case all
}

/// A store to an mdev's matrix attributes, its value parsed (`kstrtoul` for an id, three
/// `hex2bitmap` masks for `ap_config`): what the rules decide on.
public enum VFIOAPMatrixStore: Hashable, Sendable {
  /// `assign_adapter`, `assign_domain`, `assign_control_domain`.
  case assign(VFIOAPIDKind, UInt64)
  /// `unassign_adapter`, `unassign_domain`, `unassign_control_domain`.
  case unassign(VFIOAPIDKind, UInt64)
  /// `ap_config` (Linux 6.10): the whole matrix at once.
  case apConfig(APMatrix)
}

/// The rules' answer to a store: the conflicts (none when it succeeds) and the matrix after.
public struct VFIOAPStoreResult<Mdev: Equatable> {
  /// Empty when the store succeeds; else the failing check's conflicts, all of one errno.
  public var conflicts: [VFIOAPConflict<Mdev>]
  /// The assigned matrix after the store: the matrix before when it fails or changes nothing.
  public var matrix: APMatrix

  public init(conflicts: [VFIOAPConflict<Mdev>], matrix: APMatrix) {
    self.conflicts = conflicts
    self.matrix = matrix
  }

  /// The errno the store returns; nil on success.
  public var errno: Errno? { conflicts.first?.errno }
  public var succeeds: Bool { conflicts.isEmpty }
}

extension VFIOAPStoreResult: Equatable {}
extension VFIOAPStoreResult: Sendable where Mdev: Sendable {}

/// The rules of vfio_ap's matrix stores and of the AP bus's ownership, value in, result out:
/// the one place that decides them, for the emulated kernel (which then does the store's side
/// effects: ownership index, queue links, filtering, the guest's APCB, logs) and for the planner
/// (which turns the conflicts into sentences). It reads the state it is given and changes
/// nothing.
///
/// The functions are inlinable so that each caller gets them specialized for its own state
/// type: the kernel's lookups into its tables are direct calls, and a store that succeeds
/// allocates nothing here.
public struct VFIOAPRules<State: VFIOAPRulesState> {
  public var state: State

  @inlinable
  public init(_ state: State) { self.state = state }

  public typealias Conflict = VFIOAPConflict<State.Mdev>

  // MARK: - Ownership (ap_bus.c)

  /// `ap_owned_by_def_drv`: from Linux 6.19 a queue with a `driver_override` belongs to the
  /// default drivers exactly when one of them is bound to it, whatever the masks say; any other
  /// APQN when apmask and aqmask both have its bits.
  @inlinable
  public func ownedByDefDrv(_ apqn: APQN) -> Bool {
    if state.features.contains(.driverOverride), let o = state.driverOverride(of: apqn) {
      return o.boundDriverIsDefault
    }
    return state.apmask.contains(apqn.apid) && state.aqmask.contains(apqn.apqi)
  }

  /// `ap_apqn_in_matrix_owned_by_def_drv`: the APQNs of `apm x aqm` owned by the default
  /// drivers (adapters ascending, then domains), the first or all. Without an override anywhere
  /// it is two mask intersections, as in the kernel.
  @inlinable
  public func apqnInMatrixOwnedByDefDrv(apm: APMask, aqm: APMask, detail: VFIOAPRuleDetail) -> [APQN] {
    var out: [APQN] = []
    if !(state.features.contains(.driverOverride) && state.hasDriverOverrides) {
      let a = apm.intersection(state.apmask)
      let q = aqm.intersection(state.aqmask)
      if a.isEmpty || q.isEmpty { return out }
      for apid in a {
        for apqi in q {
          out.append(APQN(apid, apqi))
          if detail == .first { return out }
        }
      }
      return out
    }
    for apid in apm {
      for apqi in aqm where ownedByDefDrv(APQN(apid, apqi)) {
        out.append(APQN(apid, apqi))
        if detail == .first { return out }
      }
    }
    return out
  }

  // MARK: - Sharing (vfio_ap_ops.c)

  /// `vfio_ap_mdev_verify_no_sharing`: the mdevs other than `assignee` whose assigned matrix
  /// intersects `apm x aqm`, in `mdev_list` order, each with the intersection; with `.first`
  /// only the first, the one the kernel logs.
  ///
  /// Only the APQNs being added (`addedAPM x aqm` and `apm x addedAQM`) are looked up: the
  /// matrix before the change shared nothing, so every conflict lies among them, and a store
  /// costs what it adds, not a walk of every mdev.
  @inlinable
  public func verifyNoSharing(
    assignee: State.Mdev?, apm: APMask, aqm: APMask, addedAPM: APMask, addedAQM: APMask,
    detail: VFIOAPRuleDetail
  ) -> [Conflict] {
    var found: [State.Mdev] = []
    func visit(_ apid: Int, _ apqi: Int) {
      guard let o = state.mdev(holding: APQN(apid, apqi)), o != assignee else { return }
      if detail == .first {
        if found.isEmpty {
          found.append(o)
        } else if state.precedes(o, found[0]) {
          found[0] = o
        }
      } else if !found.contains(o) {
        found.append(o)
      }
    }
    let rows = addedAPM.intersection(apm)
    if !aqm.isEmpty {
      for apid in rows { for apqi in aqm { visit(apid, apqi) } }
    }
    let columns = addedAQM.intersection(aqm)
    if !columns.isEmpty {
      // The rows were visited whole already.
      for apid in apm.subtracting(rows) { for apqi in columns { visit(apid, apqi) } }
    }
    if found.isEmpty { return [] }
    if found.count > 1 { found.sort { state.precedes($0, $1) } }
    return found.map { o in
      let m = state.matrix(of: o)
      return .sharedWith(o, apm: apm.intersection(m.apm), aqm: aqm.intersection(m.aqm))
    }
  }

  /// `vfio_ap_mdev_validate_masks` for an mdev whose matrix goes from `old` to `new`: no APQN
  /// of `new`'s `apm x aqm` may be the default drivers' (EADDRNOTAVAIL), and, that passed, none
  /// another mdev holds (EADDRINUSE).
  @inlinable
  public func validateMasks(
    _ assignee: State.Mdev?, old: APMatrix, new: APMatrix, detail: VFIOAPRuleDetail
  ) -> [Conflict] {
    let owned = apqnInMatrixOwnedByDefDrv(apm: new.apm, aqm: new.aqm, detail: detail)
    if !owned.isEmpty {
      let overrides = state.features.contains(.driverOverride)
      return owned.map { .ownedByDefaultDriver($0, override: overrides ? state.driverOverride(of: $0) : nil) }
    }
    return verifyNoSharing(
      assignee: assignee, apm: new.apm, aqm: new.aqm, addedAPM: new.apm.subtracting(old.apm),
      addedAQM: new.aqm.subtracting(old.aqm), detail: detail)
  }

  /// `vfio_ap_mdev_resource_in_use`, what the AP bus asks before apmask or aqmask reserve
  /// `apm x aqm` for the host: the mdevs that hold any of it (`vfio_ap_mdev_verify_no_sharing`
  /// with no assignee). The bus refuses the mask store with EBUSY when there is one.
  @inlinable
  public func resourceInUse(apm: APMask, aqm: APMask, detail: VFIOAPRuleDetail) -> [Conflict] {
    verifyNoSharing(assignee: nil, apm: apm, aqm: aqm, addedAPM: apm, addedAQM: APMask(), detail: detail)
  }

  // MARK: - Stores

  /// What a store to `mdev`'s matrix attributes decides, in the kernel's order:
  ///
  /// - `assign_adapter`, `assign_domain`: ENODEV above the limit; an id assigned already is a
  ///   success that changes nothing; else ``validateMasks(_:old:new:detail:)`` on the matrix
  ///   with the id.
  /// - `assign_control_domain`: ENODEV above the limit, else accepted (control domains may be
  ///   shared and are never the host's).
  /// - `unassign_*`: ENODEV above the limit, else the id leaves (nothing changes when it was not
  ///   assigned).
  /// - `ap_config`: ``validateMasks(_:old:new:detail:)`` first, then `ap_matrix_overflow_check`
  ///   (ENODEV for any id above its limit); all or nothing.
  @inlinable
  public func store(_ change: VFIOAPMatrixStore, to mdev: State.Mdev, detail: VFIOAPRuleDetail)
    -> VFIOAPStoreResult<State.Mdev>
  {
    let old = state.matrix(of: mdev)
    let limits = state.limits
    switch change {
    case .assign(let kind, let id), .unassign(let kind, let id):
      let max = limits[kind]
      guard id <= UInt64(max) else {
        return VFIOAPStoreResult(conflicts: [.beyondMax(kind, id: id, max: max)], matrix: old)
      }
      var new = old
      let i = Int(id)
      if case .unassign = change {
        switch kind {
        case .adapter: new.apm.remove(i)
        case .domain: new.aqm.remove(i)
        case .controlDomain: new.adm.remove(i)
        }
        return VFIOAPStoreResult(conflicts: [], matrix: new)
      }
      switch kind {
      case .adapter: new.apm.insert(i)
      case .domain: new.aqm.insert(i)
      case .controlDomain:
        new.adm.insert(i)
        return VFIOAPStoreResult(conflicts: [], matrix: new)
      }
      if new == old { return VFIOAPStoreResult(conflicts: [], matrix: old) }
      let conflicts = validateMasks(mdev, old: old, new: new, detail: detail)
      return VFIOAPStoreResult(conflicts: conflicts, matrix: conflicts.isEmpty ? new : old)
    case .apConfig(let new):
      let conflicts = validateMasks(mdev, old: old, new: new, detail: detail)
      if !conflicts.isEmpty { return VFIOAPStoreResult(conflicts: conflicts, matrix: old) }
      let beyond = overflowCheck(new, detail: detail)
      return VFIOAPStoreResult(conflicts: beyond, matrix: beyond.isEmpty ? new : old)
    }
  }

  /// `ap_matrix_overflow_check`: the ids of `matrix` above their limits, adapters, then domains,
  /// then control domains, each ascending.
  @inlinable
  public func overflowCheck(_ matrix: APMatrix, detail: VFIOAPRuleDetail) -> [Conflict] {
    let limits = state.limits
    var out: [Conflict] = []
    if !matrix.apm.hasBits(above: limits.apmMax) && !matrix.aqm.hasBits(above: limits.aqmMax)
      && !matrix.adm.hasBits(above: limits.admMax)
    {
      return out
    }
    for (mask, kind) in [
      (matrix.apm, VFIOAPIDKind.adapter), (matrix.aqm, .domain), (matrix.adm, .controlDomain),
    ] {
      let max = limits[kind]
      guard mask.hasBits(above: max) else { continue }
      for id in mask where id > max {
        out.append(.beyondMax(kind, id: UInt64(id), max: max))
        if detail == .first { return out }
      }
    }
    return out
  }
}
