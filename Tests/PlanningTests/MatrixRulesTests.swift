import APModel
import Planning
import Testing

@Suite("MatrixRules")
struct MatrixRulesTests {
  func predict(_ line: String, _ s: SysfsSnapshot) throws -> WritePrediction {
    MatrixRules.predict(try SysfsWrite.parse(shell: line), in: s)
  }

  @Test("assign: EINVAL for text kstrtoul rejects, ERANGE for 65 bits, ENODEV beyond the limits")
  func parseAndRange() throws {
    let s = try smallHost().snapshot()
    for v in ["zz", "5x", "''", "' 5'", "-1", "5\\\\n\\\\n"] {
      #expect(try predict("echo \(v) > .../\(uuidA)/assign_adapter", s).errno == .invalidArgument, "\(v)")
    }
    #expect(try predict("echo 0x10000000000000000 > .../\(uuidA)/assign_domain", s).errno == .outOfRange)
    let p = try predict("echo 0x55 > .../\(uuidA)/assign_adapter", s)
    #expect(p.errno == .noSuchDevice)
    #expect(p.conflicts == [.beyondMax(kind: .adapter, id: 0x55, max: 84)])
    #expect(try predict("echo 85 > .../\(uuidA)/assign_control_domain", s).errno == .noSuchDevice)
    #expect(try predict("echo 85 > .../\(uuidA)/unassign_domain", s).errno == .noSuchDevice)
    #expect(try predict("echo 84 > .../\(uuidA)/assign_control_domain", s).succeeds)
    #expect(
      try predict("echo 010 > .../\(uuidA)/assign_control_domain", s).after.mdev(uuidA)?.matrix.adm
        == APMask([8]))
  }

  @Test("assign: EADDRNOTAVAIL names the APQNs the masks reserve, with their bits")
  func reserved() throws {
    let s = try smallHost().snapshot()
    let p = try predict("echo 3 > .../\(uuidA)/assign_adapter", s)
    #expect(p.errno == .addressNotAvailable)
    #expect(p.conflicts == [.reservedForHost(APQN(3, 4), driverOverride: nil, driver: nil)])
    #expect(p.conflicts[0].description == "03.0004 is reserved for the host by apmask bit 3 and aqmask bit 4")
    #expect(p.after == s)
    // With no domain the product is empty: the adapter is accepted.
    var t = s
    t.mdevs[0].matrix.aqm = APMask()
    #expect(MatrixRules.predict(SysfsWrite(.mdev(uuidA, .assignAdapter), echo: "3"), in: t).succeeds)
  }

  @Test("assign: EADDRINUSE names the mdev that holds the APQN, and whether its guest uses it")
  func inUse() throws {
    var s = try smallHost().snapshot()
    s.mdevs[1].matrix.aqm = APMask([4, 5])
    let p = MatrixRules.predict(SysfsWrite(.mdev(uuidB, .assignAdapter), echo: "1"), in: s)
    #expect(p.errno == .addressInUse)
    #expect(p.conflicts == [.heldByMdev(APQN(1, 4), uuid: uuidA, inUse: true)])
    #expect(p.conflicts[0].description == "01.0004 is held by mdev \(uuidA), used by its guest")
    let q = MatrixRules.predict(SysfsWrite(.mdev(uuidA, .assignAdapter), echo: "2"), in: s)
    #expect(q.conflicts == [.heldByMdev(APQN(2, 4), uuid: uuidB, inUse: false)])
  }

  @Test("an already assigned id and an unassigned one's removal change nothing; a missing mdev is ENOENT")
  func noOps() throws {
    let s = try smallHost().snapshot()
    let p = try predict("echo 1 > .../\(uuidA)/assign_adapter", s)
    #expect(p.succeeds && p.after == s)
    #expect(try predict("echo 9 > .../\(uuidA)/unassign_adapter", s).after == s)
    #expect(
      try predict("echo 1 > .../00000000-0000-4000-8000-000000000000/assign_adapter", s).errno
        == .noSuchFileOrDirectory)
    let old = try smallHost(old: true).snapshot()
    #expect(try predict("echo 0,0,0 > .../\(uuidA)/ap_config", old).errno == .noSuchFileOrDirectory)
  }

  @Test("ap_config: EINVAL for a missing piece, EADDRNOTAVAIL and EADDRINUSE before ENODEV")
  func apConfig() throws {
    let s = try smallHost().snapshot()
    #expect(try predict("echo 0x40 > .../\(uuidA)/ap_config", s).errno == .invalidArgument)
    #expect(try predict("echo 0x40,zz,0 > .../\(uuidA)/ap_config", s).errno == .invalidArgument)
    // adapter 03 (reserved) and domain 0x60 (beyond 84): the reservation wins.
    let bit96 = "0x" + String(repeating: "0", count: 24) + "8"
    #expect(try predict("echo 0x10,\(bit96),0 > .../\(uuidA)/ap_config", s).errno == .addressNotAvailable)
    #expect(try predict("echo 0x20,0x04,0 > .../\(uuidA)/ap_config", s).errno == .addressInUse)
    #expect(try predict("echo 0x40,\(bit96),0 > .../\(uuidA)/ap_config", s).errno == .noSuchDevice)
    let ok = try predict("echo 0x40,0x0c,0x02 > .../\(uuidA)/ap_config", s)
    #expect(ok.succeeds)
    #expect(
      ok.after.mdev(uuidA)?.matrix == APMatrix(apm: APMask([1]), aqm: APMask([4, 5]), adm: APMask([6])))
    #expect(ok.after.mdev(uuidA)?.guestMatrix == APMatrix(apm: APMask([1]), aqm: APMask([4, 5])))
  }

  @Test("apmask/aqmask: EINVAL for bad syntax, EBUSY for bits that take back an mdev's queues")
  func masks() throws {
    let s = try smallHost().snapshot()
    #expect(try predict("echo +256 > /sys/bus/ap/apmask", s).errno == .invalidArgument)
    #expect(try predict("echo 0xfg > /sys/bus/ap/aqmask", s).errno == .invalidArgument)
    let p = try predict("echo +1 > /sys/bus/ap/apmask", s)
    #expect(p.errno == .resourceBusy)
    #expect(p.conflicts == [.takenFromMdev(APQN(1, 4), uuid: uuidA, inUse: true)])
    // The aqmask is all ones: a store of the same bits changes nothing, clearing is never refused.
    #expect(try predict("echo +4 > /sys/bus/ap/aqmask", s).after == s)
    let c = try predict("echo -5 > /sys/bus/ap/aqmask", s)
    #expect(c.succeeds)
    #expect(c.after.queues[APQN(3, 5)]?.driver == "vfio_ap")
    // Reserving domain 5 is refused where apmask has B's adapters: B holds 02.0005 and 07.0005.
    var t = s
    t.apmask = .all()
    t.aqmask = APMask.all().subtracting(APMask([4, 5]))
    let r = MatrixRules.predict(SysfsWrite(.aqmask, echo: "+5"), in: t)
    #expect(r.errno == .resourceBusy)
    #expect(
      r.conflicts == [
        .takenFromMdev(APQN(2, 5), uuid: uuidB, inUse: false),
        .takenFromMdev(APQN(7, 5), uuid: uuidB, inUse: false),
      ])
    // Where apmask lacks them, the same store is accepted: the check is apmask x the new bits.
    t.apmask = s.apmask
    #expect(MatrixRules.predict(SysfsWrite(.aqmask, echo: "+5"), in: t).succeeds)
    // Reserving adapter 03, the host's already: nothing changes.
    #expect(try predict("echo +3 > bus/ap/apmask", s).after == s)
  }

  @Test("apmask/aqmask: EINVAL while a queue has a driver_override (Linux 6.19)")
  func driverOverride() throws {
    let f = try smallHost()
    try f.write("devices/ap/card03/03.0004/driver_override", "vfio_ap\n")
    let s = try f.snapshot()
    let p = MatrixRules.predict(SysfsWrite(.apmask, echo: "-3"), in: s)
    #expect(p.errno == .invalidArgument)
    #expect(p.conflicts == [.driverOverrideSet(APQN(3, 4), "vfio_ap")])
  }

  @Test(
    "filtering drops an adapter for a missing, an unbound or a host-bound queue, and over-provisioned ids")
  func filtering() throws {
    let s = try smallHost().snapshot()
    let f = MatrixRules.filter(
      APMatrix(apm: APMask([1, 2, 3, 7]), aqm: APMask([4, 5, 9]), adm: APMask([6, 7])), in: s)
    #expect(f.guest == APMatrix(apm: APMask([1]), aqm: APMask([4, 5]), adm: APMask([6])))
    #expect(f.droppedAdapters[2] == .queueNotBound(APQN(2, 4), driver: nil))
    #expect(f.droppedAdapters[3] == .queueNotBound(APQN(3, 4), driver: "cex4queue"))
    #expect(f.droppedAdapters[7] == .notInHostConfiguration)
    #expect(f.droppedDomains == [9: .notInHostConfiguration])
    #expect(f.droppedControlDomains == [7: .notInHostConfiguration])
    var t = s
    t.queues[APQN(1, 5)] = nil
    #expect(
      MatrixRules.filter(APMatrix(apm: APMask([1]), aqm: APMask([5])), in: t).droppedAdapters[1]
        == .queueMissing(APQN(1, 5)))
  }

  @Test("assign re-filters, unassign does not: an adapter dropped for one domain stays out")
  func unassignDoesNotRefilter() throws {
    let s = try smallHost().snapshot()
    // B gains domain 04: 02.0004 is unbound, so adapter 02 leaves B's guest_matrix.
    let p = try predict("echo 4 > .../\(uuidB)/assign_domain", s)
    #expect(p.succeeds)
    #expect(p.after.mdev(uuidB)?.guestMatrix == APMatrix(apm: APMask(), aqm: APMask([4, 5])))
    #expect(
      p.effects.contains("adapter 02 stays out of guest_matrix: queue 02.0004 is unbound, not to vfio_ap"))
    // Unassigning domain 04 again leaves adapter 02 out (the kernel's quirk).
    let q = MatrixRules.predict(SysfsWrite(.mdev(uuidB, .unassignDomain), echo: "4"), in: p.after)
    #expect(q.succeeds)
    #expect(q.after.mdev(uuidB)?.guestMatrix == APMatrix(apm: APMask(), aqm: APMask([5])))
    #expect(q.effects.last?.hasPrefix("unassign does not re-filter") == true)
  }

  @Test("a write's shell form: echo -n, quotes, paths under any root")
  func parsing() throws {
    let w = try SysfsWrite.parse(
      shell: "echo -n '0x05' > /run/apvirt/sys/devices/vfio_ap/matrix/\(uuidA.uppercased())/assign_adapter")
    #expect(w.target == .mdev(uuidA, .assignAdapter) && w.bytes == Array("0x05".utf8))
    #expect(try SysfsWrite.parse(shell: "echo -5,-6 >> bus/ap/apmask") == SysfsWrite(.apmask, echo: "-5,-6"))
    #expect(try SysfsWrite.parse(shell: "echo \"+1\" >/sys/bus/ap/aqmask").target == .aqmask)
    #expect(throws: SysfsWrite.ParseError.self) { try SysfsWrite.parse(shell: "cat /sys/bus/ap/apmask") }
    #expect(throws: SysfsWrite.ParseError.self) { try SysfsWrite.parse(shell: "echo 5 > /sys/bus/ap/scans") }
    #expect(throws: SysfsWrite.ParseError.self) { try SysfsWrite.parse(shell: "echo 5 > x; rm y") }
    #expect(SysfsWrite(.apmask, echo: "-5").description == "echo -5 > bus/ap/apmask")
  }
}

