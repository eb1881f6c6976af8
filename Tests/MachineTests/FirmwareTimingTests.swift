import APModel
import Machine
import Testing

/// The lab machine with adapter 05's resets taking 150 ms and its AQIC 5 ms.
func slowMachine() throws -> APMachine {
  let d = try MachineDefinitionLoader.parse(
    yaml: """
      name: slow
      na: 84
      nd: 84
      usage-domains: 4,0x47
      adapters:
        - { apid: 5, reset-latency: 150ms, irq-latency: 5ms }
        - { apid: 6 }
      """, source: "slow.yaml")
  return APMachine(definition: d)
}

@Suite("APMachine: firmware timing and injected faults")
struct FirmwareTimingTests {
  @Test("reset-latency and irq-latency are read per adapter; absent, they are instant")
  func latenciesFromYAML() throws {
    let m = try slowMachine()
    #expect(m.adapters[5]?.resetLatency == 150_000_000)
    #expect(m.adapters[5]?.irqLatency == 5_000_000)
    #expect(m.adapters[6]?.resetLatency == 0 && m.adapters[6]?.irqLatency == 0)
    let units = try MachineDefinitionLoader.parse(
      yaml: "adapters: [{ apid: 1, reset-latency: 500us, irq-latency: 20 }, { apid: 2, reset-latency: 2s }]",
      source: "u.yaml")
    #expect(units.adapters.map(\.resetLatency) == [500_000, 2_000_000_000])
    #expect(units.adapters[0].irqLatency == 20_000_000)
  }

  @Test("a malformed latency is refused with its key and line")
  func malformedLatency() {
    let e = loadError(
      """
      name: bad
      adapters:
        - { apid: 1 }
        - { apid: 2, reset-latency: soon }
      """)
    #expect(
      e?.message
        == "'adapters[1].reset-latency' must be a duration such as 150ms, 500us, 2s or 20000ns (a bare number is milliseconds) (line 4)"
    )
    #expect(
      loadError("adapters: [{ apid: 1, irq-latency: -5ms }]")?.message.hasPrefix("'adapters[0].irq-latency'")
        == true)
    #expect(loadError("adapters: [{ apid: 1, irq-latency: 2h }]") != nil)
    #expect(
      loadError("adapters: [{ apid: 1, reset-latency: 3601s }]")?.message.contains("above 1 hour") == true)
  }

  @Test("while a reset runs TAPQ answers 02, and so do another reset, NQAP, DQAP and AQIC")
  func resetLatency() throws {
    let m = try slowMachine()
    #expect(rc(m.nqap(q54, psmid: 1, payload: [1], .lpar)) == .normal)
    #expect(rc(m.zapq(q54, .lpar)) == .normal)
    #expect(rc(m.tapq(q54, .lpar).0) == .resetInProgress)
    #expect(rc(m.zapq(q54, .lpar)) == .resetInProgress)
    #expect(rc(m.nqap(q54, psmid: 2, payload: [1], .lpar)) == .resetInProgress)
    #expect(rc(m.dqap(q54, .lpar).0) == .resetInProgress)
    #expect(rc(m.aqic(q54, enable: true, notificationAddress: 0x1000, .lpar)) == .resetInProgress)
    m.advanceClock(to: 149_999_999)
    #expect(rc(m.tapq(q54, .lpar).0) == .resetInProgress)
    m.advanceClock(to: 150_000_000)
    let (s, _) = m.tapq(q54, .lpar)
    #expect(rc(s) == .normal && s.queueEmpty)
    // Another adapter's queues are instant; the clock never goes back.
    #expect(rc(m.zapq(q64, .lpar)) == .normal && rc(m.tapq(q64, .lpar).0) == .normal)
    m.advanceClock(to: 1)
    #expect(m.now == 150_000_000)
  }

  @Test("while an AQIC runs TAPQ shows interruptions still disabled")
  func irqLatency() throws {
    let m = try slowMachine()
    let on = m.aqic(q54, enable: true, notificationAddress: 0x1000, .lpar)
    #expect(rc(on) == .normal && !on.irqEnabled)
    #expect(!m.tapq(q54, .lpar).0.irqEnabled)
    m.advanceClock(to: 5_000_000)
    #expect(m.tapq(q54, .lpar).0.irqEnabled)
    #expect(!m.aqic(q54, enable: false, notificationAddress: 0, .lpar).irqEnabled)
  }

  @Test("latencies set at run time apply to the resets after")
  func setLatency() throws {
    let m = labMachine()
    try m.setLatency(5, reset: 40_000_000, irq: nil)
    #expect(m.adapters[5]?.resetLatency == 40_000_000 && m.adapters[5]?.irqLatency == 0)
    #expect(rc(m.rapq(q54, .lpar)) == .normal)
    #expect(rc(m.tapq(q54, .lpar).0) == .resetInProgress)
    m.advanceClock(to: 40_000_000)
    #expect(rc(m.tapq(q54, .lpar).0) == .normal)
    #expect(throws: MachineOperationError.noSuchAdapter(9)) { try m.setLatency(9, reset: 1, irq: 1) }
  }

  @Test("busy and reset-in-progress answer the next N resets; a queue's fault before its adapter's")
  func injectedCodes() throws {
    let m = labMachine()
    try m.injectFault(.busy, on: .queue(q54), count: 2)
    try m.injectFault(.resetInProgress, on: .adapter(5), count: 1)
    #expect(rc(m.nqap(q54, psmid: 1, payload: [1], .lpar)) == .normal)
    #expect(rc(m.zapq(q54, .lpar)) == .busy)
    #expect(rc(m.rapq(q54, .lpar)) == .busy)
    // Busy did nothing: the reply is still there.
    #expect(rc(m.tapq(q54, .lpar).0) == .normal && m.tapq(q54, .lpar).0.repliesWaiting)
    // Then the adapter's: 02, and the queue is reset.
    #expect(rc(m.zapq(q54, .lpar)) == .resetInProgress)
    #expect(m.queueState(q54).isEmpty)
    #expect(rc(m.zapq(q54, .lpar)) == .normal)
    #expect(m.faults.isEmpty)
    try m.injectFault(.busy, on: .adapter(5), count: 3)
    #expect(m.clearFault(on: .adapter(5)) == .init(fault: .busy, remaining: 3))
    #expect(rc(m.zapq(q547, .lpar)) == .normal)
    #expect(throws: MachineOperationError.invalidCount(0)) {
      try m.injectFault(.busy, on: .adapter(5), count: 0)
    }
    #expect(throws: MachineOperationError.notPresent("usage domain", 9)) {
      try m.injectFault(.busy, on: .queue(APQN(5, 9)), count: 1)
    }
  }

  @Test("checkstop-during-reset: the reset is accepted, then every instruction answers 04")
  func checkstopDuringReset() throws {
    let m = labMachine()
    try m.injectFault(.checkstopDuringReset, on: .adapter(5), count: 1)
    #expect(rc(m.zapq(q54, .lpar)) == .normal)
    #expect(m.adapters[5]?.checkstopped == true)
    let (s, info) = m.tapq(q54, .lpar)
    #expect(rc(s) == .checkstopped && info?.checkstopped == true)
    #expect(rc(m.zapq(q547, .lpar)) == .checkstopped)
  }
}
