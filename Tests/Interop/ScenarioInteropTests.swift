import Foundation
import Scenario
import Testing

/// `apvirt up --config` and `apvirt capture` against each other: a host booted from a scenario
/// captures back to the same scenario, from the mount (the daemon names the guests) and from a
/// plain `cp -r` copy of it with the guests' libvirt domain XML, as from a real host's /sys and
/// /etc/libvirt/qemu.
@Suite(.serialized) struct ScenarioInteropTests {
  static let examplesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Examples").path

  static let scenarios = ["three-guests.yaml", "lab-scenario.yaml"]

  /// `apvirt capture --sysfs SYSFS ARGS -o FILE`, read back, and what it said on stderr.
  func capture(_ d: Daemon, sysfs: String, _ args: [String] = [], _ name: String) throws -> (Scenario, String)
  {
    let out = d.root + "/" + name
    let r = try run(apvirtBinary, ["capture", "--sysfs", sysfs] + args + ["-o", out])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.hasPrefix("captured "), "\(r.stdout)")
    return (try ScenarioLoader.load(path: out), r.stderr)
  }

  /// The domain XML libvirt keeps for a scenario's guest (as `virsh dumpxml` prints a running
  /// one): `-cpu host,...` is `host-passthrough`, a model is `custom`, each `F=on` a required
  /// feature and `F=off` a disabled one; the mdev is a vfio-ap hostdev.
  static func libvirtXML(_ g: Scenario.Guest, id: Int) -> String {
    let parts = g.cpu.split(separator: ",").map(String.init)
    let features = parts.dropFirst().map { f in
      let on = f.hasSuffix("=on")
      return "\n    <feature policy='\(on ? "require" : "disable")' name='\(f.split(separator: "=")[0])'/>"
    }.joined()
    let cpu =
      parts[0] == "host"
      ? "<cpu mode='host-passthrough' check='none' migratable='on'>\(features)\n  </cpu>"
      : "<cpu mode='custom' match='exact' check='partial'>\n    <model fallback='forbid'>\(parts[0])</model>\(features)\n  </cpu>"
    let hostdev =
      g.mdev.map {
        """

            <hostdev mode='subsystem' type='mdev' managed='no' model='vfio-ap'>
              <source>
                <address uuid='\($0)'/>
              </source>
              <alias name='hostdev0'/>
            </hostdev>
        """
      } ?? ""
    return """
      <domain type='kvm' id='\(id)'>
        <name>\(g.name)</name>
        <uuid>7de585c2-211a-4d1a-ba6b-f5625711f8\(String(format: "%02x", id))</uuid>
        <memory unit='KiB'>1048576</memory>
        <vcpu placement='static'>1</vcpu>
        <os>
          <type arch='s390x' machine='s390-ccw-virtio-9.2'>hvm</type>
          <boot dev='hd'/>
        </os>
        \(cpu)
        <clock offset='utc'/>
        <on_poweroff>destroy</on_poweroff>
        <devices>
          <emulator>/usr/bin/qemu-system-s390x</emulator>
          <controller type='pci' index='0' model='pci-root'/>\(hostdev)
          <console type='pty' tty='/dev/pts/\(id)'>
            <target type='sclp' port='0'/>
            <alias name='console0'/>
          </console>
          <memballoon model='virtio'>
            <alias name='balloon0'/>
            <address type='ccw' cssid='0xfe' ssid='0x0' devno='0x0000'/>
          </memballoon>
        </devices>
      </domain>

      """
  }

  @Test(arguments: scenarios)
  func captureGivesBackTheScenario(_ file: String) throws {
    let path = Self.examplesDirectory + "/" + file
    let scenario = try ScenarioLoader.load(path: path)
    let d = try Daemon(options: ["--config", path])

    // Every guest runs, on its mdev, as apvirt status shows.
    let status = try d.apvirt(["status"])
    for g in scenario.guests {
      #expect(status.stdout.contains("guest \(g.name) (running)"), "\(status.stdout)")
    }
    for m in scenario.mdevs { #expect(status.stdout.contains("mdev \(m.uuid): matrix")) }
    #expect(!status.stdout.contains("failed"), "\(status.stdout)")

    // From the mount the daemon gives the guests (with their -cpu, those without AP too), the
    // machine's name and, without --state, its state directory's definitions: the very scenario.
    for args in [["--state", d.state], []] {
      let (got, stderr) = try capture(d, sysfs: d.mount, args, "mount.yaml")
      #expect(got == scenario, "\(args)")
      #expect(stderr == "", "\(args)")
    }

    // A plain copy, as an administrator takes one of /sys (cp complains about write-only files).
    let copy = d.root + "/copy"
    _ = try run("/bin/cp", ["-r", d.mount, copy])

    // With libvirt's domain XML of the running guests (those without AP too) and the machine's
    // name, the same scenario again.
    let libvirt = d.root + "/libvirt-qemu"
    try FileManager.default.createDirectory(atPath: libvirt, withIntermediateDirectories: true)
    for (i, g) in scenario.guests.enumerated() {
      try Self.libvirtXML(g, id: i + 1).write(
        toFile: "\(libvirt)/\(g.name).xml", atomically: true, encoding: .utf8)
    }
    let (fromCopy, copyStderr) = try capture(
      d, sysfs: copy, ["--state", d.state, "--libvirt", libvirt, "--name", scenario.machine.name], "copy.yaml"
    )
    #expect(fromCopy == scenario)
    #expect(copyStderr == "")

    // From sysfs alone: guests named after their mdevs, said on stderr.
    let (bare, bareStderr) = try capture(d, sysfs: copy, ["--state", d.state], "bare.yaml")
    #expect(bare == ScenarioCapture.visible(scenario, name: "captured"))
    let used = scenario.guests.filter { $0.mdev != nil }.count
    #expect(
      bareStderr.contains(
        "apvirt capture: \(used) guest\(used == 1 ? "" : "s") named after \(used == 1 ? "its mdev" : "their mdevs"), with cpu host: guest names and CPU models are not in sysfs and no daemon answers for \(copy); give --libvirt DIR with the guests' domain XML"
      ), "\(bareStderr)")
  }

  /// The file a capture writes says where each thing came from, and `--help` says what it reads.
  @Test func theCapturedFileAndTheHelpSayWhereThingsCameFrom() throws {
    let path = Self.examplesDirectory + "/lab-scenario.yaml"
    let d = try Daemon(options: ["--config", path])
    let r = try run(apvirtBinary, ["capture", "--sysfs", d.mount])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(
      r.stdout.contains("# Guest names and CPU models from the apvirt daemon at \(d.mount).\n"), "\(r.stdout)"
    )
    #expect(r.stdout.contains("# The machine's name, kernel, CRYCB format and latencies are the daemon's.\n"))
    #expect(
      r.stdout.contains("  - name: web\n    cpu: \"z15,ap=on,apqci=on,apft=on,apqi=on\"\n    mdev: 8a3ce2fb"))
    #expect(r.stdout.contains("  - name: batch\n    cpu: host\n"))
    // What the daemon says for it, in status's JSON: each VM's -cpu and mdev, and the state.
    let json = try JSONSerialization.jsonObject(with: Data(try d.apvirt(["status", "--json"]).stdout.utf8))
    let status = json as? [String: Any] ?? [:]
    let vms = status["vms"] as? [[String: Any]] ?? []
    #expect(vms.map { $0["name"] as? String } == ["web", "batch"])
    #expect(vms.map { $0["cpu"] as? String } == ["z15,ap=on,apqci=on,apft=on,apqi=on", "host"])
    #expect(vms.map { $0["mdev"] as? String } == ["8a3ce2fb-0f4e-44b6-b7c2-1c3b0e7c8e9a", nil])
    #expect(status["state"] as? String == d.state)

    // A bad domain XML fails the capture, naming the file and the line.
    let libvirt = d.root + "/libvirt-bad"
    try FileManager.default.createDirectory(atPath: libvirt, withIntermediateDirectories: true)
    try "<domain type='kvm'>\n  <name>web</name>\n  <devices>\n</domain>\n".write(
      toFile: libvirt + "/web.xml", atomically: true, encoding: .utf8)
    let bad = try run(apvirtBinary, ["capture", "--sysfs", d.mount, "--libvirt", libvirt])
    #expect(bad.status == 1)
    #expect(
      bad.stderr
        == "Error: cannot read libvirt's domains: \(libvirt)/web.xml: not well-formed XML: line 4: </domain> closes <devices> (line 3)\n",
      "\(bad.stderr)")
    #expect(bad.stdout == "")

    let help = try run(apvirtBinary, ["capture", "--help"])
    #expect(help.stdout.contains("--libvirt <DIR>"), "\(help.stdout)")
    #expect(help.stdout.contains("a running domain without one is a guest without an mdev"), "\(help.stdout)")
  }

  /// The masks and mdevs are the state's (chzdev's rule, mdevctl's definitions): a plain
  /// `apvirt up` on the same state boots the same host again, without the guests.
  @Test func theScenarioPersistsInTheStateDirectory() throws {
    let path = Self.examplesDirectory + "/three-guests.yaml"
    var expected = try ScenarioLoader.load(path: path)
    let d = try Daemon(options: ["--config", path])
    d.stop()
    d.options = []
    try d.start()
    expected.guests = []
    #expect(try capture(d, sysfs: d.mount, [], "again.yaml").0 == expected)
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
