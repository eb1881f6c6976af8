import APModel

/// A sysfs snapshot as the shared rules (``VFIOAPRules``) see it. An mdev is named by its index
/// in ``SysfsSnapshot/mdevs`` (UUID order, which is also the order the planner reports
/// conflicts in: sysfs does not show the kernel's `mdev_list` order).
struct SnapshotRulesState: VFIOAPRulesState {
  typealias Mdev = Int

  let snapshot: SysfsSnapshot
  /// The index of the mdev holding each APQN (by raw value, -1 for none), built when there are
  /// enough mdevs that a walk of them per APQN would cost more than the index: a mask store's
  /// check looks up to 65,536 APQNs.
  let owners: [Int32]?

  init(_ snapshot: SysfsSnapshot, indexOwners: Bool = true) {
    self.snapshot = snapshot
    if indexOwners && snapshot.mdevs.count > 4 {
      var owners = [Int32](repeating: -1, count: 65536)
      for (i, m) in snapshot.mdevs.enumerated() {
        for apid in m.matrix.apm { for apqi in m.matrix.aqm { owners[APQN(apid, apqi).rawValue] = Int32(i) } }
      }
      self.owners = owners
    } else {
      owners = nil
    }
  }

  var hasDriverOverrides: Bool { snapshot.hasDriverOverrides }

  /// A queue shown with a `driver_override` is from a kernel that has them (Linux 6.19); on an
  /// older one no queue has one, and the rule is the masks'.
  var features: VFIOAPRuleFeatures { .driverOverride }
  var apmask: APMask { snapshot.apmask }
  var aqmask: APMask { snapshot.aqmask }
  var limits: VFIOAPLimits {
    VFIOAPLimits(apmMax: snapshot.apmMax, aqmMax: snapshot.aqmMax, admMax: snapshot.admMax)
  }

  /// The bound driver is a default one when it is not vfio_ap (sysfs names no flag).
  func driverOverride(of apqn: APQN) -> APQueueOverride? {
    guard let q = snapshot.queues[apqn], let name = q.driverOverride else { return nil }
    return APQueueOverride(
      name: name, boundDriver: q.driver,
      boundDriverIsDefault: q.driver.map { $0 != SysfsSnapshot.vfioAPDriver } ?? false)
  }

  func mdev(holding apqn: APQN) -> Int? {
    guard let owners else { return snapshot.mdevs.firstIndex { $0.matrix.contains(apqn) } }
    let i = owners[apqn.rawValue]
    return i < 0 ? nil : Int(i)
  }
  func matrix(of mdev: Int) -> APMatrix { snapshot.mdevs[mdev].matrix }
  func precedes(_ a: Int, _ b: Int) -> Bool { a < b }
}

extension SysfsSnapshot {
  /// The shared rules over this snapshot.
  var rules: VFIOAPRules<SnapshotRulesState> { VFIOAPRules(SnapshotRulesState(self)) }
}

extension RuleConflict.IDKind {
  init(_ kind: VFIOAPIDKind) {
    switch kind {
    case .adapter: self = .adapter
    case .domain: self = .domain
    case .controlDomain: self = .controlDomain
    }
  }

  var rulesKind: VFIOAPIDKind {
    switch self {
    case .adapter: .adapter
    case .domain: .domain
    case .controlDomain: .controlDomain
    }
  }
}

extension RuleConflict {
  /// The planner's facts for the rules' conflicts: a sharing conflict becomes one per APQN,
  /// `heldByMdev` for an mdev store, `takenFromMdev` for a mask store (`taken`).
  static func from(_ conflicts: [VFIOAPConflict<Int>], in s: SysfsSnapshot, taken: Bool = false)
    -> [RuleConflict]
  {
    var out: [RuleConflict] = []
    for c in conflicts {
      switch c {
      case .beyondMax(let kind, let id, let max):
        out.append(.beyondMax(kind: IDKind(kind), id: id, max: max))
      case .ownedByDefaultDriver(let q, let o):
        out.append(.reservedForHost(q, driverOverride: o?.name, driver: o?.boundDriver))
      case .sharedWith(let i, let apm, let aqm):
        let uuid = s.mdevs[i].uuid
        for apid in apm {
          for apqi in aqm {
            let q = APQN(apid, apqi)
            let inUse = s.queues[q]?.inUse == true
            out.append(
              taken ? .takenFromMdev(q, uuid: uuid, inUse: inUse) : .heldByMdev(q, uuid: uuid, inUse: inUse))
          }
        }
      }
    }
    return out
  }
}
