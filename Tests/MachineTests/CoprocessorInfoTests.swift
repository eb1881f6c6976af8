import APModel
import Foundation
import Machine
import Testing

@Suite("Machine definitions: what coprocessors report (serial, master keys, EP11 module and domains)")
struct CoprocessorInfoTests {
  @Test("defaults derive from the adapter number: the same every time, different between adapters")
  func defaults() {
    let d = MachineDefinition.embeddedDefault
    let again = MachineDefinition.embeddedDefault
    #expect(d == again)
    let a5 = d.adapters[5].masterKeys[4]
    guard case .valid(let aes) = a5.aes.current, case .valid(let asym) = a5.asym.current else {
      Issue.record("adapter 05's current master keys are valid by default")
      return
    }
    #expect(aes.count == 8 && asym.count == 16)
    #expect(aes == [0x78, 0x8f, 0xde, 0x49, 0x3e, 0x59, 0x65, 0x3d])
    #expect(a5.aes.new == .empty && a5.aes.old == .invalid)
    #expect(d.adapters[5].masterKeys[0xab] == a5)
    #expect(d.adapters[4].masterKeys[4] != a5)
    let e6 = d.adapters[6]
    #expect(e6.ep11Module == EP11ModuleInfo(apiOrdinal: 8, firmwareMajor: 8, firmwareMinor: 0))
    guard case .valid(let wk) = e6.ep11Domains[4].current else {
      Issue.record("adapter 06's current wrapping key is valid by default")
      return
    }
    #expect(wk.count == 32 && e6.ep11Domains[4].new == .empty && e6.ep11Domains[4].opModes.isEmpty)
    #expect(e6.serial == "93AADF06")
    #expect(MachineDefinition.Adapter(apid: 7, type: .cex6, mode: .ep11).ep11Module.apiOrdinal == 6)
  }

  @Test("TAPQ's function bits: S, the mode's (D; A with M and C; X), N with APXA only")
  func tapqFunctions() throws {
    for apxa in [true, false] {
      let m = APMachine(
        definition: MachineDefinition(
          name: "t", apxa: apxa, crycbFormat: apxa ? 2 : 0,
          adapters: [.init(apid: 1, mode: .cca), .init(apid: 2, mode: .accel), .init(apid: 3, mode: .ep11)],
          usageDomains: APMask([1]), controlDomains: APMask([1])))
      let n: UInt32 = apxa ? 0x0200_0000 : 0
      for (apid, bits) in [(1, UInt32(0x9000_0000)), (2, 0xE800_0000), (3, 0x8400_0000)] {
        #expect(
          try #require(m.tapq(APQN(apid, 1), .lpar).1).functions == bits | n, "adapter \(apid) apxa \(apxa)")
      }
    }
  }

  @Test("the queries answer only a reachable APQN of their mode")
  func queries() {
    let m = labMachine()
    #expect(m.ccaQueryCryptoFacility(q54, .lpar)?.serial == "93AADF05")
    #expect(m.ccaQueryCryptoFacility(q64, .lpar) == nil)
    #expect(m.ep11ModuleQuery(q64, .lpar)?.module.apiOrdinal == 7)
    #expect(m.ep11DomainQuery(q54, .lpar) == nil)
    // Outside the LPAR's usage domains, or outside a guest's APCB: nothing.
    #expect(m.ccaQueryCryptoFacility(APQN(5, 5), .lpar) == nil)
    let narrow = APAuthority.guest(vm: 3, apcb: APMatrix(apm: APMask([6]), aqm: APMask([4]), adm: APMask()))
    #expect(m.ccaQueryCryptoFacility(q54, narrow) == nil)
    #expect(m.ep11DomainQuery(q64, narrow) != nil)
  }

