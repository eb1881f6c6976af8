import APModel

/// The AP state a plan should reach: the masks and every mdev's assigned matrix (the mdevs not
/// named are removed).
public struct PlanTarget: Hashable, Sendable {
  public var apmask: APMask
  public var aqmask: APMask
  /// UUID (lower case) to assigned matrix.
  public var mdevs: [String: APMatrix]
  /// A name for an mdev's guest, where one is known (sysfs does not have guests' names).
  public var guestNames: [String: String]

  public init(
    apmask: APMask, aqmask: APMask, mdevs: [String: APMatrix], guestNames: [String: String] = [:]
  ) {
    self.apmask = apmask
    self.aqmask = aqmask
    self.mdevs = Dictionary(uniqueKeysWithValues: mdevs.map { ($0.key.lowercased(), $0.value) })
    self.guestNames = guestNames
  }

  /// What a snapshot shows as a target (the state it is in).
  public init(_ s: SysfsSnapshot) {
    self.init(
      apmask: s.apmask, aqmask: s.aqmask,
      mdevs: Dictionary(uniqueKeysWithValues: s.mdevs.map { ($0.uuid, $0.matrix) }))
  }
}

/// One step of a plan: a store to an AP file, or the creation or removal of an mdev.
public enum PlanStep: Hashable, Sendable, CustomStringConvertible {
  case write(SysfsWrite)
  /// `echo UUID > devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create`
  case create(String)
  /// `echo 1 > devices/vfio_ap/matrix/UUID/remove`
  case remove(String)

  public static let createPath = "devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create"

  /// The file written, relative to the sysfs root.
  public var path: String {
    switch self {
    case .write(let w): w.path
    case .create: Self.createPath
    case .remove(let u): "devices/vfio_ap/matrix/\(u)/remove"
    }
  }

  /// The bytes written (with echo's newline).
  public var bytes: [UInt8] {
    switch self {
    case .write(let w): w.bytes
    case .create(let u): Array((u + "\n").utf8)
    case .remove: Array("1\n".utf8)
    }
  }

  /// `echo VALUE > PATH`, relative to the sysfs root.
  public var description: String {
    switch self {
    case .write(let w): w.description
    case .create(let u): "echo \(u) > \(path)"
    case .remove: "echo 1 > \(path)"
    }
  }
}

/// A step with its predicted result.
public struct PlannedStep: Sendable {
  public var step: PlanStep
  /// What the step does (MatrixRules' effect sentences).
  public var effects: [String]
  /// The state after it.
  public var after: SysfsSnapshot
}

/// Why a target cannot be reached: the step that the kernel would refuse, its errno, and the
/// conflicts (MatrixRules' texts).
public struct PlanConflict: Hashable, Sendable, CustomStringConvertible {
  public var step: PlanStep?
  public var errno: Errno?
  public var reasons: [String]

  public var description: String {
    var t = step.map { "\($0)" } ?? "the target"
    if let errno { t += ": \(errno.symbolicName)" }
    return t + ": " + reasons.joined(separator: "; ")
  }
}

/// What a running guest gains and loses over the whole plan.
public struct GuestChange: Hashable, Sendable {
  public var mdev: String
  public var guest: String?
  public var gained: [APQN]
  public var lost: [APQN]
  public var controlGained: [Int]
  public var controlLost: [Int]
}

/// The ordered writes from a snapshot to a target, each predicted by ``MatrixRules`` on the
/// state the steps before it leave.
///
/// The order never passes through a state the kernel refuses: mdevs that go are removed and
/// matrices shrink first (so that what the masks reserve is free), then the masks clear the bits
/// they lose (freeing APQNs for vfio_ap), then set the bits they gain, then mdevs are created and
/// their matrices grow (adapters, domains, control domains, as mdevctl assigns them).
public struct ConfigurationPlan: Sendable {
  public var before: SysfsSnapshot
  public var target: PlanTarget
  public var steps: [PlannedStep]
  /// Empty when the target can be reached.
  public var conflicts: [PlanConflict]

