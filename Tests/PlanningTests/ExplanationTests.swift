import APModel
import Planning
import Testing

@Suite("Explanation")
struct ExplanationTests {
  @Test("a subject is an APQN, a UUID or an echo command")
  func subjects() throws {
    #expect(try ExplainSubject.parse("05.0004") == .apqn(APQN(5, 4)))
    #expect(try ExplainSubject.parse(uuidA) == .mdev(uuidA))
    #expect(try ExplainSubject.parse("echo 5 > bus/ap/apmask") == .write(SysfsWrite(.apmask, echo: "5")))
    #expect(throws: SysfsWrite.ParseError.self) { try ExplainSubject.parse("card05") }
  }

  @Test("an APQN the host owns: the mask bits and how to free it")
  func hostAPQN() throws {
    let s = try smallHost().snapshot()
    let lines = Explanation.lines(.apqn(APQN(3, 4)), in: s)
    #expect(lines[0] == "03.0004: host: bound to cex4queue")
    #expect(
      lines[1]
        == "  apmask bit 3 and aqmask bit 4 are both 1: reserved for the host's default (zcrypt) drivers")
    #expect(
      lines.last?.contains("'echo -3 > bus/ap/apmask' frees adapter 03 on every domain (2 queues)") == true)
  }

  @Test("an APQN in a guest, and an over-provisioned one")
  func mdevAPQNs() throws {
    let s = try smallHost().snapshot()
    let a = Explanation.lines(.apqn(APQN(1, 4)), in: s)
    #expect(a[0] == "01.0004: held by mdev \(uuidA), used by its guest; bound to vfio_ap")
    #expect(a.contains("  its guest_matrix has it, and its guest uses it"))
    let o = Explanation.lines(.apqn(APQN(7, 5)), in: s)
    #expect(o[0] == "07.0005: held by mdev \(uuidB); no queue device (not in the host's configuration)")
    #expect(o.contains("  not in the host's AP configuration: adapter 07 is not in ap_adapter_mask"))
    #expect(
      o.contains("  not in its guest_matrix: adapter 07 is filtered out: not in the host's AP configuration"))
  }

  @Test("an mdev: why an adapter is missing from guest_matrix")
  func mdevFiltered() throws {
    var s = try smallHost().snapshot()
    s.mdevs[1].matrix.aqm = APMask([4, 5])
    s.mdevs[1].guestMatrix = APMatrix(aqm: APMask([4, 5]))
    let lines = Explanation.lines(.mdev(uuidB), in: s)
    #expect(lines[0] == "mdev \(uuidB): no guest uses it")
    #expect(lines.contains("  adapter 02 is not in guest_matrix: queue 02.0004 is unbound, not to vfio_ap"))
    #expect(lines.contains("  adapter 07 is not in guest_matrix: not in the host's AP configuration"))
    #expect(
      lines.contains("  control domain 0006: the guest gets it (the host's ap_control_domain_mask has it)"))
  }

  @Test("a write: its errno, strerror's words and the reason")
  func write() throws {
    let s = try smallHost().snapshot()
    let lines = Explanation.lines(.write(SysfsWrite(.mdev(uuidA, .assignAdapter), echo: "3")), in: s)
    #expect(
      lines == [
        "echo 3 > devices/vfio_ap/matrix/\(uuidA)/assign_adapter",
        "  fails with EADDRNOTAVAIL (Cannot assign requested address):",
        "    03.0004 is reserved for the host by apmask bit 3 and aqmask bit 4",
        "  give them to vfio_ap first: 'echo -3 > bus/ap/apmask' (whole adapters) or 'echo -4 > bus/ap/aqmask' (whole domains)",
      ])
    let ok = Explanation.lines(.write(SysfsWrite(.mdev(uuidA, .assignDomain), echo: "5")), in: s)
    #expect(ok[1] == "  succeeds:")
    #expect(ok.contains("    its guest gains 01.0005"))
  }
}
