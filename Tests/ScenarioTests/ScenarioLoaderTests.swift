import APModel
import Foundation
import Machine
import Planning
import Scenario
import Testing

/// The repository's Examples directory.
let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent().appendingPathComponent("Examples").path

let u1 = "62177883-f1bb-47f0-914d-32a22e3a8804"
let u2 = "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3"

let small = """
  machine:
    name: small
    adapters:
      - { apids: 5-6, type: CEX8, mode: cca }
  kernel:
    apmask: -5,-6
  mdevs:
    - uuid: \(u1)
      adapters: 5
      domains: 4,0xab
      control-domains: 0xab
      start: auto
  guests:
    - name: g1
      cpu: host
      mdev: \(u1)

  """

@Suite struct ScenarioLoaderTests {
  @Test func readsAnInlineScenario() throws {
    let s = try ScenarioLoader.parse(yaml: small, source: "small.yaml")
    #expect(s.machine.name == "small")
    #expect(s.machine.adapters.map(\.apid) == [5, 6])
    #expect(s.apmask == APMask.all().subtracting(APMask([5, 6])))
    #expect(s.aqmask == .all())
    #expect(
      s.mdevs == [
        Scenario.Mdev(
          uuid: u1, matrix: APMatrix(apm: APMask([5]), aqm: APMask([4, 0xab]), adm: APMask([0xab])),
          start: .auto)
      ])
    #expect(s.mdevs[0].line == 8)
    #expect(s.guests == [Scenario.Guest(name: "g1", cpu: "host", mdev: u1)])
    #expect(
      s.guests[0].qemuArguments == [
        "-name", "g1", "-cpu", "host", "-device", "vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(u1)",
      ])
  }

  @Test func masksInEveryGrammar() {
    #expect(ScenarioLoader.parseMask("0-4,7-255") == APMask.all().subtracting(APMask([5, 6])))
    #expect(ScenarioLoader.parseMask("-5,-6") == APMask.all().subtracting(APMask([5, 6])))
    #expect(ScenarioLoader.parseMask("0xf9ff") == APMask(Array(0...4) + Array(7...15)))
    #expect(ScenarioLoader.parseMask("0x05,0x06") == APMask([5, 6]))
    #expect(ScenarioLoader.parseMask("") == APMask())
    #expect(ScenarioLoader.parseMask("0-300") == nil)
    #expect(ScenarioLoader.parseMask("five") == nil)
  }

  @Test func writesWhatItReads() throws {
    let s = try ScenarioLoader.parse(yaml: small, source: "small.yaml")
    let again = try ScenarioLoader.parse(yaml: s.yamlText(), source: "again.yaml")
    #expect(again == s)
  }

  @Test(arguments: ["three-guests.yaml", "lab-scenario.yaml"])
  func examplesReadAndWriteBack(_ name: String) throws {
    let s = try ScenarioLoader.load(path: examples + "/" + name)
    #expect(!s.mdevs.isEmpty)
    let again = try ScenarioLoader.parse(yaml: s.yamlText(), source: "again.yaml")
    #expect(again == s)
  }

  @Test func threeGuestsIsTheDocumentationsExample() throws {
    let s = try ScenarioLoader.load(path: examples + "/three-guests.yaml")
    #expect(s.machineFile == "default.yaml")
    #expect(s.machine == MachineDefinition.embeddedDefault)
    let byGuest = Dictionary(uniqueKeysWithValues: s.guests.map { ($0.name, s.mdev($0.mdev!)!.matrix) })
    #expect(byGuest["guest1"]!.apqns.map(\.description) == ["05.0004", "05.00ab", "06.0004", "06.00ab"])
    #expect(byGuest["guest1"]!.adm == APMask([0xab]))
    #expect(byGuest["guest2"]!.apqns.map(\.description) == ["05.0047", "05.00ff"])
    #expect(byGuest["guest3"]!.apqns.map(\.description) == ["06.0047", "06.00ff"])
  }

  /// Each bad file is refused with the key and the line of the problem.
  @Test(arguments: [
    ("mdevz: []", "unknown key 'mdevz'", 1, ""),
    ("kernel:\n  apmask: lots", "'lots' is not a mask", 2, "kernel.apmask"),
    ("kernel:\n  aqmsk: 1", "unknown key 'aqmsk'", 2, "kernel"),
    ("mdevs:\n  - uuid: nope", "'nope' is not a UUID", 2, "mdevs[0].uuid"),
    (
      "mdevs:\n  - uuid: \(u1)\n    domains: 0x100", "0x100 is above the machine's highest domain 0xff", 3,
      "mdevs[0].domains"
    ),
    (
      "mdevs:\n  - uuid: \(u1)\n    adapters: 5\n    domains: 4\n    start: sometimes",
      "neither auto nor manual", 5, "mdevs[0].start"
    ),
    (
      "kernel:\n  apmask: -5\nmdevs:\n  - uuid: \(u1)\n    adapters: 6\n    domains: 4",
      "06.0004 is reserved for the host by apmask bit 6 and aqmask bit 4", 4, "mdevs[0]"
    ),
    (
      "kernel:\n  apmask: -5\nmdevs:\n  - uuid: \(u1)\n    adapters: 5\n    domains: 4\n  - uuid: \(u2)\n    adapters: 5\n    domains: 4-5",
      "05.0004 is also in mdev \(u1) (line 5)", 7, "mdevs[1]"
    ),
    ("mdevs:\n  - uuid: \(u1)\n  - uuid: \(u1)", "is defined twice (first at line 3)", 3, "mdevs[1].uuid"),
    (
      "guests:\n  - name: g1\n    mdev: \(u2)", "is not one of the scenario's mdevs (it has none)", 3,
      "guests[0].mdev"
    ),
    ("guests:\n  - name: a/b", "'a/b' is not a file name", 2, "guests[0].name"),
    ("guests:\n  - { name: g1 }\n  - { name: g1 }", "defined twice", 3, "guests[1].name"),
    (
      "mdevs:\n  - uuid: \(u1)\nguests:\n  - { name: g1, mdev: \(u1) }\n  - { name: g2, mdev: \(u1) }",
      "guest g1 uses \(u1) already", 5, "guests[1].mdev"
    ),
  ])
  func badFilesAreRefusedWithKeyAndLine(_ body: String, _ message: String, _ line: Int, _ key: String) {
    // The machine first, so that the lines of the body follow it.
    let text = "machine: { name: m }\n" + body
    do {
      _ = try ScenarioLoader.parse(yaml: text, source: "bad.yaml")
      Issue.record("accepted: \(text)")
    } catch {
      #expect(error.key == key)
      #expect(error.line == line + 1, "\(error)")
      #expect(error.description.contains(message), "\(error)")
      #expect(error.description.hasPrefix("bad.yaml: "))
    }
  }

  @Test func anInlineMachinesProblemHasTheScenariosLine() {
    let text = "# a comment\nmachine:\n  name: m\n  adapters:\n    - { apid: 5, type: CEX99 }\n"
    #expect {
      try ScenarioLoader.parse(yaml: text, source: "bad.yaml")
    } throws: { error in
      let d = "\(error)"
      return d.contains("bad.yaml: machine: adapters[0].type: unknown adapter type 'CEX99' (line 5)")
    }
  }

  @Test func aMachineFileIsRelativeToTheScenario() throws {
    let dir = NSTemporaryDirectory() + "scenario-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try "name: filed\nadapters: [ { apid: 1 } ]\n".write(
      toFile: dir + "/sub/m.yaml", atomically: true, encoding: .utf8)
    try "machine: m.yaml\n".write(toFile: dir + "/sub/s.yaml", atomically: true, encoding: .utf8)
    #expect(try ScenarioLoader.load(path: dir + "/sub/s.yaml").machine.name == "filed")
    try "machine: missing.yaml\n".write(toFile: dir + "/sub/t.yaml", atomically: true, encoding: .utf8)
    #expect {
      try ScenarioLoader.load(path: dir + "/sub/t.yaml")
    } throws: { error in
      "\(error)".contains("t.yaml: machine: \(dir)/sub/missing.yaml: No such file or directory (line 1)")
    }
  }

  @Test func mdevctlDefinitionIsWhatMdevctlWrites() {
    let m = Scenario.Mdev(
      uuid: u1, matrix: APMatrix(apm: APMask([1]), aqm: APMask([4]), adm: APMask([0x50])), start: .auto)
    #expect(
      m.mdevctlJSON == """
        {
          "mdev_type": "vfio_ap-passthrough",
          "start": "auto",
          "attrs": [
            {
              "assign_adapter": "0x01"
            },
            {
              "assign_domain": "0x0004"
            },
            {
              "assign_control_domain": "0x0050"
            }
          ]
        }

        """)
  }

  @Test func machineYAMLReadsBack() throws {
    for file in ["default.yaml", "z15-lab.yaml", "format0.yaml"] {
      var m = try MachineDefinitionLoader.load(path: examples + "/" + file)
      let again = try MachineDefinitionLoader.parse(yaml: m.yamlText, source: file)
      // Coprocessor key patterns are not written; the rest is.
      m.adapters = m.adapters.map { a in
        var b = MachineDefinition.Adapter(
          apid: a.apid, type: a.type, mode: a.mode, queueDepth: a.queueDepth, configured: a.configured,
          serial: a.serial)
        b.resetLatency = a.resetLatency
        b.irqLatency = a.irqLatency
        return b
      }
      #expect(again == m, "\(file)")
    }
  }
}