  public var reachable: Bool { conflicts.isEmpty }
  public var after: SysfsSnapshot { steps.last?.after ?? before }

  /// With `apConfig`, an mdev that has `ap_config` (Linux 6.10) gets one write of it for each
  /// change of its matrix (one to shrink, one to grow) instead of one assign or unassign per id.
  public init(from s: SysfsSnapshot, to target: PlanTarget, apConfig: Bool = false) {
    before = s
    self.target = target
    steps = []
    conflicts = []
    var state = s
    func add(_ step: PlanStep) {
      let p = ConfigurationPlan.predict(step, in: state)
      if let errno = p.errno {
        conflicts.append(PlanConflict(step: step, errno: errno, reasons: p.reasons))
        return
      }
      if p.after == state && !p.changes { return }
      steps.append(PlannedStep(step: step, effects: p.effects, after: p.after))
      state = p.after
    }
    // 1. Remove the mdevs that go (a guest must have let go of them first).
    for m in s.mdevs where target.mdevs[m.uuid] == nil {
      if m.inUse {
        conflicts.append(
          PlanConflict(
            step: .remove(m.uuid), errno: nil,
            reasons: [
              "mdev \(m.uuid) is used by its guest\(target.guestNames[m.uuid].map { " \($0)" } ?? ""): remove waits until the guest lets go of it; stop the guest or detach the device first"
            ]))
        continue
      }
      add(.remove(m.uuid))
    }
    // 2. Shrink the matrices that stay.
    for m in s.mdevs {
      guard let want = target.mdevs[m.uuid] else { continue }
      if apConfig && m.hasAPConfig {
        let keep = APMatrix(
          apm: m.matrix.apm.intersection(want.apm), aqm: m.matrix.aqm.intersection(want.aqm),
          adm: m.matrix.adm.intersection(want.adm))
        if keep != m.matrix { add(.write(Self.apConfigWrite(m.uuid, keep))) }
        continue
      }
      for d in m.matrix.adm.subtracting(want.adm) {
        add(.write(SysfsWrite(.mdev(m.uuid, .unassignControlDomain), echo: "0x" + padHex(d, 4))))
      }
      for d in m.matrix.aqm.subtracting(want.aqm) {
        add(.write(SysfsWrite(.mdev(m.uuid, .unassignDomain), echo: "0x" + padHex(d, 4))))
      }
      for a in m.matrix.apm.subtracting(want.apm) {
        add(.write(SysfsWrite(.mdev(m.uuid, .unassignAdapter), echo: "0x" + padHex(a, 2))))
      }
    }
    // 3. Masks: clear what they lose, then set what they gain.
    for (target, current, isAP) in [
      (target.apmask, s.apmask, true), (target.aqmask, s.aqmask, false),
    ] {
      let cleared = current.subtracting(target)
      if !cleared.isEmpty {
        add(.write(SysfsWrite(isAP ? .apmask : .aqmask, echo: Self.edit("-", cleared, hex: !isAP))))
      }
    }
    for (target, current, isAP) in [
      (target.apmask, s.apmask, true), (target.aqmask, s.aqmask, false),
    ] {
      let set = target.subtracting(current)
      if !set.isEmpty {
        add(.write(SysfsWrite(isAP ? .apmask : .aqmask, echo: Self.edit("+", set, hex: !isAP))))
      }
    }
    // 4. Create the new mdevs and grow every matrix.
    for uuid in target.mdevs.keys.sorted() {
      let want = target.mdevs[uuid]!
      let have = state.mdev(uuid)?.matrix
      if have == nil { add(.create(uuid)) }
      guard state.mdev(uuid) != nil else { continue }
      let cur = state.mdev(uuid)!.matrix
      if apConfig && state.mdev(uuid)!.hasAPConfig {
        if cur != want { add(.write(Self.apConfigWrite(uuid, want))) }
        continue
      }
      for a in want.apm.subtracting(cur.apm) {
        add(.write(SysfsWrite(.mdev(uuid, .assignAdapter), echo: "0x" + padHex(a, 2))))
      }
      for d in want.aqm.subtracting(cur.aqm) {
        add(.write(SysfsWrite(.mdev(uuid, .assignDomain), echo: "0x" + padHex(d, 4))))
      }
      for d in want.adm.subtracting(cur.adm) {
        add(.write(SysfsWrite(.mdev(uuid, .assignControlDomain), echo: "0x" + padHex(d, 4))))
      }
    }
  }

