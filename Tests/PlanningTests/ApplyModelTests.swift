import APModel
import Foundation
import Machine
import Planning
import TestSupport
import Testing

@testable import HostKernel

/// The whole AP state a user can observe on the emulated host: what a failed apply must leave as
/// it found it. More than apply reads back: the queues' drivers, which guest has which mdev open,
/// and each guest's APCB (what its AP instructions reach).
struct ObservedAPState: Equatable, Sendable {
  var apmask: APMask
  var aqmask: APMask
  var drivers: [APQN: String]
  var mdevs: [String: APMatrix]
  /// vfio_ap's shadow APCB: what `guest_matrix` shows.
  var guestMatrices: [String: APMatrix]
  /// The VM that has each open mdev.
  var openBy: [String: Int]
  var apcbs: [Int: APMatrix]

  init(_ k: HostKernel) {
    apmask = k.apBus.apmask
    aqmask = k.apBus.aqmask
    drivers = Dictionary(
      uniqueKeysWithValues: k.apBus.queues.values.map { ($0.apqn, $0.driver?.name ?? "-") })
    mdevs = k.vfioAP.mdevs.mapValues(\.matrix)
    guestMatrices = k.vfioAP.mdevs.mapValues(\.shadowAPCB)
    openBy = k.vfioAP.mdevs.compactMapValues { $0.kvm?.id }
    apcbs = k.kvm.vms.mapValues(\.apcb)
  }

  static func of(_ host: EmulatedHost) -> ObservedAPState { host.withKernel { ObservedAPState($0) } }

  /// The fields that differ, for a failure's message.
  func differences(from o: ObservedAPState) -> [String] {
    var out: [String] = []
    if apmask != o.apmask { out.append("apmask \(o.apmask) not \(apmask)") }
    if aqmask != o.aqmask { out.append("aqmask \(o.aqmask) not \(aqmask)") }
    if drivers != o.drivers {
      let changed = Set(drivers.keys).union(o.drivers.keys).filter { drivers[$0] != o.drivers[$0] }.sorted()
      out.append("drivers of \(MatrixRules.apqnList(changed))")
    }
    if mdevs != o.mdevs { out.append("mdevs \(o.mdevs) not \(mdevs)") }
    if guestMatrices != o.guestMatrices {
      out.append("guest matrices \(o.guestMatrices) not \(guestMatrices)")
    }
    if openBy != o.openBy { out.append("open mdevs \(o.openBy) not \(openBy)") }
    if apcbs != o.apcbs { out.append("APCBs \(o.apcbs) not \(apcbs)") }
    return out
  }
}

/// A seeded model-based run of apply against the emulated kernel in this process: for random
/// current states (masks, mdevs and their matrices made by real sysfs writes, some mdevs open by a
/// KVM guest) and random targets, the plan's predictions are checked against what the kernel does.
///
/// Every case checks:
/// - (a) a reachable plan, applied, reaches exactly the target (masks, every mdev's matrix, read
///   back), each write succeeds as predicted and leaves the state predicted after it (masks,
///   matrices, guest_matrix, queue drivers); each guest's APCB gains and loses what the plan's
///   guest changes say;
/// - (b) for every step k: when write k fails (EIO without being made; or refused by the kernel
///   itself because another writer took what it needs just before; or made, but another writer's
///   mdev shows up in its read-back), apply undoes what it made and the host's whole observable
///   state (``ObservedAPState``) is as before;
/// - (c) an unreachable plan writes nothing.
///
/// `APVIRT_APPLY_SEEDS=N` runs seeds 1...N (default 40 under the newest kernel, a fifth of them
/// under each older profile); `APVIRT_APPLY_SEED=S` replays one seed.
@Suite("apply: randomized model-based run against the emulated kernel")
struct ApplyModelTests {
  static let pool = (1...4).map { String(format: "%08x-aaaa-4bbb-8ccc-%012x", $0 * 0x1111_1111, $0) }
  static let maxID = 7
  static let definition = MachineDefinition(
    name: "apply-model", na: maxID, nd: maxID,
    adapters: (0...5).map { .init(apid: $0, mode: .cca, queueDepth: 4) },
    usageDomains: APMask(0...5), controlDomains: APMask(0...6))

