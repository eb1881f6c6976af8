import APModel
import Machine
import Testing

/// Na = Nd = 84; adapter 05 (CEX8 CCA, depth 2), 06 (CEX7 EP11), 07 (CEX8 accelerator,
/// deconfigured); usage domains 04 and 47, control domains 04, 47 and 50.
func labMachine(facilities: APFacilities = .all) -> APMachine {
  APMachine(
    definition: MachineDefinition(
      name: "lab", na: 84, nd: 84, facilities: facilities,
      adapters: [
        .init(apid: 5, type: .cex8, mode: .cca, queueDepth: 2),
        .init(apid: 6, type: .cex7, mode: .ep11),
        .init(apid: 7, type: .cex8, mode: .accel, configured: false),
      ],
      usageDomains: APMask([4, 0x47]), controlDomains: APMask([4, 0x47, 0x50])))
}

let q54 = APQN(5, 4)
let q547 = APQN(5, 0x47)
let q64 = APQN(6, 4)
/// A guest APCB with adapters 05 and 06 and both usage domains.
let wideAPCB = APMatrix(apm: APMask([5, 6]), aqm: APMask([4, 0x47]), adm: APMask([4]))
let guest1 = APAuthority.guest(vm: 1, apcb: wideAPCB)
let guest2 = APAuthority.guest(vm: 2, apcb: wideAPCB)

func rc(_ s: APQueueStatus) -> APResponseCode { s.responseCode }

@Suite("APMachine")
struct APMachineTests {
  // MARK: QCI

