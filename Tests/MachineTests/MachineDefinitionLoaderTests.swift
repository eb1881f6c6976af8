import APModel
import Foundation
import Machine
import Testing

/// Parses `yaml`, returning the error or nil.
func loadError(_ yaml: String) -> MachineDefinitionError? {
  do {
    _ = try MachineDefinitionLoader.parse(yaml: yaml, source: "test.yaml")
    return nil
  } catch {
    return error
  }
}

@Suite("MachineDefinitionLoader")
struct MachineDefinitionLoaderTests {
  @Test("the embedded default: 12 CEX8 adapters, every domain, format 2, all facilities")
  func embeddedDefault() {
    let d = MachineDefinition.embeddedDefault
    #expect(d.name == "default")
    #expect(d.na == 255)
    #expect(d.nd == 255)
    #expect(d.apxa)
    #expect(d.facilities == .all)
    #expect(d.facilities.qci && d.facilities.apft && d.facilities.aqic)
    #expect(d.crycbFormat == 2)
    #expect(d.adapters.map(\.apid) == Array(0x00...0x0b))
    #expect(d.adapters.allSatisfy { $0.type == .cex8 })
    #expect(d.adapters.allSatisfy { $0.configured && $0.queueDepth == 8 })
    #expect(d.adapters.filter { $0.mode == .cca }.map(\.apid) == Array(0x00...0x05))
    #expect(d.adapters.filter { $0.mode == .ep11 }.map(\.apid) == Array(0x06...0x09))
    #expect(d.adapters.filter { $0.mode == .accel }.map(\.apid) == [0x0a, 0x0b])
    #expect(d.usageDomains == .all())
    #expect(d.controlDomains == .all())
    #expect(d.adapterMask == APMask(0...11))
    #expect(d.adapters[0x0b].serial == "93AADF0B")
  }

  @Test(
    "the embedded default built in code is the machine its YAML (apvirt machine) and Examples/default.yaml describe"
  )
  func embeddedDefaultIsItsYAML() throws {
    let parsed = try MachineDefinitionLoader.parse(yaml: embeddedDefaultYAML, source: "<embedded default>")
    #expect(MachineDefinition.embeddedDefault == parsed)
    let example = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("Examples/default.yaml").path
    #expect(try MachineDefinitionLoader.load(path: example) == parsed)
  }

  @Test("kernel: the version's text as written (6.10 is not 6.1), anything else refused")
  func kernelKey() throws {
    let d = try MachineDefinitionLoader.parse(
      yaml: "name: k\nkernel: 6.10\nadapters: [{ apid: 1 }]\n", source: "test.yaml")
    #expect(d.kernel == "6.10")
    #expect(MachineDefinition.embeddedDefault.kernel == nil)
    let e = loadError("name: k\nkernel: latest\nadapters: [{ apid: 1 }]\n")
    #expect(e?.description == "test.yaml: kernel: not a kernel version like 6.12 (line 2)")
  }

  @Test("defaults of a minimal definition")
  func defaults() throws {
    let d = try MachineDefinitionLoader.parse(yaml: "name: tiny\n", source: "t")
    #expect(d.name == "tiny")
    #expect(d.na == 255 && d.nd == 255 && d.apxa && d.crycbFormat == 2)
    #expect(d.facilities == .all)
    #expect(d.usageDomains == .all())
    #expect(d.controlDomains == .all())
    #expect(d.adapters.isEmpty)
    #expect(try MachineDefinitionLoader.parse(yaml: "{}", source: "t").name == "unnamed")
  }

  @Test("without apxa the limits are 63 and 15 and the CRYCB format defaults to 0")
  func noAPXA() throws {
    let d = try MachineDefinitionLoader.parse(yaml: "apxa: false\n", source: "t")
    #expect(!d.apxa)
    #expect(d.na == 63 && d.nd == 15)
    #expect(d.crycbFormat == 0)
    #expect(d.usageDomains == .all(through: 15))
    let f1 = try MachineDefinitionLoader.parse(yaml: "apxa: false\ncrycb-format: 1\n", source: "t")
    #expect(f1.crycbFormat == 1)
    // With APXA installed KVM uses format 2 (0 without MSAX3): never 1.
    let f0x = try MachineDefinitionLoader.parse(yaml: "crycb-format: 0\n", source: "t")
    #expect(f0x.crycbFormat == 0 && f0x.apxa)
  }

  @Test("control domains default to the usage domains")
  func controlDefault() throws {
    let d = try MachineDefinitionLoader.parse(yaml: "usage-domains: 1-3\n", source: "t")
    #expect(d.usageDomains == APMask([1, 2, 3]))
    #expect(d.controlDomains == APMask([1, 2, 3]))
    let e = try MachineDefinitionLoader.parse(yaml: "usage-domains: 1-3\ncontrol-domains: 7\n", source: "t")
    #expect(e.controlDomains == APMask([7]))
  }