  struct Case: Sendable, CustomStringConvertible {
    var seed: UInt64
    var profile: KernelProfile
    var description: String { "seed \(seed), Linux \(profile)" }
  }

  static let seeds: [UInt64] = {
    let env = ProcessInfo.processInfo.environment
    if let s = env["APVIRT_APPLY_SEED"].flatMap(UInt64.init) { return [s] }
    let n = env["APVIRT_APPLY_SEEDS"].flatMap(Int.init).flatMap { $0 > 0 ? $0 : nil } ?? 40
    return (1...n).map(UInt64.init)
  }()

  static let cases: [Case] =
    seeds.map { Case(seed: $0, profile: .newest) }
    + KernelProfile.known.filter { $0 != .newest }.flatMap { p in
      seeds.prefix(max(1, seeds.count / 5)).map { Case(seed: $0, profile: p) }
    }

  // MARK: - The random current state

  /// A host in the state a seed makes: the same writes, and the same guests, every time.
  struct World {
    var host: EmulatedHost
    var sysfs: EmulatedSysfs
    /// The VM id of each mdev a guest has open.
    var guests: [String: Int]
  }

  static func randomMask(_ rng: inout SplitMix64, clearing p: Double) -> APMask {
    var m = APMask.all()
    for b in 0...maxID + 1 where Double.random(in: 0..<1, using: &rng) < p { m.remove(b) }
    return m
  }

  static func randomSubset(_ rng: inout SplitMix64, _ p: Double, _ ids: ClosedRange<Int> = 0...maxID)
    -> [Int]
  {
    ids.filter { _ in Double.random(in: 0..<1, using: &rng) < p }
  }

  static func build(_ c: Case) -> World {
    var rng = SplitMix64(seed: c.seed)
    let k = HostKernel(definition: definition, profile: c.profile)
    k.recordsUEvents = false
    let host = EmulatedHost(kernel: k)
    let sysfs = EmulatedSysfs(host: host)
    func store(_ path: String, _ text: String) { _ = sysfs.write(path, Array((text + "\n").utf8)) }
    store("bus/ap/apmask", randomMask(&rng, clearing: 0.5).hexString)
    store("bus/ap/aqmask", randomMask(&rng, clearing: 0.5).hexString)
    for u in pool where Bool.random(using: &rng) {
      store(PlanStep.createPath, u)
      let dir = "devices/vfio_ap/matrix/\(u)/"
      // Real writes: some are refused (an APQN the host reserves or another mdev holds).
      for a in randomSubset(&rng, 0.35) { store(dir + "assign_adapter", "\(a)") }
      for d in randomSubset(&rng, 0.35) { store(dir + "assign_domain", "\(d)") }
      for d in randomSubset(&rng, 0.25) { store(dir + "assign_control_domain", "\(d)") }
    }
    // Sometimes a mask changes afterwards (refused when it would take an mdev's APQN).
    if Int.random(in: 0..<3, using: &rng) == 0 {
      store("bus/ap/apmask", randomMask(&rng, clearing: 0.5).hexString)
    }
    var guests: [String: Int] = [:]
    let open = pool.filter { _ in Double.random(in: 0..<1, using: &rng) < 0.5 }
    for u in open {
      let id: Int? = host.withKernel { k in
        guard let m = k.vfioAP.mdev(u) else { return nil }
        let vm = k.kvm.createVM(name: u)
        do {
          try k.vfioAP.openDevice(m, kvm: vm)
          return vm.id
        } catch {
          k.kvm.destroyVM(vm)
          return nil
        }
      }
      if let id { guests[u] = id }
    }
    return World(host: host, sysfs: sysfs, guests: guests)
  }

  // MARK: - The random target