  @Test("QCI for the LPAR answers the LPAR's configuration, deconfigured adapters included")
  func qciLPAR() throws {
    let m = labMachine()
    let info = try #require(m.qci(.lpar))
    #expect(info.apxa && info.na == 84 && info.nd == 84)
    #expect(
      info.matrix == APMatrix(apm: APMask([5, 6, 7]), aqm: APMask([4, 0x47]), adm: APMask([4, 0x47, 0x50])))
    #expect(info.matrix == m.lparMatrix)
    #expect(info.featureNames == ["APSC", "APXA", "QACT", "RC8A"])
  }

  @Test("QCI for a guest answers its APCB")
  func qciGuest() throws {
    let m = labMachine()
    let apcb = APMatrix(apm: APMask([5]), aqm: APMask([4]), adm: APMask([4, 9]))
    let info = try #require(m.qci(.guest(vm: 3, apcb: apcb)))
    #expect(info.matrix == apcb)
    #expect(info.na == 84 && info.nd == 84)
    #expect(try #require(m.qci(.guest(vm: 3, apcb: .empty))).matrix == .empty)
  }

  @Test("no QCI without the facility")
  func qciWithoutFacility() {
    let m = labMachine(facilities: APFacilities(qci: false, apft: true, aqic: true))
    #expect(m.qci(.lpar) == nil)
    #expect(m.qci(guest1) == nil)
    #expect(m.instructionCounts["QCI"] == 2)
  }

  @Test("QCI without APXA")
  func qciNoAPXA() throws {
    let d = MachineDefinition(
      name: "f0", na: 63, nd: 15, apxa: false, crycbFormat: 0, adapters: [.init(apid: 1)],
      usageDomains: .all(through: 15), controlDomains: .all(through: 15))
    let info = try #require(APMachine(definition: d).qci(.lpar))
    #expect(!info.apxa && info.na == 63 && info.nd == 15)
    #expect(!info.featureNames.contains("APXA"))
  }

  // MARK: TAPQ

  @Test("TAPQ of an available queue reports its status and the adapter")
  func tapqNormal() throws {
    let m = labMachine()
    let (status, info) = m.tapq(q54, .lpar)
    #expect(status == APQueueStatus())
    #expect(status.queueEmpty && !status.repliesWaiting && !status.queueFull && !status.irqEnabled)
    let i = try #require(info)
    #expect(i.type == .cex8 && i.mode == .cca && i.functions == AdapterMode.cca.functions(apxa: true))
    #expect(i.queueDepth == 2 && i.ml == 0 && i.adapterConfigured && !i.checkstopped)
    let (s6, i6) = m.tapq(APQN(6, 0x47), guest1)
    #expect(rc(s6) == .normal)
    #expect(i6?.type == .cex7 && i6?.mode == .ep11 && i6?.queueDepth == 8)
  }

  @Test(
    "TAPQ answers rc 01 outside the LPAR's configuration",
    arguments: [APQN(8, 4), APQN(5, 5), APQN(5, 0x50), APQN(0xff, 0xff), APQN(0, 0)])
  func tapqNotInLPAR(apqn: APQN) {
    let m = labMachine()
    let (status, info) = m.tapq(apqn, .lpar)
    #expect(rc(status) == .queueNotAvailable)
    #expect(info == nil)
    let everything = APMatrix(apm: .all(), aqm: .all(), adm: .all())
    #expect(rc(m.tapq(apqn, .guest(vm: 1, apcb: everything)).0) == .queueNotAvailable)
  }

  @Test("TAPQ answers rc 01 for a queue outside a guest's APCB, even if the LPAR has it")
  func tapqOutsideAPCB() {
    let m = labMachine()
    let g = APAuthority.guest(vm: 1, apcb: APMatrix(apm: APMask([5]), aqm: APMask([4])))
    #expect(rc(m.tapq(q54, g).0) == .normal)
    for apqn in [q547, q64, APQN(6, 0x47)] {
      let (status, info) = m.tapq(apqn, g)
      #expect(rc(status) == .queueNotAvailable)
      #expect(info == nil)
      #expect(rc(m.tapq(apqn, .lpar).0) == .normal)
    }
    // Only usage domains count: a control domain in the APCB gives no queue.
    let c = APAuthority.guest(vm: 1, apcb: APMatrix(apm: APMask([5]), adm: APMask([4])))
    #expect(rc(m.tapq(q54, c).0) == .queueNotAvailable)
  }

  @Test("TAPQ answers rc 03 on a deconfigured adapter, with the adapter's info")
  func tapqDeconfigured() throws {
    let m = labMachine()
    let (s7, i7) = m.tapq(APQN(7, 4), .lpar)
    #expect(rc(s7) == .deconfigured)
    #expect(i7?.adapterConfigured == false)
    try m.setConfigured(5, false)
    let (s5, i5) = m.tapq(q54, .lpar)
    #expect(rc(s5) == .deconfigured)
    #expect(i5?.adapterConfigured == false && i5?.type == .cex8)
    #expect(rc(m.tapq(q54, guest1).0) == .deconfigured)
    #expect(rc(m.tapq(q64, .lpar).0) == .normal)
    try m.setConfigured(5, true)
    #expect(rc(m.tapq(q54, .lpar).0) == .normal)
    try m.setConfigured(7, true)
    #expect(rc(m.tapq(APQN(7, 0x47), .lpar).0) == .normal)
  }

  @Test("a deconfigured adapter stays in QCI's APM and does not change the configuration generation")
  func deconfigureKeepsAPM() throws {
    let m = labMachine()
    try m.setConfigured(5, false)
    try m.setCheckstopped(6, true)
    #expect(m.qci(.lpar)?.matrix.apm == APMask([5, 6, 7]))
    #expect(m.configGeneration == 0)
  }

  @Test("every instruction on a deconfigured adapter answers rc 03")
  func deconfiguredInstructions() throws {
    let m = labMachine()
    try m.setConfigured(5, false)
    #expect(rc(m.nqap(q54, psmid: 1, payload: [1], .lpar)) == .deconfigured)
    #expect(rc(m.dqap(q54, .lpar).0) == .deconfigured)
    #expect(m.dqap(q54, .lpar).1 == nil)
    #expect(rc(m.zapq(q54, .lpar)) == .deconfigured)
    #expect(rc(m.rapq(q54, .lpar)) == .deconfigured)
    #expect(rc(m.aqic(q54, enable: true, notificationAddress: 0x1000, .lpar)) == .deconfigured)
  }

  @Test("TAPQ answers rc 04 on a checkstopped adapter; deconfigured wins over checkstopped")
  func tapqCheckstopped() throws {
    let m = labMachine()
    try m.setCheckstopped(5, true)
    let (s, i) = m.tapq(q54, .lpar)
    #expect(rc(s) == .checkstopped)
    #expect(i?.checkstopped == true)
    #expect(rc(m.nqap(q54, psmid: 1, payload: [], guest1)) == .checkstopped)
    #expect(rc(m.zapq(q54, .lpar)) == .checkstopped)
    try m.setCheckstopped(7, true)
    #expect(rc(m.tapq(APQN(7, 4), .lpar).0) == .deconfigured)
    try m.setCheckstopped(5, false)
    #expect(rc(m.tapq(q54, .lpar).0) == .normal)
  }

  @Test("configure and checkstop operations need an adapter in the configuration")
  func adapterOperationsUnknown() {
    let m = labMachine()
    #expect(throws: MachineOperationError.noSuchAdapter(9)) { try m.setConfigured(9, true) }
    #expect(throws: MachineOperationError.noSuchAdapter(9)) { try m.setCheckstopped(9, true) }
  }

  // MARK: NQAP / DQAP

  @Test("NQAP then DQAP returns the test service's reply")
  func nqapDqap() throws {
    let m = labMachine()
    let s = m.nqap(q54, psmid: 0x1234, payload: [1, 2, 3], .lpar)
    #expect(rc(s) == .normal && !s.queueEmpty && s.repliesWaiting)
    let t = m.tapq(q54, .lpar).0
    #expect(!t.queueEmpty && t.repliesWaiting && !t.queueFull)
    let (ds, msg) = m.dqap(q54, .lpar)
    #expect(rc(ds) == .normal)
    #expect(ds.queueEmpty && !ds.repliesWaiting)
    let reply = try #require(msg)
    #expect(reply.psmid == 0x1234)
    #expect(reply.payload == APTestService.reply(to: [1, 2, 3], on: q54))
    #expect(reply.payload == [3, 2, 1, 5, 4])
    #expect(m.tapq(q54, .lpar).0.queueEmpty)
  }

  @Test("replies come back in order and name the queue that answered")
  func fifo() throws {
    let m = labMachine()
    let q = APQN(6, 0x47)
    #expect(rc(m.nqap(q, psmid: 1, payload: [0xaa], guest1)) == .normal)
    #expect(rc(m.nqap(q, psmid: 2, payload: [0xbb, 0xcc], guest1)) == .normal)
    let (s1, m1) = m.dqap(q, guest1)
    #expect(m1?.psmid == 1 && m1?.payload == [0xaa, 6, 0x47])
    #expect(s1.repliesWaiting && !s1.queueEmpty)
    let (s2, m2) = m.dqap(q, guest1)
    #expect(m2?.psmid == 2 && m2?.payload == [0xcc, 0xbb, 6, 0x47])
    #expect(!s2.repliesWaiting && s2.queueEmpty)
  }

  @Test("DQAP with nothing pending answers rc 10")
  func dqapEmpty() {
    let m = labMachine()
    let (s, msg) = m.dqap(q54, .lpar)
    #expect(rc(s) == .noPendingReply)
    #expect(s.responseCode.rawValue == 0x10)
    #expect(msg == nil)
    _ = m.nqap(q54, psmid: 1, payload: [], .lpar)
    _ = m.dqap(q54, .lpar)
    #expect(rc(m.dqap(q54, .lpar).0) == .noPendingReply)
  }

  @Test("NQAP answers rc 10 (queue full) when depth messages wait")
  func queueFull() {
    let m = labMachine()  // adapter 05 has depth 2
    #expect(rc(m.nqap(q54, psmid: 1, payload: [], .lpar)) == .normal)
    #expect(!m.tapq(q54, .lpar).0.queueFull)
    #expect(rc(m.nqap(q54, psmid: 2, payload: [], .lpar)) == .normal)
    #expect(m.tapq(q54, .lpar).0.queueFull)
    #expect(rc(m.nqap(q54, psmid: 3, payload: [], .lpar)) == .queueFull)
    #expect(m.queueState(q54).replies.map(\.psmid) == [1, 2])
    // Another queue of the adapter is independent.
    #expect(rc(m.nqap(q547, psmid: 9, payload: [], .lpar)) == .normal)
    #expect(m.dqap(q54, .lpar).1?.psmid == 1)
    #expect(!m.tapq(q54, .lpar).0.queueFull)
    #expect(rc(m.nqap(q54, psmid: 4, payload: [], .lpar)) == .normal)
    #expect(m.queueState(q54).replies.map(\.psmid) == [2, 4])
  }

  // MARK: ZAPQ, RAPQ, AQIC

  @Test("ZAPQ clears requests, replies and interruptions and counts the zeroize")
  func zapq() {
    let m = labMachine()
    _ = m.aqic(q54, enable: true, notificationAddress: 0x2000, guest1)
    _ = m.nqap(q54, psmid: 1, payload: [1], guest1)
    _ = m.nqap(q54, psmid: 2, payload: [2], guest1)
    #expect(m.queueState(q54).owner == .guest(1))
    #expect(m.queueState(q54).zeroizeCount == 0)
    let s = m.zapq(q54, .lpar)
    #expect(s == APQueueStatus())
    let q = m.queueState(q54)
    #expect(q.requests.isEmpty && q.replies.isEmpty && q.isEmpty)
    #expect(!q.interruptsEnabled && q.notificationAddress == 0)
    #expect(q.owner == nil)
    #expect(q.zeroizeCount == 1)
    #expect(!m.tapq(q54, .lpar).0.irqEnabled)
    #expect(rc(m.dqap(q54, .lpar).0) == .noPendingReply)
    m.zapq(q54, .lpar)
    #expect(m.queueState(q54).zeroizeCount == 2)
    #expect(rc(m.zapq(APQN(8, 4), .lpar)) == .queueNotAvailable)
    #expect(rc(m.zapq(q54, .guest(vm: 1, apcb: .empty))) == .queueNotAvailable)
  }

  @Test("RAPQ clears messages and interruptions but keeps the owner")
  func rapq() {
    let m = labMachine()
    _ = m.aqic(q54, enable: true, notificationAddress: 0x2000, guest1)
    _ = m.nqap(q54, psmid: 1, payload: [1], guest1)
    #expect(m.rapq(q54, guest1) == APQueueStatus())
    let q = m.queueState(q54)
    #expect(q.isEmpty && !q.interruptsEnabled)
    #expect(q.owner == .guest(1))
    #expect(q.zeroizeCount == 0)
    #expect(m.leaks.isEmpty)
    _ = m.tapq(q54, guest2)
    #expect(m.leaks.isEmpty)
    _ = m.dqap(q54, guest2)
    #expect(m.leaks.count == 1)
  }

  @Test("AQIC: enabling needs a notification address (rc 06) and the facility (rc 16)")
  func aqic() {
    let m = labMachine()
    #expect(rc(m.aqic(q54, enable: true, notificationAddress: 0, .lpar)) == .invalidAddress)
    #expect(APResponseCode.invalidAddress.rawValue == 0x06)
    #expect(!m.queueState(q54).interruptsEnabled)
    let on = m.aqic(q54, enable: true, notificationAddress: 0x1000, .lpar)
    #expect(rc(on) == .normal && on.irqEnabled)
    #expect(m.tapq(q54, .lpar).0.irqEnabled)
    #expect(m.queueState(q54).notificationAddress == 0x1000)
    #expect(m.nqap(q54, psmid: 1, payload: [], .lpar).irqEnabled)
    let off = m.aqic(q54, enable: false, notificationAddress: 0, .lpar)
    #expect(rc(off) == .normal && !off.irqEnabled)
    #expect(!m.tapq(q54, .lpar).0.irqEnabled)
    #expect(m.queueState(q54).notificationAddress == 0)
    #expect(rc(m.aqic(APQN(8, 4), enable: true, notificationAddress: 0x1000, .lpar)) == .queueNotAvailable)

    let n = labMachine(facilities: APFacilities(qci: true, apft: true, aqic: false))
    let s = n.aqic(q54, enable: true, notificationAddress: 0x1000, .lpar)
    #expect(rc(s) == .requiredFacilityNotInstalled)
    #expect(s.responseCode.rawValue == 0x16)
  }

  // MARK: Leaks

  @Test("a guest reaching a queue that holds another owner's state is a leak")
  func leaks() throws {
    let m = labMachine()
    _ = m.nqap(q54, psmid: 1, payload: [1], guest1)
    _ = m.dqap(q54, guest1)
    _ = m.nqap(q54, psmid: 2, payload: [2], guest1)
    #expect(m.leaks.isEmpty)
    _ = m.nqap(q54, psmid: 3, payload: [3], guest2)
    try #require(m.leaks.count == 1)
    #expect(m.leaks[0].0 == q54)
    #expect(m.leaks[0].from == .guest(1))
    #expect(m.leaks[0].to == .guest(2))
    #expect(m.queueState(q54).owner == .guest(2))
  }

  @Test("no leak after a ZAPQ")
  func noLeakAfterZeroize() {
    let m = labMachine()
    _ = m.nqap(q54, psmid: 1, payload: [1], guest1)
    m.zapq(q54, .lpar)
    _ = m.nqap(q54, psmid: 2, payload: [2], guest2)
    _ = m.dqap(q54, guest2)
    #expect(m.leaks.isEmpty)
    m.zapq(q54, guest2)
    _ = m.dqap(q54, .lpar)
    #expect(m.leaks.isEmpty)
  }

  @Test("host state reached by a guest is a leak too; other queues and the same VM are not")
  func leakKinds() {
    let m = labMachine()
    _ = m.nqap(q64, psmid: 1, payload: [], .lpar)
    _ = m.nqap(q54, psmid: 1, payload: [], guest1)
    _ = m.nqap(q547, psmid: 1, payload: [], guest2)
    // The same VM with another APCB is the same owner.
    _ = m.dqap(q54, .guest(vm: 1, apcb: APMatrix(apm: APMask([5]), aqm: APMask([4]))))
    #expect(m.leaks.isEmpty)
    _ = m.dqap(q64, guest1)
    #expect(m.leaks.count == 1)
    #expect(m.leaks.last?.from == .lpar && m.leaks.last?.to == .guest(1))
    #expect(APQueueOwner.lpar.description == "host")
    #expect(APQueueOwner.guest(3).description == "guest 3")
    #expect(guest1.owner == .guest(1) && APAuthority.lpar.owner == .lpar)
  }

  @Test("ownedQueues lists the queues holding state, ascending, until they are zeroized")
  func ownedQueues() {
    let m = labMachine()
    #expect(m.ownedQueues.isEmpty)
    _ = m.nqap(q64, psmid: 1, payload: [], .lpar)
    _ = m.nqap(q547, psmid: 1, payload: [], guest2)
    _ = m.nqap(q54, psmid: 1, payload: [], guest1)
    _ = m.tapq(APQN(6, 0x47), guest1)
    #expect(m.ownedQueues.map(\.0) == [q54, q547, q64])
    #expect(m.ownedQueues.map(\.1) == [.guest(1), .guest(2), .lpar])
    m.zapq(q547, .lpar)
    #expect(m.ownedQueues.map(\.0) == [q54, q64])
  }

  @Test("queues of a deconfigured adapter lose their contents and their owner")
  func deconfigureDropsState() throws {
    let m = labMachine()
    _ = m.nqap(q54, psmid: 1, payload: [], guest1)
    try m.setConfigured(5, false)
    try m.setConfigured(5, true)
    #expect(m.queueState(q54).isEmpty && m.queueState(q54).owner == nil)
    #expect(rc(m.dqap(q54, guest2).0) == .noPendingReply)
    #expect(m.leaks.isEmpty)
  }

  // MARK: Configuration changes

  @Test("add and remove adapters")
  func addRemoveAdapter() throws {
    let m = labMachine()
    #expect(m.configGeneration == 0)
    try m.addAdapter(.init(apid: 8, type: .cex8, mode: .ep11))
    #expect(m.configGeneration == 1)
    #expect(m.lparMatrix.apm == APMask([5, 6, 7, 8]))
    #expect(m.qci(.lpar)?.matrix.apm.contains(8) == true)
    #expect(m.adapters[8]?.definition.mode == .ep11)
    #expect(rc(m.tapq(APQN(8, 4), .lpar).0) == .normal)

    #expect(throws: MachineOperationError.alreadyPresent("adapter", 5)) { try m.addAdapter(.init(apid: 5)) }
    #expect(throws: MachineOperationError.outOfRange("adapter", 85, 84)) { try m.addAdapter(.init(apid: 85)) }
    #expect(m.configGeneration == 1)

    try m.addAdapter(.init(apid: 84, configured: false))
    #expect(rc(m.tapq(APQN(84, 4), .lpar).0) == .deconfigured)
    #expect(m.configGeneration == 2)

    _ = m.nqap(q54, psmid: 1, payload: [], guest1)
    try m.removeAdapter(5)
    #expect(m.configGeneration == 3)
    #expect(m.adapters[5] == nil)
    #expect(!m.lparMatrix.apm.contains(5))
    #expect(rc(m.tapq(q54, .lpar).0) == .queueNotAvailable)
    #expect(throws: MachineOperationError.noSuchAdapter(5)) { try m.removeAdapter(5) }
    #expect(m.configGeneration == 3)

    try m.addAdapter(.init(apid: 5))
    #expect(m.queueState(q54).isEmpty && m.queueState(q54).owner == nil)
    _ = m.dqap(q54, guest2)
    #expect(m.leaks.isEmpty)
  }

  @Test("add and remove usage domains")
  func usageDomains() throws {
    let m = labMachine()
    try m.addUsageDomain(0x10)
    #expect(m.configGeneration == 1)
    #expect(m.usageDomains == APMask([4, 0x10, 0x47]))
    #expect(m.qci(.lpar)?.matrix.aqm == APMask([4, 0x10, 0x47]))
    #expect(rc(m.tapq(APQN(5, 0x10), .lpar).0) == .normal)
    #expect(throws: MachineOperationError.alreadyPresent("usage domain", 0x10)) { try m.addUsageDomain(0x10) }
    #expect(throws: MachineOperationError.outOfRange("domain", 85, 84)) { try m.addUsageDomain(85) }
    #expect(m.configGeneration == 1)

    _ = m.nqap(q54, psmid: 1, payload: [], guest1)
    try m.removeUsageDomain(4)
    #expect(m.configGeneration == 2)
    #expect(rc(m.tapq(q54, .lpar).0) == .queueNotAvailable)
    #expect(throws: MachineOperationError.notPresent("usage domain", 4)) { try m.removeUsageDomain(4) }
    #expect(m.configGeneration == 2)
    try m.addUsageDomain(4)
    #expect(m.queueState(q54).isEmpty && m.queueState(q54).owner == nil)
    #expect(m.configGeneration == 3)
  }

  @Test("add and remove control domains")
  func controlDomains() throws {
    let m = labMachine()
    try m.addControlDomain(0x10)
    #expect(m.configGeneration == 1)
    #expect(m.qci(.lpar)?.matrix.adm == APMask([4, 0x10, 0x47, 0x50]))
    // A control domain is not a usage domain: no queue.
    #expect(rc(m.tapq(APQN(5, 0x10), .lpar).0) == .queueNotAvailable)
    #expect(throws: MachineOperationError.alreadyPresent("control domain", 0x10)) {
      try m.addControlDomain(0x10)
    }
    #expect(throws: MachineOperationError.outOfRange("domain", 85, 84)) { try m.addControlDomain(85) }
    try m.removeControlDomain(0x50)
    #expect(m.controlDomains == APMask([4, 0x10, 0x47]))
    #expect(throws: MachineOperationError.notPresent("control domain", 0x50)) {
      try m.removeControlDomain(0x50)
    }
    #expect(m.configGeneration == 2)
    // Removing a control domain leaves the usage domain's queues alone.
    try m.removeControlDomain(4)
    #expect(rc(m.tapq(q54, .lpar).0) == .normal)
    #expect(m.configGeneration == 3)
  }

  @Test("operation error texts name adapters and domains in 0x-hex and say the range")
  func operationErrorText() {
    #expect(
      MachineOperationError.noSuchAdapter(0x63).description
        == "adapter 0x63 is not in the LPAR's configuration (`apvirt status` lists its adapters)")
    #expect(
      MachineOperationError.outOfRange("domain", 300, 255).description
        == "domain 0x12c is out of range: this machine's domains are 0x00-0xff (its Nd)")
    #expect(
      MachineOperationError.outOfRange("adapter", 0x63, 0x54).description
        == "adapter 0x63 is out of range: this machine's adapters are 0x00-0x54 (its Na)")
    #expect(
      MachineOperationError.alreadyPresent("usage domain", 0x10).description
        == "usage domain 0x10 is already in the LPAR's configuration")
    #expect(
      MachineOperationError.notPresent("control domain", 0x50).description
        == "control domain 0x50 is not in the LPAR's configuration")
  }

  @Test("every operation on an adapter or domain beyond Na or Nd is refused with the range")
  func beyondTheMachine() {
    let m = labMachine()
    let before = m.lparMatrix
    #expect(throws: MachineOperationError.outOfRange("adapter", 85, 84)) { try m.setConfigured(85, true) }
    #expect(throws: MachineOperationError.outOfRange("adapter", 85, 84)) { try m.setCheckstopped(85, true) }
    #expect(throws: MachineOperationError.outOfRange("adapter", 85, 84)) { try m.removeAdapter(85) }
    #expect(throws: MachineOperationError.outOfRange("domain", 85, 84)) { try m.removeUsageDomain(85) }
    #expect(throws: MachineOperationError.outOfRange("domain", 85, 84)) { try m.removeControlDomain(85) }
    #expect(m.lparMatrix == before && m.configGeneration == 0)
  }

  // MARK: Bookkeeping

  @Test("instruction counters")
  func counters() {
    let m = labMachine()
    _ = m.tapq(q54, .lpar)
    _ = m.tapq(APQN(9, 9), .lpar)
    _ = m.nqap(q54, psmid: 1, payload: [], .lpar)
    _ = m.dqap(q54, .lpar)
    m.zapq(q54, .lpar)
    m.rapq(q54, .lpar)
    _ = m.aqic(q54, enable: false, notificationAddress: 0, .lpar)
    _ = m.qci(.lpar)
    #expect(
      m.instructionCounts == ["TAPQ": 2, "NQAP": 1, "DQAP": 1, "ZAPQ": 1, "RAPQ": 1, "AQIC": 1, "QCI": 1])
  }

  @Test("the embedded default machine")
  func embeddedDefault() throws {
    let m = APMachine(definition: .embeddedDefault)
    #expect(m.adapters.count == 12)
    #expect(m.lparMatrix == APMatrix(apm: APMask(0...11), aqm: .all(), adm: .all()))
    let (s, i) = m.tapq(APQN(0x0b, 0xff), .lpar)
    #expect(rc(s) == .normal && i?.mode == .accel && i?.type == .cex8)
    #expect(m.tapq(APQN(0x06, 0), .lpar).1?.mode == .ep11)
    #expect(rc(m.tapq(APQN(0x0c, 0), .lpar).0) == .queueNotAvailable)
    let untouched = m.queueState(APQN(0, 0))
    #expect(untouched.isEmpty && untouched.owner == nil && untouched.zeroizeCount == 0)
  }
}
