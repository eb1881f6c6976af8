import APModel
import Testing

/// A host as the rules see it, held in plain values: mdevs by name in `mdev_list` order (the
/// newest first), the masks, the limits of a z15 LPAR (Na = Nd = 84), and the queues with a
/// `driver_override`.
struct TestHost: VFIOAPRulesState {
  typealias Mdev = String

  var features: VFIOAPRuleFeatures = .driverOverride
  var apmask = APMask.all()
  var aqmask = APMask.all()
  var limits = VFIOAPLimits(apmMax: 84, aqmMax: 84, admMax: 84)
  var mdevs: [(name: String, matrix: APMatrix)] = []
  var overrides: [APQN: APQueueOverride] = [:]

  var hasDriverOverrides: Bool { !overrides.isEmpty }
  func driverOverride(of apqn: APQN) -> APQueueOverride? { overrides[apqn] }
  func mdev(holding apqn: APQN) -> String? { mdevs.first { $0.matrix.contains(apqn) }?.name }
  func matrix(of mdev: String) -> APMatrix { mdevs.first { $0.name == mdev }!.matrix }
  func precedes(_ a: String, _ b: String) -> Bool {
    mdevs.firstIndex { $0.name == a }! < mdevs.firstIndex { $0.name == b }!
  }

  var rules: VFIOAPRules<TestHost> { VFIOAPRules(self) }
}

@Suite("VFIOAPRules")
struct VFIOAPRulesTests {
  /// apmask reserves adapters 0-3 and aqmask every domain but 0x47 for the host; "new" (the
  /// newest mdev) holds 05.0047 and 06.0047, "old" holds 07.0047, and "a" is empty.
  func host() -> TestHost {
    var h = TestHost()
    h.apmask = APMask([0, 1, 2, 3])
    h.aqmask = APMask.all().subtracting(APMask([0x47]))
    h.mdevs = [
      ("a", APMatrix()),
      ("new", APMatrix(apm: APMask([5, 6]), aqm: APMask([0x47]))),
      ("old", APMatrix(apm: APMask([7]), aqm: APMask([0x47]))),
    ]
    return h
  }

  @Test("ENODEV above apm_max, aqm_max and adm_max, for assign and unassign alike")
  func beyondMax() {
    let r = host().rules
    for (change, kind) in [
      (VFIOAPMatrixStore.assign(.adapter, 85), VFIOAPIDKind.adapter), (.unassign(.domain, 85), .domain),
      (.assign(.controlDomain, 85), .controlDomain),
    ] {
      let result = r.store(change, to: "a", detail: .all)
      #expect(result.errno == .noSuchDevice)
      #expect(result.conflicts == [.beyondMax(kind, id: 85, max: 84)])
      #expect(result.matrix == APMatrix())
    }
    #expect(r.store(.assign(.adapter, .max), to: "a", detail: .first).errno == .noSuchDevice)
    #expect(r.store(.assign(.adapter, 84), to: "a", detail: .first).matrix.apm == APMask([84]))
  }

  @Test("an assigned id again, or an unassigned one's removal, succeeds and changes nothing")
  func noOps() {
    let r = host().rules
    let again = r.store(.assign(.adapter, 5), to: "new", detail: .all)
    #expect(again.succeeds && again.matrix == r.state.matrix(of: "new"))
    let absent = r.store(.unassign(.domain, 9), to: "new", detail: .all)
    #expect(absent.succeeds && absent.matrix == r.state.matrix(of: "new"))
    let gone = r.store(.unassign(.adapter, 6), to: "new", detail: .all)
    #expect(gone.matrix == APMatrix(apm: APMask([5]), aqm: APMask([0x47])))
  }