  /// Mostly a target built to be reachable (each adapter in at most one mdev, the masks giving
  /// up what the mdevs use), sometimes anything (shared APQNs, reserved ones, ids beyond the
  /// machine's 7). An mdev a guest has open is never removed: its `remove` would wait for the
  /// guest, and sysfs shows an open mdev only through queues `in use`.
  static func target(_ c: Case, open: Set<String>) -> PlanTarget {
    var rng = SplitMix64(seed: c.seed &* 0x5851_F42D_4C95_7F2D &+ 1)
    let careful = Int.random(in: 0..<10, using: &rng) < 7
    var mdevs: [String: APMatrix] = [:]
    for u in pool where open.contains(u) || Double.random(in: 0..<1, using: &rng) < 0.6 {
      mdevs[u] = APMatrix()
    }
    let uuids = mdevs.keys.sorted()
    for a in 0...maxID {
      if careful {
        if let u = uuids.randomElement(using: &rng), Bool.random(using: &rng) { mdevs[u]!.apm.insert(a) }
      } else {
        for u in uuids where Double.random(in: 0..<1, using: &rng) < 0.3 { mdevs[u]!.apm.insert(a) }
      }
    }
    for u in uuids {
      mdevs[u]!.aqm = APMask(randomSubset(&rng, 0.4))
      mdevs[u]!.adm = APMask(randomSubset(&rng, 0.3))
      if !careful && Int.random(in: 0..<4, using: &rng) == 0 { mdevs[u]!.aqm.insert(maxID + 1) }
    }
    var apmask = randomMask(&rng, clearing: 0.4)
    let aqmask = randomMask(&rng, clearing: 0.4)
    if careful {
      for m in mdevs.values { apmask = apmask.subtracting(m.apm) }
    }
    return PlanTarget(apmask: apmask, aqmask: aqmask, mdevs: mdevs)
  }

  // MARK: - The run

  /// What the cases exercise, counted without applying anything.
  struct Coverage: CustomStringConvertible {
    var cases = 0
    var reachable = 0
    var unreachable = 0
    var steps = 0
    var apConfigWrites = 0
    var conflictsMade = 0
    var guests = 0
    var guestsThatChange = 0

    var description: String {
      "\(cases) cases: \(reachable) reachable (\(steps) steps, \(apConfigWrites) ap_config), \(unreachable) unreachable; "
        + "\(conflictsMade) steps another writer can make the kernel refuse; \(guests) guests, \(guestsThatChange) of them gain or lose"
    }
  }

  /// The generators reach every kind of case the run checks: reachable and unreachable plans,
  /// ap_config writes, steps another writer can make the kernel refuse, guests whose APCB changes.
  @Test func theCasesCoverEveryKind() throws {
    var c = Coverage()
    for k in Self.cases {
      let world = Self.build(k)
      let s0 = try SysfsSnapshot.read(from: world.sysfs)
      var rng = SplitMix64(seed: k.seed ^ 0xA5A5)
      let plan = ConfigurationPlan(
        from: s0, to: Self.target(k, open: Set(world.guests.keys)), apConfig: Bool.random(using: &rng))
      c.cases += 1
      c.guests += world.guests.count
      guard plan.reachable else {
        c.unreachable += 1
        continue
      }
      c.reachable += 1
      c.steps += plan.steps.count
      c.apConfigWrites += plan.steps.filter { $0.step.path.hasSuffix("/ap_config") }.count
      for (i, p) in plan.steps.enumerated() {
        if Self.conflict(for: p.step, in: i == 0 ? plan.before : plan.steps[i - 1].after) != nil {
          c.conflictsMade += 1
        }
      }
      c.guestsThatChange += plan.guestChanges.filter { !$0.gained.isEmpty || !$0.lost.isEmpty }.count
    }
    print("apply model: \(c)")
    #expect(c.reachable >= c.cases / 4, "\(c)")
    #expect(c.unreachable >= c.cases / 10, "\(c)")
    #expect(c.apConfigWrites > 0 && c.conflictsMade > 0 && c.guestsThatChange > 0, "\(c)")
  }