  /// One `ap_config` store of a whole matrix: three hex masks.
  public static func apConfigWrite(_ uuid: String, _ c: APMatrix) -> SysfsWrite {
    SysfsWrite(
      .mdev(uuid, .apConfig),
      echo: "\(c.apm.hexString),\(c.aqm.hexString),\(c.adm.hexString)")
  }

  /// `-5,-6` or `+0-4,+0x47`: the kernel's relative mask edit for a set of bits, runs of three
  /// or more as ranges; domains (`hex`) in 0x-hex, as the kernel documentation writes them.
  static func edit(_ sign: String, _ bits: APMask, hex: Bool = false) -> String {
    func n(_ b: Int) -> String { hex ? "0x" + String(b, radix: 16) : String(b) }
    var runs: [(Int, Int)] = []
    for b in bits {
      if let last = runs.last, last.1 == b - 1 { runs[runs.count - 1].1 = b } else { runs.append((b, b)) }
    }
    var terms: [String] = []
    for (a, z) in runs {
      if z - a >= 2 {
        terms.append("\(sign)\(n(a))-\(n(z))")
      } else {
        for b in a...z { terms.append(sign + n(b)) }
      }
    }
    return terms.joined(separator: ",")
  }

  // MARK: - Prediction of one step

  public struct StepPrediction: Sendable {
    public var errno: Errno?
    public var reasons: [String]
    public var effects: [String]
    public var after: SysfsSnapshot
    /// Whether it changes anything.
    public var changes: Bool
  }

  /// What the kernel answers to a step: ``MatrixRules`` for stores, and `create` / `remove`.
  public static func predict(_ step: PlanStep, in s: SysfsSnapshot) -> StepPrediction {
    switch step {
    case .write(let w):
      let p = MatrixRules.predict(w, in: s)
      return StepPrediction(
        errno: p.errno, reasons: p.conflicts.map(\.description), effects: p.effects, after: p.after,
        changes: p.after != s)
    case .create(let u):
      guard s.hasVFIOAP else {
        return StepPrediction(
          errno: .noSuchFileOrDirectory,
          reasons: ["devices/vfio_ap/matrix does not exist (vfio_ap is not loaded)"],
          effects: [], after: s, changes: false)
      }
      if s.mdev(u) != nil {
        return StepPrediction(
          errno: .fileExists, reasons: ["mdev \(u) exists already"], effects: [], after: s, changes: false)
      }
      var after = s
      // Only an mdev shows whether the kernel has ap_config (Linux 6.10): with none yet, a new
      // one is taken to lack it, so that an --ap-config plan assigns it with assign_* (which
      // every kernel has) rather than write an ap_config that 6.1 to 6.9 do not have (ENOENT).
      let apConfig = s.mdevs.first?.hasAPConfig ?? false
      let guest: APMatrix? = s.mdevs.first.map { $0.guestMatrix == nil ? nil : APMatrix() } ?? APMatrix()
      after.mdevs.append(
        SysfsSnapshot.Mdev(
          uuid: u.lowercased(), matrix: APMatrix(), guestMatrix: guest, hasAPConfig: apConfig))
      after.mdevs.sort { $0.uuid < $1.uuid }
      return StepPrediction(
        errno: nil, reasons: [], effects: ["mdev \(u) is created, with an empty matrix"], after: after,
        changes: true)
    case .remove(let u):
      guard let m = s.mdev(u) else {
        return StepPrediction(
          errno: .noSuchFileOrDirectory, reasons: ["devices/vfio_ap/matrix/\(u) does not exist"], effects: [],
          after: s, changes: false)
      }
      var after = s
      after.mdevs.removeAll { $0.uuid == m.uuid }
      for q in m.matrix.apqns where after.queues[q]?.isBoundToVFIOAP == true {
        after.queues[q]!.status = "unassigned"
      }
      var effects = [
        "mdev \(u) is removed; its matrix (\(MatrixRules.matrixSummary(m.matrix))) is free again"
      ]
      let held = m.matrix.apqns.filter { s.queues[$0]?.isBoundToVFIOAP == true }
      if !held.isEmpty { effects.append("its queues are reset (zeroized): \(MatrixRules.apqnList(held))") }
      return StepPrediction(errno: nil, reasons: [], effects: effects, after: after, changes: true)
    }
  }