  @Test("id lists: ranges, decimal and 0x numbers, single numbers, YAML lists, spaces")
  func idLists() throws {
    func usage(_ v: String) throws -> APMask {
      try MachineDefinitionLoader.parse(yaml: "usage-domains: \(v)\n", source: "t").usageDomains
    }
    #expect(try usage("0-5,8,0x0a-0x0b") == APMask([0, 1, 2, 3, 4, 5, 8, 10, 11]))
    #expect(try usage("7") == APMask([7]))
    #expect(try usage("0x47") == APMask([0x47]))
    #expect(try usage("0X47") == APMask([0x47]))
    #expect(try usage("[1, 3-4, 0x10]") == APMask([1, 3, 4, 16]))
    #expect(try usage("\"1, 2 , 4\"") == APMask([1, 2, 4]))
    #expect(try usage("255") == APMask([255]))
    #expect(try usage("\"\"") == .empty)
    #expect(try usage("[]") == .empty)
  }

  @Test("adapter entries: apid or apids, type, mode, depth, configured, serial; sorted by apid")
  func adapters() throws {
    let yaml = """
      adapters:
        - { apid: 0x20, type: 13, mode: accelerator, depth: 4, configured: false, serial: ABC }
        - { apids: 2-3, type: cex6, mode: EP11 }
        - { apid: 1 }
      """
    let d = try MachineDefinitionLoader.parse(yaml: yaml, source: "t")
    #expect(d.adapters.map(\.apid) == [1, 2, 3, 0x20])
    let one = d.adapters[0]
    #expect(one.type == .cex8 && one.mode == .cca && one.queueDepth == 8 && one.configured)
    #expect(one.serial == "93AADF01")
    #expect(d.adapters[1].type == .cex6 && d.adapters[1].mode == .ep11)
    #expect(d.adapters[1].serial == "93AADF02")
    #expect(d.adapters[2].serial == "93AADF03")
    let x = d.adapters[3]
    #expect(x.type == .cex7 && x.mode == .accel && x.queueDepth == 4 && !x.configured && x.serial == "ABC")
  }

  @Test("facilities: names, STFLE numbers, or none")
  func facilities() throws {
    func fac(_ v: String) throws -> APFacilities {
      try MachineDefinitionLoader.parse(yaml: "facilities: \(v)\n", source: "t").facilities
    }
    #expect(try fac("[qci]") == APFacilities(qci: true, apft: false, aqic: false))
    #expect(try fac("[12, 65]") == APFacilities(qci: true, apft: false, aqic: true))
    #expect(try fac("[QCI, APFT, AQIC]") == .all)
    #expect(try fac("[15]") == APFacilities(qci: false, apft: true, aqic: false))
    #expect(try fac("[]") == APFacilities(qci: false, apft: false, aqic: false))
  }

