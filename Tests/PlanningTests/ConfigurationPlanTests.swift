import APModel
import TestSupport
import Testing

@testable import Planning

/// The planner's order on snapshots, each step predicted by MatrixRules.
struct ConfigurationPlanTests {
  static let u1 = "62177883-f1bb-47f0-914d-32a22e3a8804"
  static let u2 = "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3"

  /// Adapters 0-7 x domains 0-15, all bound as the masks say.
  static func host(apmask: APMask = .all(), aqmask: APMask = .all(), mdevs: [SysfsSnapshot.Mdev] = [])
    -> SysfsSnapshot
  {
    var queues: [APQN: SysfsSnapshot.Queue] = [:]
    var cards: [APID: SysfsSnapshot.Card] = [:]
    for a in 0..<8 {
      cards[a] = SysfsSnapshot.Card(apid: a, type: "CEX8C", driver: "cex4card")
      for d in 0..<16 {
        let q = APQN(a, d)
        let host = apmask.contains(a) && aqmask.contains(d)
        queues[q] = SysfsSnapshot.Queue(
          apqn: q, driver: host ? "cex4queue" : "vfio_ap",
          status: host ? nil : (mdevs.contains { $0.matrix.contains(q) } ? "assigned" : "unassigned"))
      }
    }
    let all = APMatrix(apm: APMask(0..<8), aqm: APMask(0..<16), adm: APMask(0..<16))
    return SysfsSnapshot(
      apmask: apmask, aqmask: aqmask, qci: all, cards: cards, queues: queues, mdevs: mdevs)
  }

  static func m(_ a: [Int], _ d: [Int], _ c: [Int] = []) -> APMatrix {
    APMatrix(apm: APMask(a), aqm: APMask(d), adm: APMask(c))
  }

