import APModel
import Foundation
import Planning
import Testing

@Suite("SysfsSnapshot")
struct SysfsSnapshotTests {
  @Test("reads masks, the host's configuration, cards, queues and mdevs")
  func readsEverything() throws {
    let f = try smallHost()
    let s = try f.snapshot()
    #expect(s.root == f.root)
    #expect(s.apmask == APMask.all().subtracting(APMask([1, 2, 7])))
    #expect(s.aqmask == .all())
    #expect(s.qci == APMatrix(apm: APMask([1, 2, 3, 4]), aqm: APMask([4, 5]), adm: APMask([4, 5, 6])))
    #expect(s.maxAdapterID == 84 && s.maxDomainID == 84)
    #expect(s.features == ["APSC", "APXA", "QACT", "RC8A"])
    #expect(s.cards.keys.sorted() == [1, 2, 3, 4])
    #expect(s.cards[4]?.chkstop == true && s.cards[1]?.type == "CEX8C" && s.cards[1]?.driver == "cex4card")
    #expect(s.queues.count == 8)
    #expect(s.queues[APQN(1, 4)]?.driver == "vfio_ap" && s.queues[APQN(1, 4)]?.inUse == true)
    #expect(s.queues[APQN(2, 4)]?.driver == nil)
    #expect(s.queues[APQN(3, 5)]?.driver == "cex4queue")
    #expect(s.mdevs.map(\.uuid) == [uuidA, uuidB])
    #expect(s.mdevs[0].inUse && !s.mdevs[1].inUse)
    #expect(s.mdevs[1].matrix == APMatrix(apm: APMask([2, 7]), aqm: APMask([5]), adm: APMask([6])))
    #expect(s.mdevs[1].guestMatrix == APMatrix(apm: APMask([2]), aqm: APMask([5])))
  }

  @Test("an older kernel's files: no features, ap_config or guest_matrix; matrix and control_domains serve")
  func olderKernel() throws {
    let f = try smallHost(old: true)
    let s = try f.snapshot()
    #expect(s.features == nil)
    #expect(s.mdevs[1].matrix == APMatrix(apm: APMask([2, 7]), aqm: APMask([5]), adm: APMask([6])))
    #expect(s.mdevs[1].guestMatrix == nil && !s.mdevs[1].hasAPConfig)
  }

  @Test("without QCI the host's configuration is the cards and queues that exist")
  func withoutQCI() throws {
    let f = try FakeSysfs()
    try f.bus(apmask: .all(), aqmask: .all(), qci: nil)
    try f.card(5)
    try f.queue(APQN(5, 4), driver: "cex4queue")
    let s = try f.snapshot()
    #expect(s.qci == nil)
    #expect(s.hostConfiguration == APMatrix(apm: APMask([5]), aqm: APMask([4])))
  }

  @Test("a missing or malformed file is an error that names it")
  func errorsNameTheFile() throws {
    let f = try smallHost()
    try f.write("bus/ap/aqmask", "garbage\n")
    #expect(throws: SnapshotError(path: f.root + "/bus/ap/aqmask", reason: "not a hex mask: \"garbage\\n\""))
    {
      try f.snapshot()
    }
    try f.remove("bus/ap/aqmask")
    let e = #expect(throws: SnapshotError.self) { try f.snapshot() }
    #expect(e?.description == f.root + "/bus/ap/aqmask: No such file or directory")
    let g = try smallHost()
    try g.write("devices/vfio_ap/matrix/\(uuidA)/ap_config", "0x80,zz\n")
    let e2 = #expect(throws: SnapshotError.self) { try g.snapshot() }
    #expect(e2?.path == g.root + "/devices/vfio_ap/matrix/\(uuidA)/ap_config")
    #expect(throws: SnapshotError.self) { try SysfsSnapshot.read(root: "/nonexistent-apvirt-root") }
  }

  @Test("the matrix texts parse back: APQNs, adapters only, domains only, empty")
  func matrixTexts() {
    #expect(
      SysfsSnapshot.parseMatrixText("05.0004\n05.0047\n06.0004\n06.0047\n")
        == APMatrix(apm: APMask([5, 6]), aqm: APMask([4, 0x47])))
    #expect(SysfsSnapshot.parseMatrixText("05.\n06.\n") == APMatrix(apm: APMask([5, 6])))
    #expect(SysfsSnapshot.parseMatrixText(".0004\n") == APMatrix(aqm: APMask([4])))
    #expect(SysfsSnapshot.parseMatrixText("") == APMatrix())
    #expect(SysfsSnapshot.parseMatrixText("nonsense\n") == nil)
    let m = APMatrix(apm: APMask([5]), aqm: APMask([4, 0xff]), adm: APMask([255]))
    #expect(SysfsSnapshot.parseAPConfig(m.apConfigText) == m)
  }
}