  // MARK: - Summary

  /// What each guest that uses an mdev now gains and loses from the start to the end.
  public var guestChanges: [GuestChange] {
    var out: [GuestChange] = []
    let end = after
    for m in before.mdevs where m.inUse {
      let old = m.guestMatrix ?? MatrixRules.filter(m.matrix, in: before).guest
      let newM = end.mdev(m.uuid)
      let new = newM.map { $0.guestMatrix ?? MatrixRules.filter($0.matrix, in: end).guest } ?? APMatrix()
      let oldAdm = MatrixRules.filter(m.matrix, in: before).guest.adm
      let newAdm = newM.map { MatrixRules.filter($0.matrix, in: end).guest.adm } ?? APMask()
      let o = Set(old.apqns)
      let n = Set(new.apqns)
      out.append(
        GuestChange(
          mdev: m.uuid, guest: target.guestNames[m.uuid], gained: n.subtracting(o).sorted(),
          lost: o.subtracting(n).sorted(), controlGained: Array(newAdm.subtracting(oldAdm)),
          controlLost: Array(oldAdm.subtracting(newAdm))))
    }
    return out
  }

  /// The queues the plan resets (zeroizes): those that change driver (a mask), those that leave
  /// a running guest, and those of a removed mdev.
  public var resetQueues: [APQN] {
    var out = Set<APQN>()
    var state = before
    for p in steps {
      for (q, queue) in state.queues where p.after.queues[q]?.driver != queue.driver { out.insert(q) }
      if case .remove(let u) = p.step, let m = state.mdev(u) {
        out.formUnion(m.matrix.apqns.filter { state.queues[$0]?.isBoundToVFIOAP == true })
      }
      for m in state.mdevs where m.inUse {
        let old = Set((m.guestMatrix ?? MatrixRules.filter(m.matrix, in: state).guest).apqns)
        let newM = p.after.mdev(m.uuid)
        let new = Set(
          newM.map { ($0.guestMatrix ?? MatrixRules.filter($0.matrix, in: p.after).guest).apqns } ?? [])
        out.formUnion(old.subtracting(new))
      }
      state = p.after
    }
    return out.sorted()
  }

  /// The steps that undo `steps[0..<count]`, last first: what apply runs after a failure.
  public func undo(through count: Int) -> [PlanStep] {
    var out: [PlanStep] = []
    for i in stride(from: count - 1, through: 0, by: -1) {
      let prior = i == 0 ? before : steps[i - 1].after
      out += Self.inverse(steps[i].step, before: prior)
    }
    return out
  }

