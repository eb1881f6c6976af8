import APModel
import Machine
import SystemPackage
import Testing

@testable import HostKernel

/// The embedded default machine with adapter 05's resets taking `reset` ns and its interrupt
/// enabling `irq` ns.
func slowHost(reset: UInt64, irq: UInt64 = 0) -> HostKernel {
  var d = MachineDefinition.embeddedDefault
  d.adapters = d.adapters.map { a in
    var a = a
    if a.apid == 5 {
      a.resetLatency = reset
      a.irqLatency = irq
    }
    return a
  }
  return HostKernel(definition: d)
}

let ms: UInt64 = 1_000_000
let q0504 = "/devices/ap/card05/05.0004"

/// The kernel log's lines since `seq`.
func logSince(_ k: HostKernel, _ seq: UInt64) -> [String] { k.log.messages(from: seq) }

@Suite("HostKernel: firmware timing (reset and interrupt latency) and injected faults")
struct FirmwareTimingKernelTests {
  @Test("the defaults stay instant: reset and interrupt read as before, without the clock moving")
  func instantDefaults() {
    let k = HostKernel()
    #expect(cat(k, q0504 + "/reset") == "No Reset Timer set.\n")
    #expect(echo(k, "1", q0504 + "/reset") == nil)
    #expect(cat(k, q0504 + "/reset") == "No Reset Timer set.\n")
    #expect(cat(k, q0504 + "/interrupt") == "Interrupts enabled.\n")
    #expect(k.now == 0)
  }

  @Test("a zcrypt queue's reset reads Reset in progress. until the bus's poll sees it done")
  func zcryptResetLatency() {
    let k = slowHost(reset: 150 * ms, irq: 5 * ms)
    // The probe at boot resets every queue of the adapter too.
    #expect(cat(k, q0504 + "/reset") == "Reset in progress.\n")
    k.advance(by: 155 * ms)
    #expect(cat(k, q0504 + "/reset") == "No Reset Timer set.\n")
    #expect(echo(k, "1", q0504 + "/reset") == nil)
    #expect(cat(k, q0504 + "/reset") == "Reset in progress.\n")
    #expect(cat(k, q0504 + "/interrupt") == "Interrupts disabled.\n")
    k.advance(by: 149 * ms)
    #expect(cat(k, q0504 + "/reset") == "Reset in progress.\n")
    k.advance(by: 1 * ms)
    #expect(cat(k, q0504 + "/reset") == "No Reset Timer set.\n")
    #expect(cat(k, q0504 + "/interrupt") == "Enable Interrupt pending.\n")
    k.advance(by: 4 * ms)
    #expect(cat(k, q0504 + "/interrupt") == "Enable Interrupt pending.\n")
    k.advance(by: 1 * ms)
    #expect(cat(k, q0504 + "/interrupt") == "Interrupts enabled.\n")
    // Other adapters stay instant.
    #expect(echo(k, "1", "/devices/ap/card06/06.0004/reset") == nil)
    #expect(cat(k, "/devices/ap/card06/06.0004/reset") == "No Reset Timer set.\n")
  }

  @Test("a latency set at run time: the next reset takes it")
  func runtimeLatency() throws {
    let k = HostKernel()
    try k.machine.setLatency(5, reset: 40 * ms, irq: nil)
    #expect(echo(k, "1", q0504 + "/reset") == nil)
    #expect(cat(k, q0504 + "/reset") == "Reset in progress.\n")
    #expect(k.machine.tapq(APQN(5, 4), .lpar).0.responseCode == .resetInProgress)
    k.advance(by: 40 * ms)
    #expect(cat(k, q0504 + "/reset") == "No Reset Timer set.\n")
    #expect(cat(k, q0504 + "/interrupt") == "Interrupts enabled.\n")
  }

  @Test("a RAPQ answered busy stops the queue's state machine: the reset stays in progress")
  func busyRAPQ() throws {
    let k = HostKernel()
    try k.machine.injectFault(.busy, on: .queue(APQN(5, 4)), count: 1)
    #expect(echo(k, "1", q0504 + "/reset") == nil)
    k.advance(by: 1_000 * ms)
    #expect(cat(k, q0504 + "/reset") == "Reset in progress.\n")
    // Written again, the next RAPQ goes through.
    #expect(echo(k, "1", q0504 + "/reset") == nil)
    #expect(cat(k, q0504 + "/reset") == "No Reset Timer set.\n")
  }