  @Test(arguments: ApplyModelTests.cases)
  func applyDoesWhatThePlanSaysOrNothing(_ c: Case) throws {
    let world = Self.build(c)
    let s0 = try SysfsSnapshot.read(from: world.sysfs)
    let target = Self.target(c, open: Set(world.guests.keys))
    var rng = SplitMix64(seed: c.seed ^ 0xA5A5)
    let apConfig = Bool.random(using: &rng)
    let plan = ConfigurationPlan(from: s0, to: target, apConfig: apConfig)
    let obs0 = ObservedAPState.of(world.host)

    guard plan.reachable else {
      // (c) Refused: nothing is written.
      let recorder = RecordingHost(world.sysfs)
      let outcome = try ConfigurationApply.run(plan, on: recorder)
      #expect(outcome.refused && !outcome.applied, "\(c)")
      #expect(recorder.records.isEmpty, "\(c): an unreachable plan wrote \(recorder.records.map(\.path))")
      #expect(ObservedAPState.of(world.host) == obs0, "\(c)")
      return
    }

    // The failures first, each on the host the one before left (restored, as checked), then the
    // apply that goes through.
    var w = world
    for k in stride(from: 1, through: plan.steps.count, by: 1) {
      try checkInjectedFailure(c, plan, w, k)
      w = try restoredOrRebuilt(c, w, s0, obs0)
      try checkRefusalByTheKernel(c, plan, w, k)
      w = try restoredOrRebuilt(c, w, s0, obs0)
      try checkReadBackMismatch(c, plan, w, k)
      w = try restoredOrRebuilt(c, w, s0, obs0)
    }
    try checkApply(c, w, plan, obs0)
  }

  /// The host again when a failed apply left it as it was (the checks say whether it did), else
  /// a fresh one in the case's state, so that one failure does not spoil the checks after it.
  func restoredOrRebuilt(_ c: Case, _ w: World, _ s0: SysfsSnapshot, _ obs0: ObservedAPState) throws -> World
  {
    if ObservedAPState.of(w.host) == obs0 { return w }
    let fresh = Self.build(c)
    #expect(try SysfsSnapshot.read(from: fresh.sysfs) == s0, "\(c): the same seed made another state")
    return fresh
  }

  /// (a) Every write does what the plan predicted, the host reaches the target, and each guest
  /// gains and loses what the plan says.
  func checkApply(_ c: Case, _ world: World, _ plan: ConfigurationPlan, _ obs0: ObservedAPState) throws {
    let recorder = RecordingHost(world.sysfs, snapshots: true)
    let outcome = try ConfigurationApply.run(plan, on: recorder)
    #expect(outcome.applied, "\(c): \(outcome.failure.map { "\($0.step): \($0.reasons)" } ?? "")")
    #expect(recorder.records.count == plan.steps.count, "\(c)")
    for (i, r) in recorder.records.enumerated() where i < plan.steps.count {
      let p = plan.steps[i]
      #expect(r.errno == nil, "\(c) step \(i + 1) \(p.step): predicted success, the kernel: \(r.errno!)")
      guard let actual = r.after else { continue }
      for d in Self.compare(p.after, actual) { Issue.record("\(c) after step \(i + 1) \(p.step): \(d)") }
    }
    let end = try ReadBack.read(from: world.sysfs)
    #expect(end.apmask == plan.target.apmask, "\(c)")
    #expect(end.aqmask == plan.target.aqmask, "\(c)")
    #expect(end.mdevs == plan.target.mdevs, "\(c)")

    // The guests' APCBs: what the plan says each gains and loses.
    let obs1 = ObservedAPState.of(world.host)
    let changes = Dictionary(uniqueKeysWithValues: plan.guestChanges.map { ($0.mdev, $0) })
    for (u, vm) in world.guests {
      let old = obs0.apcbs[vm] ?? APMatrix()
      let new = obs1.apcbs[vm] ?? APMatrix()
      guard let g = changes[u] else {
        // sysfs shows a guest only through its queues `in use`: one with none is not seen.
        #expect(old.apqns.isEmpty, "\(c): the plan lists no change for the guest of \(u), APCB \(old)")
        continue
      }
      let o = Set(old.apqns)
      let n = Set(new.apqns)
      #expect(g.gained == n.subtracting(o).sorted(), "\(c): guest of \(u) gains")
      #expect(g.lost == o.subtracting(n).sorted(), "\(c): guest of \(u) loses")
      #expect(g.controlGained == Array(new.adm.subtracting(old.adm)), "\(c): guest of \(u) control gains")
      #expect(g.controlLost == Array(old.adm.subtracting(new.adm)), "\(c): guest of \(u) control losses")
    }
    for u in changes.keys {
      #expect(world.guests[u] != nil, "\(c): a guest change for \(u), which no guest has")
    }
  }