@Suite("MatrixRules with many mdevs")
struct MatrixRulesManyMdevsTests {
  let uuidC = "22222222-2222-4333-8444-555555555555"
  let uuidD = "33333333-2222-4333-8444-555555555555"
  let uuidE = "44444444-2222-4333-8444-555555555555"
  let uuidG = "55555555-2222-4333-8444-555555555555"

  /// The small host with nothing reserved for the host and two more mdevs (C holds 03.0004, G
  /// nothing); with `extra` also D (08.0005) and E (09.0005): six mdevs, which the snapshot's
  /// rules look up through an owner index rather than a walk of the mdevs.
  func host(extra: Bool = true) throws -> SysfsSnapshot {
    var s = try smallHost().snapshot()
    s.apmask = APMask()
    s.mdevs.append(SysfsSnapshot.Mdev(uuid: uuidC, matrix: APMatrix(apm: APMask([3]), aqm: APMask([4]))))
    s.mdevs.append(SysfsSnapshot.Mdev(uuid: uuidG, matrix: APMatrix()))
    if extra {
      s.mdevs.append(SysfsSnapshot.Mdev(uuid: uuidD, matrix: APMatrix(apm: APMask([8]), aqm: APMask([5]))))
      s.mdevs.append(SysfsSnapshot.Mdev(uuid: uuidE, matrix: APMatrix(apm: APMask([9]), aqm: APMask([5]))))
    }
    s.mdevs.sort { $0.uuid < $1.uuid }
    return s
  }