  @Test("vfio_ap's unassign waits 20 ms at a time with the Waited notice, and the clock moves by it")
  func vfioResetWaits() throws {
    let k = bootWithFreedAdapters()
    let m = makeMdev(k, uuid1, adapters: [5], domains: [4])
    try k.machine.setLatency(5, reset: 100 * ms, irq: nil)
    let t0 = k.now
    let seq = k.log.nextSeq
    #expect(echo(k, "4", mdevPath(uuid1) + "/unassign_domain") == nil)
    #expect(
      logSince(k, seq)
        == [20, 40, 60, 80].map { "vfio_ap: Waited \($0)ms for reset of queue 05.0004 (2, 1, 0)" })
    #expect(k.now == t0 + 100 * ms)
    #expect(k.machine.tapq(APQN(5, 4), .lpar).0.responseCode == .normal)
    _ = m
  }

  @Test("the notice is rate-limited as pr_notice_ratelimited: 10 in 5 s, then how many were not")
  func waitNoticeRateLimit() throws {
    let k = bootWithFreedAdapters()
    makeMdev(k, uuid1, adapters: [5], domains: [4])
    try k.machine.setLatency(5, reset: 300 * ms, irq: nil)
    let seq = k.log.nextSeq
    #expect(echo(k, "4", mdevPath(uuid1) + "/unassign_domain") == nil)
    let first = logSince(k, seq)
    #expect(first.count == 10)
    #expect(first.last == "vfio_ap: Waited 200ms for reset of queue 05.0004 (2, 1, 0)")
    // Five seconds on, the next notice first says how many were suppressed (4: 220-280 ms).
    k.advance(by: 5_000 * ms)
    #expect(echo(k, "4", mdevPath(uuid1) + "/assign_domain") == nil)
    let seq2 = k.log.nextSeq
    #expect(echo(k, "4", mdevPath(uuid1) + "/unassign_domain") == nil)
    let second = logSince(k, seq2)
    #expect(second.first == "apq_reset_check: 4 callbacks suppressed")
    #expect(second.dropFirst().first == "vfio_ap: Waited 20ms for reset of queue 05.0004 (2, 1, 0)")
  }

  @Test("an injected busy ZAPQ is issued again after the next TAPQ")
  func busyZAPQ() throws {
    let k = bootWithFreedAdapters()
    makeMdev(k, uuid1, adapters: [5], domains: [4])
    try k.machine.injectFault(.busy, on: .queue(APQN(5, 4)), count: 2)
    let zapqs = k.machine.instructionCounts["ZAPQ", default: 0]
    let t0 = k.now
    #expect(echo(k, "4", mdevPath(uuid1) + "/unassign_domain") == nil)
    #expect(k.machine.instructionCounts["ZAPQ", default: 0] == zapqs + 3)
    #expect(k.now == t0 + 60 * ms)
    #expect(k.machine.faults.isEmpty)
  }

  @Test("a checkstop during the reset: the failed verify, the ZAPQ warning, and VFIO_DEVICE_RESET EIO")
  func checkstopDuringReset() throws {
    let k = bootWithFreedAdapters()
    let m = makeMdev(k, uuid1, adapters: [5], domains: [4, 5])
    let vm = k.kvm.createVM(name: "g")
    try k.vfioAP.openDevice(m, kvm: vm)
    try k.vfioAP.resetDevice(m)
    try k.machine.injectFault(.checkstopDuringReset, on: .adapter(5), count: 1)
    let seq = k.log.nextSeq
    #expect(throws: Errno.ioError) { try k.vfioAP.resetDevice(m) }
    #expect(
      logSince(k, seq) == [
        "vfio_ap: PQAP/ZAPQ for 05.0005 failed with invalid rc=4",
        "vfio_ap: failed to verify reset of queue 05.0004: TAPQ rc=4",
      ])
    #expect(k.machine.adapters[5]?.checkstopped == true)
    // The host sees the checkstop at its next scan.
    k.advance(by: 30_000 * ms)
    #expect(cat(k, "/devices/ap/card05/chkstop") == "1\n")
  }

  @Test("one queue checkstopped after its ZAPQ was accepted: the warning, and VFIO_DEVICE_RESET succeeds")
  func checkstopDuringTheOnlyReset() throws {
    // Linux 6.6+: `apq_reset_check` returns on the TAPQ's 04 without touching `reset_status`,
    // which holds the ZAPQ's 00, so `vfio_ap_mdev_reset_queues` finds nothing to fail.
    let k = bootWithFreedAdapters()
    let m = makeMdev(k, uuid1, adapters: [5], domains: [4])
    let vm = k.kvm.createVM(name: "g")
    try k.vfioAP.openDevice(m, kvm: vm)
    try k.machine.injectFault(.checkstopDuringReset, on: .adapter(5), count: 1)
    let seq = k.log.nextSeq
    try k.vfioAP.resetDevice(m)
    #expect(logSince(k, seq) == ["vfio_ap: failed to verify reset of queue 05.0004: TAPQ rc=4"])
    #expect(k.machine.adapters[5]?.checkstopped == true)
    // The queue stays passable: the guest keeps adapter 5 until the host's scan sees the checkstop.
    #expect(cat(k, mdevPath(uuid1) + "/guest_matrix") == "05.0004\n")
  }

  @Test("a ZAPQ answering 03 (the adapter deconfigured under the host) is no reset failure")
  func deconfiguredZAPQ() throws {
    let k = bootWithFreedAdapters()
    let m = makeMdev(k, uuid1, adapters: [5], domains: [4, 5])
    let vm = k.kvm.createVM(name: "g")
    try k.vfioAP.openDevice(m, kvm: vm)
    try k.machine.setConfigured(5, false)
    let seq = k.log.nextSeq
    try k.vfioAP.resetDevice(m)
    #expect(logSince(k, seq) == [])
  }

  @Test("a reset-in-progress ZAPQ is waited for and issued again")
  func resetInProgressZAPQ() throws {
    let k = bootWithFreedAdapters()
    makeMdev(k, uuid1, adapters: [5], domains: [4])
    try k.machine.setLatency(5, reset: 30 * ms, irq: nil)
    try k.machine.injectFault(.resetInProgress, on: .queue(APQN(5, 4)), count: 1)
    let seq = k.log.nextSeq
    let t0 = k.now
    #expect(echo(k, "4", mdevPath(uuid1) + "/unassign_domain") == nil)
    // 02 at 20 ms, done at 40 ms; the ZAPQ again, its reset done by 80 ms.
    #expect(
      logSince(k, seq) == [
        "vfio_ap: Waited 20ms for reset of queue 05.0004 (2, 1, 0)",
        "vfio_ap: Waited 60ms for reset of queue 05.0004 (2, 1, 0)",
      ])
    #expect(k.now == t0 + 80 * ms)
  }
}
