import Foundation
import Scenario
import Testing

/// `apvirt up --config` and `apvirt capture` against each other: a host booted from a scenario
/// captures back to the same scenario (what sysfs can show of it), from the mount and from a
/// plain `cp -r` copy of it, as from a real host's /sys.
@Suite(.serialized) struct ScenarioInteropTests {
  static let examplesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Examples").path

  static let scenarios = ["three-guests.yaml", "lab-scenario.yaml"]

  func capture(_ d: Daemon, sysfs: String, _ name: String) throws -> Scenario {
    let out = d.root + "/" + name
    let r = try run(apvirtBinary, ["capture", "--sysfs", sysfs, "--state", d.state, "-o", out])
    #expect(r.status == 0, "\(r.stderr)")
    return try ScenarioLoader.load(path: out)
  }

  @Test(arguments: scenarios)
  func captureGivesBackTheScenario(_ file: String) throws {
    let path = Self.examplesDirectory + "/" + file
    let scenario = try ScenarioLoader.load(path: path)
    let d = try Daemon(options: ["--config", path])
    let expected = ScenarioCapture.visible(scenario)

    // Every guest runs, on its mdev, as apvirt status shows.
    let status = try d.apvirt(["status"])
    for g in scenario.guests {
      #expect(status.stdout.contains("guest \(g.name) (running)"), "\(status.stdout)")
    }
    for m in scenario.mdevs { #expect(status.stdout.contains("mdev \(m.uuid): matrix")) }
    #expect(!status.stdout.contains("failed"), "\(status.stdout)")

    #expect(try capture(d, sysfs: d.mount, "mount.yaml") == expected)

    // A plain copy, as an administrator takes one of /sys (cp complains about write-only files).
    let copy = d.root + "/copy"
    _ = try run("/bin/cp", ["-r", d.mount, copy])
    #expect(try capture(d, sysfs: copy, "copy.yaml") == expected)
  }

  /// The masks and mdevs are the state's (chzdev's rule, mdevctl's definitions): a plain
  /// `apvirt up` on the same state boots the same host again, without the guests.
  @Test func theScenarioPersistsInTheStateDirectory() throws {
    let path = Self.examplesDirectory + "/three-guests.yaml"
    var expected = ScenarioCapture.visible(try ScenarioLoader.load(path: path))
    let d = try Daemon(options: ["--config", path])
    d.stop()
    d.options = []
    try d.start()
    expected.guests = []
    #expect(try capture(d, sysfs: d.mount, "again.yaml") == expected)
    let rules = try String(contentsOfFile: d.state + "/etc/udev/rules.d/41-ap.rules", encoding: .utf8)
    #expect(rules.contains("ATTR{../../bus/ap/apmask}=\"0xf9ff"))
  }

  /// A bad scenario is refused before anything boots, with the key and the line.
  @Test func aBadScenarioIsRefusedWithKeyAndLine() throws {
    let dir = "/tmp/apvirt-test-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let bad = dir + "/bad.yaml"
    try """
    machine: { name: m, adapters: [ { apid: 5 } ] }
    kernel:
      apmask: -5
    mdevs:
      - uuid: 62177883-f1bb-47f0-914d-32a22e3a8804
        adapters: 5
        domains: 4,0x100
    """.write(toFile: bad, atomically: true, encoding: .utf8)
    let r = try run(
      apvirtBinary, ["up", "--config", bad, "--mount", dir + "/run/sys", "--state", dir + "/state"])
    #expect(r.status == 1)
    #expect(
      r.stderr.contains(
        "\(bad): mdevs[0].domains: 0x100 is above the machine's highest domain 0xff (line 7)"), "\(r.stderr)")
    #expect(!FileManager.default.fileExists(atPath: dir + "/run/sys/bus"))
  }

  /// A state directory that defines other mdevs is not taken over.
  @Test func aStateWithOtherDefinitionsIsRefused() throws {
    let dir = "/tmp/apvirt-test-\(UUID().uuidString.prefix(8))"
    let other = dir + "/state/etc/mdevctl.d/matrix/90c6c135-ad44-41d0-b1b7-bae47de4ffff"
    try FileManager.default.createDirectory(
      atPath: dir + "/state/etc/mdevctl.d/matrix", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try "{\"mdev_type\": \"vfio_ap-passthrough\", \"start\": \"auto\", \"attrs\": []}\n".write(
      toFile: other, atomically: true, encoding: .utf8)
    let path = Self.examplesDirectory + "/three-guests.yaml"
    let r = try run(
      apvirtBinary, ["up", "--config", path, "--mount", dir + "/run/sys", "--state", dir + "/state"])
    #expect(r.status != 0)
    #expect(
      r.stderr.contains(
        "mdevctl definitions the scenario does not list: 90c6c135-ad44-41d0-b1b7-bae47de4ffff"), "\(r.stderr)"
    )
  }

  /// What cannot start is reported with the line: a guest whose CPU model QEMU does not know.
  @Test func aGuestThatCannotStartIsReportedWithItsLine() throws {
    let dir = "/tmp/apvirt-test-\(UUID().uuidString.prefix(8))-cfg"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let file = dir + "/s.yaml"
    try """
    machine: { name: m, adapters: [ { apid: 5 } ] }
    guests:
      - name: g1
        cpu: no-such-cpu
    """.write(toFile: file, atomically: true, encoding: .utf8)
    let d = try Daemon(options: ["--config", file])
    let status = try d.apvirt(["status"])
    #expect(status.stdout.contains("\(file):3: guests[0] g1"), "\(status.stdout)")
    #expect(d.log.contains("\(file):3: guests[0] g1"))
  }
}
