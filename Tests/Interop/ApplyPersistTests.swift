import Foundation
import Testing

/// `apvirt apply --persist` with mdevctl installed: the definitions are mdevctl's own, made and
/// removed with `mdevctl define` and `mdevctl undefine`, so that mdevctl lists exactly what
/// apply kept.
@Suite(.serialized) struct ApplyPersistTests {
  static let kept = ["62177883-f1bb-47f0-914d-32a22e3a8804", "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3"]
  static let dropped = "90c6c135-ad44-41d0-b1b7-bae47de48627"

  /// three-guests.yaml without its third mdev.
  static func twoGuests(in dir: String) throws -> String {
    let path = dir + "/two-guests.yaml"
    try """
    machine: \(ScenarioInteropTests.examplesDirectory)/default.yaml
    kernel:
      apmask: -5,-6
      aqmask: -4,-0x47,-0xab,-0xff
    mdevs:
      - uuid: \(kept[0])
        adapters: 5,6
        domains: 4,0xab
        control-domains: 0xab
        start: auto
      - uuid: \(kept[1])
        adapters: 5
        domains: 0x47,0xff
        start: manual
    """.write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  func defined(_ d: Daemon) throws -> [String] {
    let r = try d.exec(["mdevctl", "list", "--defined"])
    #expect(r.status == 0, "\(r.stderr)")
    return r.stdout.split(separator: "\n").map(String.init).sorted()
  }

  @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/mdevctl") && geteuid() == 0))
  func persistDefinesAndUndefinesWithMdevctl() throws {
    let d = try Daemon()
    let first = try run(
      apvirtBinary,
      ["apply", PlanApplyTests.threeGuests, "--sysfs", d.mount, "--persist", "--state", d.state])
    #expect(first.status == 0, "\(first.stderr)")
    let dir = d.state + "/etc/mdevctl.d/matrix/"
    #expect(first.stdout.contains("# persisted: \(dir)\(Self.dropped)\n"), "\(first.stdout)")
    // mdevctl lists the three as defined, to start automatically with the matrix parent.
    let three = try defined(d)
    #expect(three.count == 3, "\(three)")
    for u in Self.kept + [Self.dropped] {
      #expect(three.contains { $0.hasPrefix("\(u) matrix vfio_ap-passthrough auto") }, "\(three)")
    }

    // A second apply drops an mdev and makes another manual: mdevctl undefines the one and
    // defines the other again (it refuses to overwrite a definition).
    let second = try run(
      apvirtBinary,
      ["apply", try Self.twoGuests(in: d.root), "--sysfs", d.mount, "--persist", "--state", d.state])
    #expect(second.status == 0, "\(second.stderr)")
    #expect(second.stdout.contains("# persisted: \(dir)\(Self.dropped) (removed)\n"), "\(second.stdout)")
    let two = try defined(d)
    #expect(two.count == 2, "\(two)")
    #expect(two.contains { $0.hasPrefix("\(Self.kept[0]) matrix vfio_ap-passthrough auto") }, "\(two)")
    #expect(two.contains { $0.hasPrefix("\(Self.kept[1]) matrix vfio_ap-passthrough manual") }, "\(two)")
    #expect(!FileManager.default.fileExists(atPath: dir + Self.dropped))
    let def = try String(contentsOfFile: dir + Self.kept[0], encoding: .utf8)
    #expect(def.contains("\"assign_control_domain\": \"0x00ab\""), "\(def)")
  }
}