  @Test("EADDRNOTAVAIL: the APQNs apmask and aqmask reserve, the first or all of them")
  func ownedByDefaultDriver() {
    var h = host()
    h.mdevs[0].matrix = APMatrix(apm: APMask([2, 3]))
    let r = h.rules
    let first = r.store(.assign(.domain, 4), to: "a", detail: .first)
    #expect(first.errno == .addressNotAvailable)
    #expect(first.conflicts == [.ownedByDefaultDriver(APQN(2, 4), override: nil)])
    #expect(first.matrix == h.mdevs[0].matrix)
    let all = r.store(.assign(.domain, 4), to: "a", detail: .all)
    #expect(
      all.conflicts == [
        .ownedByDefaultDriver(APQN(2, 4), override: nil), .ownedByDefaultDriver(APQN(3, 4), override: nil),
      ])
    // With no domain the product is empty: a reserved adapter is accepted.
    #expect(r.store(.assign(.adapter, 1), to: "a", detail: .first).succeeds)
  }

  @Test("EADDRINUSE: the mdevs that hold the APQNs, the newest first, with what they share")
  func sharing() {
    var h = host()
    h.mdevs[0].matrix = APMatrix(apm: APMask([5, 6, 7]))
    let r = h.rules
    let first = r.store(.assign(.domain, 0x47), to: "a", detail: .first)
    #expect(first.errno == .addressInUse)
    #expect(first.conflicts == [.sharedWith("new", apm: APMask([5, 6]), aqm: APMask([0x47]))])
    let all = r.store(.assign(.domain, 0x47), to: "a", detail: .all)
    #expect(
      all.conflicts == [
        .sharedWith("new", apm: APMask([5, 6]), aqm: APMask([0x47])),
        .sharedWith("old", apm: APMask([7]), aqm: APMask([0x47])),
      ])
    // The reservation is checked first: 01.0004 is the host's, 05.0047 is "new"'s.
    let both = APMatrix(apm: APMask([1, 5]), aqm: APMask([4, 0x47]))
    #expect(
      r.store(.apConfig(both), to: "a", detail: .all).conflicts == [
        .ownedByDefaultDriver(APQN(1, 4), override: nil)
      ])
    // An mdev does not conflict with itself.
    #expect(r.store(.assign(.adapter, 8), to: "new", detail: .first).succeeds)
  }

  @Test("control domains are never refused: shared, and reserved for nothing")
  func controlDomains() {
    let r = host().rules
    #expect(r.store(.assign(.controlDomain, 0x47), to: "a", detail: .all).matrix.adm == APMask([0x47]))
    #expect(r.store(.assign(.controlDomain, 4), to: "new", detail: .all).succeeds)
  }

  @Test("ap_config: EADDRNOTAVAIL and EADDRINUSE before ENODEV; ENODEV lists every id beyond")
  func apConfig() {
    let r = host().rules
    let owned = APMatrix(apm: APMask([1]), aqm: APMask([4, 85]))
    #expect(r.store(.apConfig(owned), to: "a", detail: .first).errno == .addressNotAvailable)
    let shared = APMatrix(apm: APMask([5]), aqm: APMask([0x47, 85]))
    #expect(r.store(.apConfig(shared), to: "a", detail: .first).errno == .addressInUse)
    let beyond = APMatrix(apm: APMask([8, 90]), aqm: APMask([0x47, 85, 86]), adm: APMask([100]))
    let b = r.store(.apConfig(beyond), to: "a", detail: .all)
    #expect(
      b.conflicts == [
        .beyondMax(.adapter, id: 90, max: 84), .beyondMax(.domain, id: 85, max: 84),
        .beyondMax(.domain, id: 86, max: 84), .beyondMax(.controlDomain, id: 100, max: 84),
      ])
    #expect(b.matrix == APMatrix())
    let ok = APMatrix(apm: APMask([8, 9]), aqm: APMask([0x47]), adm: APMask([1]))
    #expect(r.store(.apConfig(ok), to: "a", detail: .first) == VFIOAPStoreResult(conflicts: [], matrix: ok))
    // Replacing its own matrix: what it keeps is not a conflict with itself.
    let mine = APMatrix(apm: APMask([5, 6, 8]), aqm: APMask([0x47]))
    #expect(r.store(.apConfig(mine), to: "new", detail: .all).succeeds)
  }

  @Test("resource_in_use: every mdev that holds part of apm x aqm, with no assignee")
  func resourceInUse() {
    let r = host().rules
    #expect(
      r.resourceInUse(apm: APMask([6, 7]), aqm: APMask([0x47]), detail: .all) == [
        .sharedWith("new", apm: APMask([6]), aqm: APMask([0x47])),
        .sharedWith("old", apm: APMask([7]), aqm: APMask([0x47])),
      ])
    #expect(r.resourceInUse(apm: APMask([8]), aqm: APMask.all(), detail: .first).isEmpty)
  }

  @Test("only the APQNs a store adds are looked up, however many mdevs there are")
  func lookupsAreTheAddition() {
    final class Counter { var lookups = 0 }
    struct Counting: VFIOAPRulesState {
      var host: TestHost
      let counter: Counter
      var features: VFIOAPRuleFeatures { host.features }
      var apmask: APMask { host.apmask }
      var aqmask: APMask { host.aqmask }
      var limits: VFIOAPLimits { host.limits }
      var hasDriverOverrides: Bool { host.hasDriverOverrides }
      func driverOverride(of apqn: APQN) -> APQueueOverride? { host.driverOverride(of: apqn) }
      func mdev(holding apqn: APQN) -> String? {
        counter.lookups += 1
        return host.mdev(holding: apqn)
      }
      func matrix(of mdev: String) -> APMatrix { host.matrix(of: mdev) }
      func precedes(_ a: String, _ b: String) -> Bool { host.precedes(a, b) }
    }
    var h = host()
    h.mdevs += (10..<74).map { ("m\($0)", APMatrix(apm: APMask([$0]), aqm: APMask([0x50]))) }
    h.mdevs[0].matrix = APMatrix(apm: APMask([80, 81, 82]), aqm: APMask([0x47]))
    let c = Counter()
    let r = VFIOAPRules(Counting(host: h, counter: c))
    #expect(r.store(.assign(.domain, 0x48), to: "a", detail: .first).succeeds)
    #expect(c.lookups == 3)
  }

  @Test("Linux 6.19: a driver_override decides the owner whatever the masks say; before, the masks do")
  func driverOverrideProfiles() {
    var h = host()
    // 02.0047 is not reserved by the masks but bound to cex4queue by its override;
    // 04.0004 is reserved by the masks but given to vfio_ap by its override.
    h.overrides[APQN(4, 0x47)] = APQueueOverride(
      name: "cex4queue", boundDriver: "cex4queue", boundDriverIsDefault: true)
    h.mdevs[0].matrix = APMatrix(apm: APMask([4]))
    h.overrides[APQN(1, 4)] = APQueueOverride(
      name: "vfio_ap", boundDriver: "vfio_ap", boundDriverIsDefault: false)
    h.apmask = APMask([1])
    h.aqmask = APMask([4])
    let r = h.rules
    let over = r.store(.assign(.domain, 0x47), to: "a", detail: .all)
    #expect(over.errno == .addressNotAvailable)
    #expect(
      over.conflicts == [.ownedByDefaultDriver(APQN(4, 0x47), override: h.overrides[APQN(4, 0x47)])])
    #expect(r.ownedByDefDrv(APQN(1, 4)) == false)
    #expect(r.apqnInMatrixOwnedByDefDrv(apm: APMask([1]), aqm: APMask([4]), detail: .all).isEmpty)
    // A kernel before 6.19 has no overrides that count: the masks alone decide.
    var old = h
    old.features = []
    #expect(old.rules.store(.assign(.domain, 0x47), to: "a", detail: .all).succeeds)
    #expect(old.rules.ownedByDefDrv(APQN(1, 4)))
    #expect(
      old.rules.apqnInMatrixOwnedByDefDrv(apm: APMask([1]), aqm: APMask([4]), detail: .all) == [APQN(1, 4)])
  }

  @Test("filter_matrix: an adapter with an unusable queue leaves whole, with its reason")
  func filterMatrix() {
    let matrix = APMatrix(apm: APMask([1, 2, 3, 9]), aqm: APMask([4, 5, 0x50]), adm: APMask([4, 0x50]))
    let host = APMatrix(apm: APMask([1, 2, 3]), aqm: APMask([4, 5]), adm: APMask([4]))
    let previous = APMatrix(apm: APMask([1, 2]), aqm: APMask([4, 5]))
    var asked: [APQN] = []
    let f = VFIOAPFilter.filterMatrix(matrix, host: host, previous: previous) {
      apqn -> VFIOAPQueueFilterReason? in
      asked.append(apqn)
      switch apqn {
      case APQN(2, 4): return .resetIncomplete(.resetInProgress)
      case APQN(3, 5): return .notBound(driver: "cex4queue")
      default: return nil
      }
    }
    #expect(f.apm == APMask([1]) && f.aqm == APMask([4, 5]))
    #expect(
      f.droppedByQueue == [
        VFIOAPDroppedAdapter(apid: 2, apqn: APQN(2, 4), reason: .resetIncomplete(.resetInProgress)),
        VFIOAPDroppedAdapter(apid: 3, apqn: APQN(3, 5), reason: .notBound(driver: "cex4queue")),
      ])
    // Only 02 was in the guest before: its queues are the ones reset.
    #expect(f.filtered == APMask([2]))
    #expect(f.changed)
    #expect(f.adaptersNotInConfiguration == APMask([9]) && f.domainsNotInConfiguration == APMask([0x50]))
    // Adapter 02 stops at its first failing queue; adapter 09 and domain 0x50 are never asked.
    #expect(asked == [APQN(1, 4), APQN(1, 5), APQN(2, 4), APQN(3, 4), APQN(3, 5)])
    #expect(VFIOAPFilter.filterCdoms(matrix.adm, host: host) == APMask([4]))
    let same = VFIOAPFilter.filterMatrix(
      APMatrix(apm: APMask([1]), aqm: APMask([4])), host: host,
      previous: APMatrix(apm: APMask([1]), aqm: APMask([4]))
    ) { (_: APQN) -> VFIOAPQueueFilterReason? in nil }
    #expect(!same.changed && same.droppedByQueue.isEmpty && same.filtered.isEmpty)
  }
}
