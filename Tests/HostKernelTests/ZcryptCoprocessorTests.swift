import APModel
import Machine
import Testing

@testable import HostKernel

/// The names in a sysfs directory.
func names(_ k: HostKernel, _ path: String) -> Set<String> {
  Set(((try? k.sysfs.list(path)) ?? []).map(\.name))
}

/// `mkvps` of every queue of adapter 05 of the default machine: its keys derived from 0x05.
let card05MKVPs = """
  AES NEW: empty 0x0000000000000000
  AES CUR: valid 0x788fde493e59653d
  AES OLD: invalid 0x0000000000000000
  APKA NEW: empty 0x0000000000000000
  APKA CUR: valid 0x47666d1b6fcaa9e7
  APKA OLD: invalid 0x0000000000000000
  ASYM NEW: empty 0x00000000000000000000000000000000
  ASYM CUR: valid 0x74cdd16b7f0fb3c439edba15ba6d5dea
  ASYM OLD: invalid 0x00000000000000000000000000000000

  """

@Suite("zcrypt: what CCA and EP11 coprocessors report (zcrypt_cex4.c)")
struct ZcryptCoprocessorTests {
  @Test("a CCA card and queue of the default machine: serialnr, mkvps with AES, APKA and ASYM")
  func ccaOfTheDefaultMachine() {
    let k = HostKernel()
    #expect(cat(k, "/devices/ap/card05/serialnr") == "93AADF05\n")
    #expect(cat(k, "/devices/ap/card05/05.0004/mkvps") == card05MKVPs)
    // Every domain of the adapter holds the same keys by default; another adapter others.
    #expect(cat(k, "/devices/ap/card05/05.00ab/mkvps") == cat(k, "/devices/ap/card05/05.0004/mkvps"))
    #expect(cat(k, "/devices/ap/card04/04.0004/mkvps") != cat(k, "/devices/ap/card05/05.0004/mkvps"))
    #expect(try! k.sysfs.info("/devices/ap/card05/serialnr").mode == 0o444)
    #expect(try! k.sysfs.info("/devices/ap/card05/05.0004/mkvps").mode == 0o444)
    // The CCA groups only: no EP11 file.
    for f in ["API_ordinalnr", "FW_version", "op_modes"] {
      #expect(!names(k, "/devices/ap/card05").contains(f))
    }
    #expect(!names(k, "/devices/ap/card05/05.0004").contains("op_modes"))
  }