  @Test("YAML: serial, domains with default and id lists, api-ordinal, fw-version, op-modes")
  func yaml() throws {
    let wk = String(repeating: "5a", count: 32)
    let yaml = """
      adapters:
        - apid: 1
          serial: 93LAB001
          domains:
            default: { aes-cur: valid 0x0123456789ABCDEF, apka-new: partial, asym-old: unreported }
            "4, 6": { aes-new: full 1111111111111111, aes-cur: invalid }
            6: { apka-cur: valid 0x2222222222222222 }
        - apids: 2-3
          mode: ep11
          api-ordinal: 0
          fw-version: "7.15"
          op-modes: FIPS2021
          domains:
            default: { wk-new: uncommitted 0x\(wk) }
            5: { wk-cur: invalid, op-modes: [bsi2009, FIPS2009] }
      """
    let d = try MachineDefinitionLoader.parse(yaml: yaml, source: "t")
    let cca = d.adapters[0]
    #expect(cca.serial == "93LAB001")
    let all = cca.masterKeys[0]
    #expect(all.aes == CCAMasterKey(current: .valid([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef])))
    #expect(all.apka.new == .partial && all.asym.old == .unreported)
    // What `default` leaves out is the adapter's own default.
    #expect(all.apka.current == MachineDefinition.Adapter(apid: 1).masterKeys[0].apka.current)
    let four = cca.masterKeys[4]
    #expect(four.aes == CCAMasterKey(new: .full(Array(repeating: 0x11, count: 8)), current: .invalid))
    #expect(four.apka == all.apka && four.asym == all.asym)
    let six = cca.masterKeys[6]
    #expect(six.aes == four.aes && six.apka.current == .valid(Array(repeating: 0x22, count: 8)))
    #expect(cca.masterKeys[5] == all)
    for ep in d.adapters[1...2] {
      #expect(
        ep.ep11Module
          == EP11ModuleInfo(apiOrdinal: 0, firmwareMajor: 7, firmwareMinor: 15, opModes: [.fips2021]))
      #expect(ep.ep11Domains[0].new == .uncommitted(Array(repeating: 0x5a, count: 32)))
      #expect(ep.ep11Domains[0].opModes == [.fips2021])
      #expect(ep.ep11Domains[5].current == .invalid && ep.ep11Domains[5].opModes == [.bsi2009, .fips2009])
      #expect(ep.ep11Domains[5].new == ep.ep11Domains[0].new)
    }
    // Two adapters of one entry share what it says, and keep their own defaults otherwise.
    #expect(d.adapters[1].ep11Domains[0].current != d.adapters[2].ep11Domains[0].current)
  }

  @Test(
    "a malformed coprocessor field is refused with its key and line",
    arguments: [
      ("adapters:\n  - { apid: 1, serial: 123456789 }", ["adapters[0].serial", "1 to 8", "line 2"]),
      (
        "adapters:\n  - { apid: 1, mode: ep11, serial: 12345678901234567 }",
        ["adapters[0].serial", "1 to 16"]
      ),
      ("adapters:\n  - { apid: 1, serial: \"93 AA\" }", ["adapters[0].serial", "visible ASCII"]),
      (
        "adapters:\n  - { apid: 1, mode: accel, domains: {} }",
        ["adapters[0].domains", "accelerator", "line 2"]
      ),
      (
        "adapters:\n  - { apid: 1, mode: accel, op-modes: [FIPS2009] }",
        ["adapters[0].op-modes", "accelerator"]
      ),
      ("adapters:\n  - { apid: 1, api-ordinal: 4 }", ["adapters[0].api-ordinal", "EP11", "line 2"]),
      ("adapters:\n  - { apid: 1, mode: ep11, api-ordinal: x }", ["adapters[0].api-ordinal", "number"]),
      (
        "adapters:\n  - { apid: 1, mode: ep11, api-ordinal: 4294967296 }",
        ["adapters[0].api-ordinal", "4294967296"]
      ),
      (
        "adapters:\n  - { apid: 1, mode: ep11, fw-version: 7 }",
        ["adapters[0].fw-version", "MAJOR.MINOR", "line 2"]
      ),
      (
        "adapters:\n  - { apid: 1, mode: ep11, fw-version: \"7.256\" }",
        ["adapters[0].fw-version", "0 to 255"]
      ),
      (
        "adapters:\n  - { apid: 1, mode: ep11, op-modes: [FIPS2099] }",
        ["adapters[0].op-modes", "'FIPS2099'", "line 2", "FIPS2009, BSI2009"]
      ),
      ("adapters:\n  - { apid: 1, domains: [1] }", ["adapters[0].domains", "mapping", "line 2"]),
      ("adapters:\n  - { apid: 1, domains: { 300: {} } }", ["adapters[0].domains", "300"]),
      ("adapters:\n  - { apid: 1, domains: { often: {} } }", ["adapters[0].domains", "'often'"]),
      (
        "adapters:\n  - { apid: 1, domains: { default: valid } }", ["adapters[0].domains.default", "mapping"]
      ),
      (
        "adapters:\n  - apid: 1\n    domains:\n      default: { aes-now: invalid }",
        ["adapters[0].domains.default", "'aes-now'", "line 4", "aes-new, aes-cur"]
      ),
      (
        "adapters:\n  - apid: 1\n    domains:\n      4: { aes-cur: valid }",
        ["adapters[0].domains.4.aes-cur", "verification pattern", "16 hex digits", "line 4"]
      ),
      (
        "adapters:\n  - apid: 1\n    domains:\n      4: { aes-cur: valid 0x1234 }",
        ["adapters[0].domains.4.aes-cur", "16 hex digits"]
      ),
      (
        "adapters:\n  - apid: 1\n    domains:\n      4: { asym-cur: valid 0x0123456789abcdef }",
        ["adapters[0].domains.4.asym-cur", "32 hex digits"]
      ),
      (
        "adapters:\n  - apid: 1\n    domains:\n      4: { aes-new: valid 0x0123456789abcdef }",
        ["adapters[0].domains.4.aes-new", "'valid 0x0123456789abcdef'", "'empty', 'partial', 'full 0x'"]
      ),
      (
        "adapters:\n  - apid: 1\n    domains:\n      4: { aes-old: invalid 0x0123456789abcdef }",
        ["adapters[0].domains.4.aes-old", "no pattern", "'invalid' alone"]
      ),
      (
        "adapters:\n  - apid: 1\n    domains:\n      4: { aes-cur: valid 0x0123456789abcdeg }",
        ["adapters[0].domains.4.aes-cur", "hex digits"]
      ),
      (
        "adapters:\n  - apid: 1\n    mode: ep11\n    domains:\n      default: { aes-cur: invalid }",
        ["adapters[0].domains.default", "'aes-cur'", "wk-cur, wk-new, op-modes", "line 5"]
      ),
      (
        "adapters:\n  - apid: 1\n    mode: ep11\n    domains:\n      default: { wk-cur: valid 0x00 }",
        ["adapters[0].domains.default.wk-cur", "64 hex digits"]
      ),
      (
        "adapters:\n  - apid: 1\n    mode: ep11\n    domains:\n      default: { wk-new: committed }",
        ["adapters[0].domains.default.wk-new", "64 hex digits"]
      ),
      (
        "adapters:\n  - apid: 1\n    mode: ep11\n    domains:\n      default: { wk-new: partial }",
        ["adapters[0].domains.default.wk-new", "'empty', 'uncommitted 0x'"]
      ),
      (
        "adapters:\n  - apid: 1\n    mode: ep11\n    domains:\n      2: { op-modes: [SIGG, nope] }",
        ["adapters[0].domains.2.op-modes", "'nope'"]
      ),
    ])
  func refused(yaml: String, fragments: [String]) throws {
    let error = try #require(loadError(yaml))
    for f in fragments {
      #expect(error.message.contains(f), "\(error.message) should mention \(f)")
    }
  }
}