  /// The steps that take the state after `step` back to `before`.
  public static func inverse(_ step: PlanStep, before: SysfsSnapshot) -> [PlanStep] {
    switch step {
    case .create(let u): return [.remove(u)]
    case .remove(let u):
      guard let m = before.mdev(u) else { return [] }
      return [.create(u)]
        + m.matrix.apm.map { .write(SysfsWrite(.mdev(u, .assignAdapter), echo: "0x" + padHex($0, 2))) }
        + m.matrix.aqm.map { .write(SysfsWrite(.mdev(u, .assignDomain), echo: "0x" + padHex($0, 4))) }
        + m.matrix.adm.map { .write(SysfsWrite(.mdev(u, .assignControlDomain), echo: "0x" + padHex($0, 4))) }
    case .write(let w):
      switch w.target {
      case .apmask: return [.write(SysfsWrite(.apmask, echo: before.apmask.hexString))]
      case .aqmask: return [.write(SysfsWrite(.aqmask, echo: before.aqmask.hexString))]
      case .mdev(let u, let a):
        let back: SysfsWrite.MdevAttribute
        switch a {
        case .assignAdapter: back = .unassignAdapter
        case .unassignAdapter: back = .assignAdapter
        case .assignDomain: back = .unassignDomain
        case .unassignDomain: back = .assignDomain
        case .assignControlDomain: back = .unassignControlDomain
        case .unassignControlDomain: back = .assignControlDomain
        case .apConfig:
          guard let m = before.mdev(u) else { return [] }
          return [.write(apConfigWrite(u, m.matrix))]
        }
        return [.write(SysfsWrite(.mdev(u, back), bytes: w.bytes))]
      }
    }
  }
}

/// What apply compares after each write: the masks, every mdev's assigned matrix, and its
/// `guest_matrix` where the kernel has one (Linux 6.2): what a plan's step can change.
public struct ReadBack: Hashable, Sendable {
  public var apmask: APMask
  public var aqmask: APMask
  public var mdevs: [String: APMatrix]
  /// `guest_matrix` by UUID, for the mdevs that have one.
  public var guestMatrices: [String: APMatrix]

  public init(_ s: SysfsSnapshot) {
    self.init(apmask: s.apmask, aqmask: s.aqmask, mdevs: s.mdevs)
  }

  public init(apmask: APMask, aqmask: APMask, mdevs: [SysfsSnapshot.Mdev]) {
    self.apmask = apmask
    self.aqmask = aqmask
    self.mdevs = Dictionary(uniqueKeysWithValues: mdevs.map { ($0.uuid, $0.matrix) })
    guestMatrices = Dictionary(
      uniqueKeysWithValues: mdevs.compactMap { m in m.guestMatrix.map { (m.uuid, $0) } })
  }

  /// Equal when ``differences(from:)`` finds none: a `guest_matrix` counts only where both
  /// sides have one.
  public static func == (a: ReadBack, b: ReadBack) -> Bool { a.differences(from: b).isEmpty }

  public func hash(into h: inout Hasher) {
    h.combine(apmask)
    h.combine(aqmask)
    h.combine(mdevs)
  }

  /// The differences, one sentence each (`expected` is self). A `guest_matrix` is compared where
  /// both sides have one: a prediction cannot know whether a kernel with no mdev yet has the file.
  public func differences(from actual: ReadBack) -> [String] {
    var out: [String] = []
    if apmask != actual.apmask {
      out.append("apmask reads \(actual.apmask.hexString), not \(apmask.hexString)")
    }
    if aqmask != actual.aqmask {
      out.append("aqmask reads \(actual.aqmask.hexString), not \(aqmask.hexString)")
    }
    for u in Set(mdevs.keys).union(actual.mdevs.keys).sorted() {
      switch (mdevs[u], actual.mdevs[u]) {
      case (nil, _?): out.append("mdev \(u) exists but should not")
      case (_?, nil): out.append("mdev \(u) is missing")
      case (let e?, let a?) where e != a:
        out.append(
          "mdev \(u)'s matrix is \(MatrixRules.matrixSummary(a)), not \(MatrixRules.matrixSummary(e))")
      default: break
      }
      if let e = guestMatrices[u], let a = actual.guestMatrices[u], e != a {
        out.append(
          "mdev \(u)'s guest_matrix is \(MatrixRules.matrixSummary(a)), not \(MatrixRules.matrixSummary(e))")
      }
    }
    return out
  }
}