  @Test func freesTheMasksBeforeAssigning() {
    let s = Self.host()
    let t = PlanTarget(
      apmask: APMask.all().subtracting(APMask([5])), aqmask: APMask.all().subtracting(APMask([4])),
      mdevs: [Self.u1: Self.m([5], [4], [4])])
    let p = ConfigurationPlan(from: s, to: t)
    #expect(p.reachable)
    #expect(
      p.steps.map(\.step.description) == [
        "echo -5 > bus/ap/apmask", "echo -0x4 > bus/ap/aqmask",
        "echo \(Self.u1) > \(PlanStep.createPath)",
        "echo 0x05 > devices/vfio_ap/matrix/\(Self.u1)/assign_adapter",
        "echo 0x0004 > devices/vfio_ap/matrix/\(Self.u1)/assign_domain",
        "echo 0x0004 > devices/vfio_ap/matrix/\(Self.u1)/assign_control_domain",
      ])
    #expect(PlanTarget(p.after).mdevs == t.mdevs)
    #expect(p.after.apmask == t.apmask && p.after.aqmask == t.aqmask)
  }

  @Test func unassignsAndRemovesBeforeReReserving() {
    let free = APMask.all().subtracting(APMask([5, 6]))
    let s = Self.host(
      apmask: free, aqmask: .all(),
      mdevs: [
        SysfsSnapshot.Mdev(uuid: Self.u1, matrix: Self.m([5, 6], [1, 2])),
        SysfsSnapshot.Mdev(uuid: Self.u2, matrix: Self.m([5], [3])),
      ])
    // Adapter 6 goes back to the host; u2 goes; u1 keeps 05.0001 05.0002.
    let t = PlanTarget(
      apmask: APMask.all().subtracting(APMask([5])), aqmask: .all(), mdevs: [Self.u1: Self.m([5], [1, 2])])
    let p = ConfigurationPlan(from: s, to: t)
    #expect(p.reachable, "\(p.conflicts)")
    #expect(
      p.steps.map(\.step.description) == [
        "echo 1 > devices/vfio_ap/matrix/\(Self.u2)/remove",
        "echo 0x06 > devices/vfio_ap/matrix/\(Self.u1)/unassign_adapter",
        "echo +6 > bus/ap/apmask",
      ])
    #expect(PlanTarget(p.after).mdevs == t.mdevs && p.after.apmask == t.apmask)
    // The undo goes back the same way, last first, and reaches the old state.
    var state = p.after
    for step in p.undo(through: p.steps.count) {
      let r = ConfigurationPlan.predict(step, in: state)
      #expect(r.errno == nil, "\(step): \(r.reasons)")
      state = r.after
    }
    #expect(ReadBack(state) == ReadBack(s))
  }

  @Test func movesAnAPQNFromOneMdevToAnother() {
    let free = APMask.all().subtracting(APMask([5]))
    let s = Self.host(
      apmask: free, aqmask: .all(), mdevs: [SysfsSnapshot.Mdev(uuid: Self.u1, matrix: Self.m([5], [1, 2]))])
    let t = PlanTarget(
      apmask: free, aqmask: .all(), mdevs: [Self.u1: Self.m([5], [1]), Self.u2: Self.m([5], [2])])
    let p = ConfigurationPlan(from: s, to: t)
    #expect(p.reachable, "\(p.conflicts)")
    #expect(
      p.steps.first?.step.description == "echo 0x0002 > devices/vfio_ap/matrix/\(Self.u1)/unassign_domain")
    #expect(PlanTarget(p.after).mdevs == t.mdevs)
  }

  @Test func apConfigGivesOneWritePerChange() {
    let free = APMask.all().subtracting(APMask([5]))
    let s = Self.host(
      apmask: free, aqmask: .all(), mdevs: [SysfsSnapshot.Mdev(uuid: Self.u1, matrix: Self.m([5], [1, 2]))])
    let t = PlanTarget(apmask: free, aqmask: .all(), mdevs: [Self.u1: Self.m([5], [2, 3], [3])])
    let p = ConfigurationPlan(from: s, to: t, apConfig: true)
    #expect(p.steps.count == 2)
    #expect(p.steps.allSatisfy { $0.step.path.hasSuffix("/ap_config") })
    #expect(PlanTarget(p.after).mdevs == t.mdevs)
  }

  @Test func refusesWhatTheKernelWouldRefuseWithTheReasons() {
    // u1 cannot go (its guest uses it), so the mask cannot take 05.0004 back (EBUSY) and u2
    // cannot have it (EADDRINUSE): each conflict with MatrixRules' reason.
    let s = Self.host(
      apmask: APMask.all().subtracting(APMask([5])), aqmask: .all(),
      mdevs: [SysfsSnapshot.Mdev(uuid: Self.u1, matrix: Self.m([5], [4]), inUse: true)])
    let t = PlanTarget(apmask: .all(), aqmask: .all(), mdevs: [Self.u2: Self.m([5], [4])])
    let p = ConfigurationPlan(from: s, to: t)
    #expect(!p.reachable)
    #expect(
      p.conflicts.contains { $0.reasons.contains { $0.contains("mdev \(Self.u1) is used by its guest") } })
    #expect(
      p.conflicts.contains {
        $0.errno == .resourceBusy
          && $0.reasons.contains("05.0004 would be reserved for the host but is held by mdev \(Self.u1)")
      })
    #expect(
      p.conflicts.contains {
        $0.errno == .addressInUse && $0.reasons.contains("05.0004 is held by mdev \(Self.u1)")
      })
    // Ids beyond the host's limits: ENODEV with MatrixRules' text.
    let small = Self.host(apmask: .all().subtracting(APMask([5])), aqmask: .all())
    var limited = small
    limited.maxDomainID = 15
    let q = ConfigurationPlan(
      from: limited,
      to: PlanTarget(apmask: small.apmask, aqmask: .all(), mdevs: [Self.u1: Self.m([5], [0x20])]))
    #expect(q.conflicts.map(\.errno) == [.noSuchDevice])
  }

  @Test func reportsGuestChangesAndResets() {
    let free = APMask.all().subtracting(APMask([5]))
    let s = Self.host(
      apmask: free, aqmask: .all(),
      mdevs: [SysfsSnapshot.Mdev(uuid: Self.u1, matrix: Self.m([5], [1, 2]), inUse: true)])
    let t = PlanTarget(
      apmask: free, aqmask: .all(), mdevs: [Self.u1: Self.m([5], [2, 3])], guestNames: [Self.u1: "g1"])
    let p = ConfigurationPlan(from: s, to: t)
    #expect(p.guestChanges.count == 1)
    #expect(p.guestChanges[0].guest == "g1")
    #expect(p.guestChanges[0].gained == [APQN(5, 3)])
    #expect(p.guestChanges[0].lost == [APQN(5, 1)])
    #expect(p.resetQueues == [APQN(5, 1)])
  }

  /// Seeded random current states and targets: whenever the plan says it can, replaying its
  /// steps (and its undo) with MatrixRules reaches the target (and the old state).
  @Test func randomStatesAndTargets() {
    var rng = SplitMix64(seed: 13)
    var reachable = 0
    for _ in 0..<300 {
      let s = Self.randomHost(&rng)
      let t0 = Self.randomHost(&rng)
      let t = PlanTarget(t0)
      let p = ConfigurationPlan(from: s, to: t)
      guard p.reachable else { continue }
      reachable += 1
      var state = s
      for step in p.steps {
        let r = ConfigurationPlan.predict(step.step, in: state)
        #expect(r.errno == nil)
        state = r.after
      }
      #expect(ReadBack(state) == ReadBack(t0))
      for step in p.undo(through: p.steps.count) {
        let r = ConfigurationPlan.predict(step, in: state)
        #expect(r.errno == nil, "\(step)")
        state = r.after
      }
      #expect(ReadBack(state) == ReadBack(s))
    }
    #expect(reachable > 100)
  }

  /// A consistent host: random masks over adapters 0-7 and domains 0-15, and up to three mdevs
  /// on disjoint free APQNs.
  static func randomHost(_ rng: inout SplitMix64) -> SysfsSnapshot {
    let apFree = APMask((0..<8).filter { _ in rng.next() % 3 == 0 })
    let aqFree = APMask((0..<16).filter { _ in rng.next() % 3 == 0 })
    let apmask = APMask.all().subtracting(apFree)
    let aqmask = APMask.all().subtracting(aqFree)
    let uuids = [u1, u2, "90c6c135-ad44-41d0-b1b7-bae47de48627"]
    var mdevs: [SysfsSnapshot.Mdev] = []
    var usedAdapters = APMask()
    for u in uuids where rng.next() % 2 == 0 {
      // Each mdev on adapters of its own: all of the cross product stays free.
      let a = APMask(apFree.filter { !usedAdapters.contains($0) && rng.next() % 2 == 0 })
      usedAdapters = usedAdapters.union(a)
      let d = APMask(aqFree.filter { _ in rng.next() % 2 == 0 })
      let c = APMask((0..<16).filter { _ in rng.next() % 4 == 0 })
      mdevs.append(SysfsSnapshot.Mdev(uuid: u, matrix: APMatrix(apm: a, aqm: d, adm: c)))
    }
    return host(apmask: apmask, aqmask: aqmask, mdevs: mdevs)
  }
}