  /// What the kernel shows that the prediction got wrong: masks, matrices, guest_matrix, drivers.
  static func compare(_ predicted: SysfsSnapshot, _ actual: SysfsSnapshot) -> [String] {
    var out: [String] = []
    if predicted.apmask != actual.apmask {
      out.append("apmask \(actual.apmask), predicted \(predicted.apmask)")
    }
    if predicted.aqmask != actual.aqmask {
      out.append("aqmask \(actual.aqmask), predicted \(predicted.aqmask)")
    }
    for u in Set(predicted.mdevs.map(\.uuid)).union(actual.mdevs.map(\.uuid)).sorted() {
      let p = predicted.mdev(u)
      let a = actual.mdev(u)
      if p?.matrix != a?.matrix { out.append("mdev \(u) matrix \(String(describing: a?.matrix))") }
      if let pg = p?.guestMatrix, let ag = a?.guestMatrix, pg != ag {
        out.append(
          "mdev \(u) guest_matrix \(MatrixRules.matrixSummary(ag)), predicted \(MatrixRules.matrixSummary(pg))"
        )
      }
    }
    for q in Set(predicted.queues.keys).union(actual.queues.keys).sorted()
    where predicted.queues[q]?.driver != actual.queues[q]?.driver {
      out.append(
        "\(q) driver \(actual.queues[q]?.driver ?? "none"), predicted \(predicted.queues[q]?.driver ?? "none")"
      )
    }
    return out
  }

  /// (b) Write k fails with EIO and is not made: everything before it is undone.
  func checkInjectedFailure(_ c: Case, _ plan: ConfigurationPlan, _ w: World, _ k: Int) throws {
    let before = ObservedAPState.of(w.host)
    let outcome = try ConfigurationApply.run(plan, on: FailingWrite(w.sysfs, failing: k))
    #expect(outcome.failure?.index == k - 1, "\(c) EIO at \(k)")
    #expect(outcome.failure?.errno == .ioError, "\(c) EIO at \(k)")
    #expect(outcome.written == k - 1, "\(c) EIO at \(k)")
    expectRestored(c, "EIO at write \(k)", outcome, before, ObservedAPState.of(w.host))
  }

  func expectRestored(
    _ c: Case, _ what: String, _ outcome: ConfigurationApply.Outcome, _ before: ObservedAPState,
    _ after: ObservedAPState
  ) {
    #expect(outcome.undoErrors.isEmpty, "\(c) \(what): undo failed: \(outcome.undoErrors)")
    let d = before.differences(from: after)
    #expect(d.isEmpty, "\(c) \(what): the host is not as before: \(d)")
  }

  /// Another writer's writes that make the kernel refuse `step` in state `s`, and those that take
  /// them back; nil when there is no such simple conflict (an unassign, a control domain, a
  /// remove, a mask that only frees).
  static func conflict(for step: PlanStep, in s: SysfsSnapshot) -> (
    make: [(String, String)], undo: [(String, String)]
  )? {
    let other = "0ddba11e-0000-4000-8000-000000000000"
    let dir = "devices/vfio_ap/matrix/\(other)/"
    func holding(_ q: APQN) -> ([(String, String)], [(String, String)]) {
      (
        [
          (PlanStep.createPath, other), (dir + "assign_adapter", "\(q.apid)"),
          (dir + "assign_domain", "\(q.apqi)"),
        ], [(dir + "remove", "1")]
      )
    }
    func free(_ q: APQN) -> Bool { s.holder(of: q) == nil && !s.ownedByDefaultDriver(q) }
    switch step {
    case .create(let u):
      return ([(PlanStep.createPath, u)], [("devices/vfio_ap/matrix/\(u)/remove", "1")])
    case .remove: return nil
    case .write(let w):
      switch w.target {
      case .apmask, .aqmask:
        let after = ConfigurationPlan.predict(step, in: s).after
        let gained = (0...maxID).flatMap { a in (0...maxID).map { APQN(a, $0) } }
          .filter { after.isReservedByMasks($0) && !s.isReservedByMasks($0) && s.holder(of: $0) == nil }
        return gained.first.map(holding)
      case .mdev(let u, let a):
        guard let m = s.mdev(u) else { return nil }
        let id = Int(w.value.hasPrefix("0x") ? String(w.value.dropFirst(2)) : w.value, radix: 16)
        var wanted: [APQN] = []
        switch a {
        case .assignAdapter: wanted = id.map { i in m.matrix.aqm.map { APQN(i, $0) } } ?? []
        case .assignDomain: wanted = id.map { i in m.matrix.apm.map { APQN($0, i) } } ?? []
        case .apConfig:
          let after = ConfigurationPlan.predict(step, in: s).after
          wanted = (after.mdev(u)?.matrix.apqns ?? []).filter { !m.matrix.contains($0) }
        default: return nil
        }
        return wanted.first(where: free).map(holding)
      }
    }
  }

