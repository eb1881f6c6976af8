import APModel
import Foundation
import Machine
import Testing

/// `Examples/` of the package, found from this file's path.
let examplesDirectory = URL(fileURLWithPath: #filePath)
  .deletingLastPathComponent()  // MachineTests
  .deletingLastPathComponent()  // Tests
  .deletingLastPathComponent()  // package root
  .appendingPathComponent("Examples")

func examplePath(_ name: String) -> String { examplesDirectory.appendingPathComponent(name).path }

/// The machine definitions of `Examples/`; the scenarios beside them (a top-level `machine:`
/// key) are the Scenario module's.
func exampleFiles() -> [String] {
  let names = (try? FileManager.default.contentsOfDirectory(atPath: examplesDirectory.path)) ?? []
  return names.filter { $0.hasSuffix(".yaml") && !isScenario(examplePath($0)) }.sorted()
}

func isScenario(_ path: String) -> Bool {
  let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
  return text.split(separator: "\n").contains { $0.hasPrefix("machine:") }
}

@Suite("Examples")
struct ExamplesTests {
  @Test("Examples/default.yaml is the embedded default, byte for byte")
  func defaultYAML() throws {
    let text = try String(contentsOfFile: examplePath("default.yaml"), encoding: .utf8)
    #expect(text == embeddedDefaultYAML)
    #expect(
      try MachineDefinitionLoader.load(path: examplePath("default.yaml")) == MachineDefinition.embeddedDefault
    )
  }

  @Test("the examples are there")
  func present() {
    let files = exampleFiles()
    for name in ["default.yaml", "z15-lab.yaml", "format0.yaml"] { #expect(files.contains(name)) }
  }

  @Test("each Examples/*.yaml loads and starts with a comment", arguments: exampleFiles())
  func loads(name: String) throws {
    let path = examplePath(name)
    let text = try String(contentsOfFile: path, encoding: .utf8)
    #expect(text.hasPrefix("# "))
    let d = try MachineDefinitionLoader.load(path: path)
    #expect(!d.adapters.isEmpty)
    #expect(d.adapters.allSatisfy { $0.apid <= d.na })
    #expect(d.usageDomains.last.map { $0 <= d.nd } ?? true)
    #expect(d.controlDomains.last.map { $0 <= d.nd } ?? true)
  }

  @Test("z15-lab: Na = Nd = 84, CEX7 in mixed modes, one deconfigured adapter")
  func z15Lab() throws {
    let d = try MachineDefinitionLoader.load(path: examplePath("z15-lab.yaml"))
    #expect(d.name == "z15-lab")
    #expect(d.na == 84 && d.nd == 84 && d.apxa && d.crycbFormat == 2)
    #expect(d.adapters.allSatisfy { $0.type == .cex7 })
    #expect(Set(d.adapters.map(\.mode)) == Set(AdapterMode.allCases))
    #expect(d.adapters.filter { !$0.configured }.count == 1)
    #expect(!d.usageDomains.isEmpty && d.usageDomains.count < 85)
    #expect(d.usageDomains.isSubset(of: d.controlDomains))
    // What two of its coprocessors report.
    let cca = try #require(d.adapters.first { $0.apid == 2 })
    #expect(cca.serial == "93LAB002")
    #expect(
      cca.masterKeys[4].aes
        == CCAMasterKey(current: .valid([0x9f, 0x3a, 0x51, 0xc2, 0xd4, 0xe6, 0xb7, 0x08])))
    #expect(cca.masterKeys[0x47].aes.new == .full([0x0b, 0x7e, 0x4d, 0x6c, 0x2a, 0x19, 0x3f, 0x58]))
    let ep11 = try #require(d.adapters.first { $0.apid == 4 })
    #expect(
      ep11.ep11Module
        == EP11ModuleInfo(apiOrdinal: 7, firmwareMajor: 7, firmwareMinor: 23, opModes: [.fips2021]))
    #expect(ep11.ep11Domains[0x12].opModes == [.fips2021])
    guard case .uncommitted(let wk) = ep11.ep11Domains[0x12].new else {
      Issue.record("domain 0x12 of adapter 04 has an uncommitted new wrapping key")
      return
    }
    #expect(wk.count == 32 && ep11.ep11Domains[4].new == .empty)
  }

  @Test("format0: no APXA, CRYCB format 0, adapters 0-63, domains 0-15, CEX5 and CEX6")
  func format0() throws {
    let d = try MachineDefinitionLoader.load(path: examplePath("format0.yaml"))
    #expect(!d.apxa)
    #expect(d.crycbFormat == 0)
    #expect(d.na == 63 && d.nd == 15)
    #expect(d.usageDomains == .all(through: 15))
    #expect(d.controlDomains == .all(through: 15))
    #expect(Set(d.adapters.map(\.type)) == [.cex5, .cex6])
  }
}