  @Test("EADDRINUSE and EBUSY name every holder in UUID order, with four mdevs or six")
  func holders() throws {
    let write = SysfsWrite(.mdev(uuidG, .apConfig), echo: "0x70,0x0c,0")
    let six = MatrixRules.predict(write, in: try host())
    #expect(six.errno == .addressInUse)
    #expect(
      six.conflicts == [
        .heldByMdev(APQN(1, 4), uuid: uuidA, inUse: true), .heldByMdev(APQN(3, 4), uuid: uuidC, inUse: false),
        .heldByMdev(APQN(2, 5), uuid: uuidB, inUse: false),
      ])
    #expect(MatrixRules.predict(write, in: try host(extra: false)).conflicts == six.conflicts)
    let busy = MatrixRules.predict(SysfsWrite(.apmask, echo: "+8,+9"), in: try host())
    #expect(busy.errno == .resourceBusy)
    #expect(
      busy.conflicts == [
        .takenFromMdev(APQN(8, 5), uuid: uuidD, inUse: false),
        .takenFromMdev(APQN(9, 5), uuid: uuidE, inUse: false),
      ])
    #expect(
      MatrixRules.predict(SysfsWrite(.mdev(uuidG, .assignAdapter), echo: "0x0a"), in: try host()).succeeds)
  }
}