  /// (b) Just before write k another writer takes what it needs, so the kernel refuses it (and
  /// the plan, asked again on that state, predicts the same errno); the other writer lets go
  /// after the refusal, and apply's undo leaves the host as before.
  func checkRefusalByTheKernel(_ c: Case, _ plan: ConfigurationPlan, _ w: World, _ k: Int) throws {
    let state = k == 1 ? plan.before : plan.steps[k - 2].after
    let step = plan.steps[k - 1].step
    guard let conflict = Self.conflict(for: step, in: state) else { return }
    let before = ObservedAPState.of(w.host)
    let recorder = RecordingHost(w.sysfs)
    var made = false
    var predicted: Errno?
    func run(_ writes: [(String, String)]) -> Bool {
      writes.allSatisfy { w.sysfs.write($0.0, Array(($0.1 + "\n").utf8)) == nil }
    }
    recorder.afterWrite = { n in if n == k && made { _ = run(conflict.undo) } }
    let outcome = try ConfigurationApply.run(plan, on: recorder) { n in
      guard n == k else { return }
      made = run(conflict.make)
      if !made {
        _ = run(conflict.undo)
        return
      }
      predicted = try? ConfigurationPlan.predict(step, in: SysfsSnapshot.read(from: w.sysfs)).errno
    }
    guard made else {
      // The other writer could not take it: apply went on as planned.
      #expect(outcome.applied, "\(c): \(outcome.failure.map { "\($0.step): \($0.reasons)" } ?? "")")
      return
    }
    let actual = recorder.records.count >= k ? recorder.records[k - 1].errno : nil
    #expect(actual != nil, "\(c): \(step) after another writer's \(conflict.make): the kernel accepted it")
    #expect(
      actual == predicted,
      "\(c): \(step): the kernel says \(actual?.symbolicName ?? "success"), the rules \(predicted?.symbolicName ?? "success")"
    )
    #expect(outcome.failure?.index == k - 1, "\(c) refused at \(k)")
    expectRestored(c, "refused at write \(k)", outcome, before, ObservedAPState.of(w.host))
  }

  /// (b) Write k is made, but before its read-back another writer's mdev shows up: apply sees a
  /// state the rules did not predict and undoes everything; once that mdev is gone again the
  /// host is as before.
  func checkReadBackMismatch(_ c: Case, _ plan: ConfigurationPlan, _ w: World, _ k: Int) throws {
    let other = "5eedf00d-0000-4000-8000-000000000000"
    let before = ObservedAPState.of(w.host)
    let recorder = RecordingHost(w.sysfs)
    recorder.afterWrite = { n in
      if n == k { _ = w.sysfs.write(PlanStep.createPath, Array((other + "\n").utf8)) }
    }
    let outcome = try ConfigurationApply.run(plan, on: recorder)
    #expect(outcome.failure?.index == k - 1, "\(c) read-back at \(k)")
    #expect(outcome.failure?.errno == nil, "\(c) read-back at \(k)")
    #expect(
      outcome.failure?.reasons.contains("mdev \(other) exists but should not") == true,
      "\(c) read-back at \(k): \(outcome.failure?.reasons ?? [])")
    #expect(outcome.written == k, "\(c) read-back at \(k)")
    #expect(outcome.differences == ["mdev \(other) exists but should not"], "\(c) read-back at \(k)")
    _ = w.sysfs.write("devices/vfio_ap/matrix/\(other)/remove", Array("1\n".utf8))
    expectRestored(c, "read-back mismatch at write \(k)", outcome, before, ObservedAPState.of(w.host))
  }
}