  @Test(
    "every bad input is a MachineDefinitionError naming the offending key or value",
    arguments: [
      ("colour: red", ["unknown key", "'colour'"]),
      ("na: lots", ["'na'", "number"]),
      ("na: 0x1g", ["'na'", "number"]),
      ("na: [1]", ["'na'", "number"]),
      ("nd: 300", ["'nd'", "300", "0...255"]),
      ("na: 256", ["'na'", "256"]),
      ("na: -1", ["'na'", "-1"]),
      ("apxa: false\nna: 64", ["'na'", "64", "0...63"]),
      ("apxa: false\nnd: 16", ["'nd'", "16", "0...15"]),
      ("apxa: maybe", ["'apxa'", "true or false"]),
      ("facilities: qci", ["'facilities'"]),
      ("facilities: [qci, msa9]", ["facility", "'msa9'"]),
      ("crycb-format: 3", ["'crycb-format'", "3"]),
      ("crycb-format: two", ["'crycb-format'", "number"]),
      ("apxa: false\ncrycb-format: 2", ["crycb-format 2", "apxa", "line 2", "format 1"]),
      ("crycb-format: 1", ["crycb-format 1", "apxa: true", "line 1", "use crycb-format: 2", "apxa: false"]),
      ("apxa: true\ncrycb-format: 1", ["crycb-format 1", "line 2", "format 2"]),
      ("usage-domains: 0-256", ["'usage-domains'", "256"]),
      ("nd: 15\ncontrol-domains: 0-16", ["'control-domains'", "16", "15"]),
      ("usage-domains: 5-3", ["'usage-domains'", "'5-3'", "backwards"]),
      ("usage-domains: abc", ["'usage-domains'", "'abc'"]),
      ("usage-domains: 1-2-3", ["'usage-domains'", "'1-2-3'"]),
      ("usage-domains: -1", ["'usage-domains'", "'-1'"]),
      ("usage-domains: {a: 1}", ["'usage-domains'"]),
      ("control-domains: [1, [2]]", ["'control-domains'"]),
      ("adapters: 5", ["'adapters'", "list"]),
      ("adapters: [5]", ["adapters[0]", "mapping"]),
      ("adapters:\n  - { apid: 1, colour: red }", ["adapters[0]", "'colour'"]),
      ("adapters:\n  - { type: CEX8 }", ["adapters[0]", "'apid'", "'apids'"]),
      ("adapters:\n  - { apid: x }", ["adapters[0].apid", "number"]),
      ("na: 10\nadapters:\n  - { apid: 11 }", ["adapters[0].apid", "11"]),
      ("na: 10\nadapters:\n  - { apids: 8-11 }", ["adapters[0].apids", "11"]),
      ("adapters:\n  - { apid: 1 }\n  - { apid: 2, type: CEX99 }", ["adapters[1]", "type", "'CEX99'"]),
      ("adapters:\n  - { apid: 1, type: PCIXCC }", ["adapters[0]", "'PCIXCC'"]),
      (
        "adapters:\n  - { apid: 1 }\n  - { apid: 2, type: CEX9 }",
        ["adapters[1].type", "unknown adapter type 'CEX9'", "line 3", "CEX4, CEX5, CEX6, CEX7, CEX8"]
      ),
      ("adapters:\n  - { apid: 1, type: 15 }", ["adapters[0].type", "'15'", "CEX8"]),
      ("adapters:\n  - { apid: 1, type: 5 }", ["adapters[0].type", "'5'", "CEX4"]),
      ("adapters:\n  - { apid: 1, apids: 2-3 }", ["adapters[0]", "'apid'", "'apids'", "line 2"]),
      ("adapters:\n  - { apids: 2-3, serial: X1 }", ["adapters[0].serial", "2 adapters", "'apid'"]),
      ("adapters:\n  - { apid: 1, mode: turbo }", ["adapters[0]", "mode", "'turbo'"]),
      ("adapters:\n  - { apid: 5 }\n  - { apids: 4-6, mode: ep11 }", ["adapters[1]", "05", "twice"]),
      ("adapters:\n  - { apid: 0x0a }\n  - { apid: 10 }", ["adapters[1]", "0a", "twice"]),
      ("adapters:\n  - { apid: 1, depth: 0 }", ["adapters[0].depth", "0"]),
      ("adapters:\n  - { apid: 1, depth: 257 }", ["adapters[0].depth", "257"]),
      ("adapters:\n  - { apid: 1, configured: perhaps }", ["adapters[0].configured", "true or false"]),
      ("name: [unclosed", ["YAML"]),
      ("{ unclosed", ["YAML"]),
      ("- a\n- b", ["mapping"]),
      ("just text", ["mapping"]),
      ("", ["mapping"]),
    ])
  func errors(yaml: String, fragments: [String]) throws {
    let error = try #require(loadError(yaml))
    #expect(error.source == "test.yaml")
    #expect(error.description.hasPrefix("test.yaml: "))
    for f in fragments {
      #expect(error.message.contains(f), "\(error.message) should mention \(f)")
    }
  }

  @Test("load(path:) reads a file and reports an unreadable one")
  func loadPath() throws {
    let dir = FileManager.default.temporaryDirectory
    let path = dir.appendingPathComponent("apvirt-machine-\(UUID().uuidString).yaml").path
    try "name: from-file\nna: 20\nadapters:\n  - { apid: 20 }\n".write(
      toFile: path, atomically: true, encoding: .utf8)
    defer { try? FileManager.default.removeItem(atPath: path) }
    let d = try MachineDefinitionLoader.load(path: path)
    #expect(d.name == "from-file" && d.na == 20 && d.adapters.map(\.apid) == [20])

    let missing = dir.appendingPathComponent("apvirt-no-such-\(UUID().uuidString).yaml").path
    let error = #expect(throws: MachineDefinitionError.self) {
      try MachineDefinitionLoader.load(path: missing)
    }
    #expect(error?.source == missing)
    #expect(error?.description == "\(missing): No such file or directory")
    let dirError = #expect(throws: MachineDefinitionError.self) {
      try MachineDefinitionLoader.load(path: "/etc")
    }
    #expect(dirError?.description == "/etc: Is a directory")
  }

  @Test("fullArchitecture has every adapter and domain")
  func fullArchitecture() {
    let d = MachineDefinition.fullArchitecture(type: .cex7)
    #expect(d.adapters.count == 256)
    #expect(d.adapters.allSatisfy { $0.type == .cex7 })
    #expect(d.adapterMask == .all())
    #expect(d.usageDomains == .all() && d.controlDomains == .all())
  }
}