  @Test("an EP11 card and queue of the default machine: API ordinal, firmware, serial, modes, WK")
  func ep11OfTheDefaultMachine() {
    let k = HostKernel()
    #expect(cat(k, "/devices/ap/card06/API_ordinalnr") == "8\n")
    #expect(cat(k, "/devices/ap/card06/FW_version") == "8.0\n")
    // The module query's sixteen characters, blank-padded.
    #expect(cat(k, "/devices/ap/card06/serialnr") == "93AADF06        \n")
    #expect(cat(k, "/devices/ap/card06/op_modes") == "\n")
    #expect(
      cat(k, "/devices/ap/card06/06.0004/mkvps") == """
        WK CUR: valid 0x3f85c7fe3f7852646f639edcc040b8e5dfce21f83b7755ffa601bd724de89bbc
        WK NEW: empty -

        """)
    #expect(cat(k, "/devices/ap/card06/06.0004/op_modes") == "\n")
    #expect(
      names(k, "/devices/ap/card06").isSuperset(of: ["API_ordinalnr", "FW_version", "serialnr", "op_modes"]))
  }

  @Test("an accelerator has none of these files, and its ap_functions carry the 4K RSA bits")
  func accelerator() {
    let k = HostKernel()
    let card = names(k, "/devices/ap/card0a")
    let queue = names(k, "/devices/ap/card0a/0a.0004")
    #expect(card.contains("online") && queue.contains("online"))
    for f in ["serialnr", "API_ordinalnr", "FW_version", "op_modes", "mkvps"] {
      #expect(!card.contains(f) && !queue.contains(f), "\(f)")
      #expect((try? k.read("/devices/ap/card0a/\(f)")) == nil)
    }
    #expect(cat(k, "/devices/ap/card0a/ap_functions") == "0xEA000000\n")
    #expect(cat(k, "/devices/ap/card0a/0a.0004/ap_functions") == "0xEA000000\n")
  }

  @Test("ap_functions: S, the mode (D; A with M and C; X), and N only where the machine has APXA")
  func apFunctions() {
    func definition(apxa: Bool) -> MachineDefinition {
      MachineDefinition(
        name: "t", apxa: apxa, crycbFormat: apxa ? 2 : 0,
        adapters: [.init(apid: 1, mode: .cca), .init(apid: 2, mode: .accel), .init(apid: 3, mode: .ep11)],
        usageDomains: APMask([1]), controlDomains: APMask([1]))
    }
    let with = HostKernel(definition: definition(apxa: true))
    let without = HostKernel(definition: definition(apxa: false))
    for (card, w, wo) in [
      (1, "0x92000000", "0x90000000"), (2, "0xEA000000", "0xE8000000"), (3, "0x86000000", "0x84000000"),
    ] {
      #expect(cat(with, "/devices/ap/card0\(card)/ap_functions") == w + "\n")
      #expect(cat(with, "/devices/ap/card0\(card)/0\(card).0001/ap_functions") == w + "\n")
      #expect(cat(without, "/devices/ap/card0\(card)/ap_functions") == wo + "\n")
      #expect(cat(without, "/devices/ap/card0\(card)/0\(card).0001/ap_functions") == wo + "\n")
    }
  }

  @Test("serialnr is an empty line without a default domain (ap_domain -1)")
  func serialWithoutDefaultDomain() throws {
    // With every domain taken from the host's drivers at boot, ap_select_domain finds none.
    let k = HostKernel(
      machine: APMachine(definition: .embeddedDefault), parameters: KernelParameters(aqmask: "0"))
    #expect(cat(k, "/bus/ap/ap_domain") == "-1\n")
    #expect(cat(k, "/devices/ap/card05/serialnr") == "\n")
    #expect(cat(k, "/devices/ap/card06/serialnr") == "\n")
  }

  @Test("serialnr is an empty line while the card's queue at the default domain cannot take a request")
  func serialWithTheDefaultDomainsQueueUnusable() {
    let k = HostKernel()
    #expect(cat(k, "/bus/ap/ap_domain") == "0\n")
    #expect(echo(k, "0", "/devices/ap/card05/05.0000/online") == nil)
    #expect(cat(k, "/devices/ap/card05/serialnr") == "\n")
    // Its other queues are of no help: the kernel asks at the default domain.
    #expect(cat(k, "/devices/ap/card05/05.0004/online") == "1\n")
    #expect(cat(k, "/devices/ap/card04/serialnr") == "93AADF04\n")
    #expect(echo(k, "4", "/bus/ap/ap_domain") == nil)
    #expect(cat(k, "/devices/ap/card05/serialnr") == "93AADF05\n")
    #expect(echo(k, "0", "/bus/ap/ap_domain") == nil)
    #expect(echo(k, "1", "/devices/ap/card05/05.0000/online") == nil)
    #expect(cat(k, "/devices/ap/card05/serialnr") == "93AADF05\n")
    // A default-domain queue that zcrypt does not have (vfio_ap's now) is no better.
    #expect(echo(k, "-0", "/bus/ap/aqmask") == nil)
    #expect(
      try! k.sysfs.readlink("/devices/ap/card05/05.0000/driver") == "../../../../bus/ap/drivers/vfio_ap")
    #expect(cat(k, "/bus/ap/ap_domain") == "0\n")
    #expect(cat(k, "/devices/ap/card05/serialnr") == "\n")
    // An offline card takes no request either.
    #expect(echo(k, "+0", "/bus/ap/aqmask") == nil)
    #expect(cat(k, "/devices/ap/card05/serialnr") == "93AADF05\n")
    #expect(echo(k, "0", "/devices/ap/card05/online") == nil)
    #expect(cat(k, "/devices/ap/card05/serialnr") == "\n")
  }

  @Test("a failed request reads as what an empty reply shows, never as an error")
  func failedRequests() {
    let k = HostKernel()
    #expect(echo(k, "0", "/devices/ap/card05/05.0004/online") == nil)
    #expect(
      cat(k, "/devices/ap/card05/05.0004/mkvps") == """
        AES NEW: - -
        AES CUR: - -
        AES OLD: - -
        APKA NEW: - -
        APKA CUR: - -
        APKA OLD: - -
        ASYM NEW: - -
        ASYM CUR: - -
        ASYM OLD: - -

        """)
    #expect(echo(k, "0", "/devices/ap/card06/06.0004/online") == nil)
    #expect(cat(k, "/devices/ap/card06/06.0004/mkvps") == "WK CUR: - -\nWK NEW: - -\n")
    #expect(cat(k, "/devices/ap/card06/06.0004/op_modes") == "\n")
    // The card's module query takes any usable queue of the card: one offline is no matter.
    #expect(cat(k, "/devices/ap/card06/API_ordinalnr") == "8\n")
    #expect(echo(k, "0", "/devices/ap/card06/online") == nil)
    for f in ["API_ordinalnr", "FW_version", "serialnr", "op_modes"] {
      #expect(cat(k, "/devices/ap/card06/\(f)") == "\n", "\(f)")
    }
  }

  @Test("the groups come with cex4card and cex4queue and go with them")
  func groupsFollowTheDriver() {
    let k = HostKernel()
    #expect(echo(k, "-5", "/bus/ap/apmask") == nil)
    // vfio_ap's queue has no mkvps; the card keeps cex4card and its serialnr.
    #expect(!names(k, "/devices/ap/card05/05.0004").contains("mkvps"))
    #expect(names(k, "/devices/ap/card05").contains("serialnr"))
    #expect(echo(k, "+5", "/bus/ap/apmask") == nil)
    #expect(names(k, "/devices/ap/card05/05.0004").contains("mkvps"))
    #expect(echo(k, "06.0004", "/bus/ap/drivers/cex4queue/unbind") == nil)
    #expect(names(k, "/devices/ap/card06/06.0004").isDisjoint(with: ["mkvps", "op_modes"]))
  }

  @Test("values from the machine definition; a domain that differs")
  func fromTheDefinition() throws {
    let yaml = """
      name: t
      usage-domains: 1-2
      adapters:
        - apid: 1
          mode: cca
          serial: 93LAB001
          domains:
            default: { aes-cur: valid 0x0123456789abcdef, aes-old: valid 0xfedcba9876543210, apka-new: partial }
            2: { aes-new: full 0x1111111111111111, asym-cur: unreported, apka-cur: invalid }
        - apid: 3
          mode: ep11
          serial: EP11SERIAL0003
          api-ordinal: 6
          fw-version: "7.15"
          op-modes: [FIPS2021, BSI2011]
          domains:
            2: { wk-cur: invalid, wk-new: committed 0x\(String(repeating: "ab", count: 32)), op-modes: [] }
      """
    let k = HostKernel(definition: try MachineDefinitionLoader.parse(yaml: yaml, source: "t"))
    #expect(cat(k, "/devices/ap/card01/serialnr") == "93LAB001\n")
    let one = cat(k, "/devices/ap/card01/01.0001/mkvps").split(separator: "\n")
    #expect(
      one[0...5] == [
        "AES NEW: empty 0x0000000000000000", "AES CUR: valid 0x0123456789abcdef",
        "AES OLD: valid 0xfedcba9876543210", "APKA NEW: partial 0x0000000000000000",
        "APKA CUR: valid 0x\(one[4].suffix(16))", "APKA OLD: invalid 0x0000000000000000",
      ])
    #expect(one[4] != "APKA CUR: valid 0x0000000000000000")
    let two = cat(k, "/devices/ap/card01/01.0002/mkvps").split(separator: "\n")
    #expect(
      two[0...4] == [
        "AES NEW: full 0x1111111111111111", "AES CUR: valid 0x0123456789abcdef",
        "AES OLD: valid 0xfedcba9876543210", "APKA NEW: partial 0x0000000000000000",
        "APKA CUR: invalid 0x0000000000000000",
      ])
    #expect(two[7] == "ASYM CUR: - -")
    #expect(cat(k, "/devices/ap/card03/serialnr") == "EP11SERIAL0003  \n")
    #expect(cat(k, "/devices/ap/card03/API_ordinalnr") == "6\n")
    #expect(cat(k, "/devices/ap/card03/FW_version") == "7.15\n")
    #expect(cat(k, "/devices/ap/card03/op_modes") == "BSI2011 FIPS2021\n")
    #expect(cat(k, "/devices/ap/card03/03.0001/op_modes") == "BSI2011 FIPS2021\n")
    #expect(cat(k, "/devices/ap/card03/03.0001/mkvps").hasPrefix("WK CUR: valid 0x"))
    #expect(
      cat(k, "/devices/ap/card03/03.0002/mkvps")
        == "WK CUR: invalid -\nWK NEW: committed 0x\(String(repeating: "ab", count: 32))\n")
    #expect(cat(k, "/devices/ap/card03/03.0002/op_modes") == "\n")
  }

  @Test("a guest's kernel asks through its APCB: at its own default domain, its own queues")
  func aGuestAsksToo() throws {
    let k = bootWithFreedAdapters()
    let m = makeMdev(k, uuid1, adapters: [5, 6], domains: [4, 0x47], controls: [4])
    let vm = k.kvm.createVM(name: "guest1")
    let g = HostKernel(guestOn: vm.createVCPU(), clock: k.clock, profile: k.profile)
    try k.vfioAP.openDevice(m, kvm: vm)
    k.advance(by: 30_000_000_000)
    #expect(try g.read("/bus/ap/ap_domain") == "4\n")
    #expect(try g.read("/devices/ap/card05/serialnr") == "93AADF05\n")
    #expect(try g.read("/devices/ap/card05/05.0047/mkvps") == card05MKVPs)
    #expect(try g.read("/devices/ap/card06/serialnr") == "93AADF06        \n")
    #expect(try g.read("/devices/ap/card06/06.0047/mkvps").hasPrefix("WK CUR: valid 0x3f85c7fe"))
  }
}
