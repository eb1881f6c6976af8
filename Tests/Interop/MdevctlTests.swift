import Foundation
import Testing

/// Debian's mdevctl, unmodified, against a running apvirt host inside `apvirt exec`.
@Suite(
  "Interop: mdevctl against apvirt", .serialized,
  .enabled(if: Requirement.mdevctl, Requirement.mdevctlMissing))
struct MdevctlTests {
  let u1 = "62177883-f1bb-47f0-914d-32a22e3a8804"
  let u2 = "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3"

  @Test func typesShowsTheMatrixParent() throws {
    let d = try Daemon()
    let r = try d.exec(["mdevctl", "types"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(
      r.stdout
        == "matrix\n  vfio_ap-passthrough\n    Available instances: 65536\n    Device API: vfio-ap\n    Name: VFIO AP Passthrough Device\n\n"
    )
  }

  @Test func defineStartListStopUndefine() throws {
    let d = try Daemon()
    try d.bash("echo -5,-6 > /sys/bus/ap/apmask")
    var r = try d.exec(["mdevctl", "define", "-u", u1, "-p", "matrix", "-t", "vfio_ap-passthrough"])
    #expect(r.status == 0, "\(r.stderr)")
    for (attr, value) in [
      ("assign_adapter", "5"), ("assign_adapter", "0x06"), ("assign_domain", "0xab"),
      ("assign_domain", "4"), ("assign_control_domain", "0x0b"),
    ] {
      r = try d.exec(["mdevctl", "modify", "-u", u1, "--addattr=\(attr)", "--value=\(value)"])
      #expect(r.status == 0, "\(r.stderr)")
    }
    // (mdevctl 1.2.0 ends its listings with an empty line.)
    r = try d.exec(["mdevctl", "list", "-d"])
    #expect(r.stdout.trimmingCharacters(in: .newlines) == "\(u1) matrix vfio_ap-passthrough manual")
    r = try d.exec(["mdevctl", "start", "-u", u1])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(
      try d.bash("cat /sys/bus/mdev/devices/\(u1)/matrix").stdout == "05.0004\n05.00ab\n06.0004\n06.00ab\n")
    #expect(try d.bash("cat /sys/bus/mdev/devices/\(u1)/control_domains").stdout == "000b\n")
    r = try d.exec(["mdevctl", "list"])
    #expect(r.stdout.trimmingCharacters(in: .newlines) == "\(u1) matrix vfio_ap-passthrough manual (defined)")
    r = try d.exec(["mdevctl", "list", "--dumpjson"])
    let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]]
    let entry = ((json?.first?["matrix"] as? [[String: Any]])?.first?[u1]) as? [String: Any]
    #expect(entry?["mdev_type"] as? String == "vfio_ap-passthrough")
    #expect((entry?["attrs"] as? [[String: String]])?.first == ["assign_adapter": "5"])
    r = try d.exec(["mdevctl", "stop", "-u", u1])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(try d.bash("test -e /sys/bus/mdev/devices/\(u1)").status != 0)
    r = try d.exec(["mdevctl", "undefine", "-u", u1])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(try d.exec(["mdevctl", "list", "-d"]).stdout.trimmingCharacters(in: .newlines) == "")
    #expect(
      try d.exec(["mdevctl", "list", "--dumpjson"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        == "[]")
  }

  @Test func collidingStartFailsAndLeavesNothingHalfDone() throws {
    let d = try Daemon()
    try d.bash("echo -5 > /sys/bus/ap/apmask")
    let first = """
      {"mdev_type": "vfio_ap-passthrough", "start": "manual", "attrs": [{"assign_adapter": "5"}, {"assign_domain": "0xab"}]}
      """
    var r = try d.exec(
      ["mdevctl", "start", "-u", u1, "-p", "matrix", "--jsonfile", "/dev/stdin"], stdin: first)
    #expect(r.status == 0, "\(r.stderr)")
    // The second asks for 05.00ab too: its assign_domain write fails with EADDRINUSE.
    let second = """
      {"mdev_type": "vfio_ap-passthrough", "start": "manual", "attrs": [{"assign_adapter": "5"}, {"assign_domain": "0xab"}]}
      """
    r = try d.exec(["mdevctl", "start", "-u", u2, "-p", "matrix", "--jsonfile", "/dev/stdin"], stdin: second)
    #expect(r.status == 1)
    #expect(r.stderr.contains("Error"))
    #expect(try d.bash("ls /sys/bus/mdev/devices").stdout == "\(u1)\n")
    #expect(
      try d.bash(
        "cat /sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/available_instances"
      ).stdout == "65535\n")
    #expect(
      try String(contentsOfFile: d.runtime + "/dmesg", encoding: .utf8).contains(
        "vfio_ap_mdev \(u2): Userspace may not assign queue 05.00ab to mdev: already assigned to \(u1)"))
  }

  @Test func autoStartDefinitionRunsAfterRestart() throws {
    let d = try Daemon()
    try d.bash("echo -7 > /sys/bus/ap/apmask")
    let def = """
      {"mdev_type": "vfio_ap-passthrough", "start": "auto", "attrs": [{"assign_adapter": "7"}, {"assign_domain": "1"}]}
      """
    var r = try d.exec(
      ["mdevctl", "define", "-u", u1, "-p", "matrix", "--jsonfile", "/dev/stdin"], stdin: def)
    #expect(r.status == 0, "\(r.stderr)")
    #expect(try d.bash("test -e /sys/bus/mdev/devices/\(u1)").status != 0)
    d.stop()
    // The kernel forgets its masks; udev's mdevctl replays the definition, whose adapter 7 x
    // domain 1 is reserved for the host again after a reboot: the start fails and is logged.
    try d.start()
    #expect(d.log.contains("\(u1): not started"))
    // With the masks as a boot parameter would set them... here: free the adapter and restart
    // the definition by hand, then check the auto-start of a definition that fits the defaults.
    d.stop()
    let fits = """
      {"mdev_type": "vfio_ap-passthrough", "start": "auto", "attrs": [{"assign_control_domain": "3"}]}
      """
    try fits.write(toFile: d.state + "/etc/mdevctl.d/matrix/\(u2)", atomically: true, encoding: .utf8)
    try d.start()
    r = try d.exec(["mdevctl", "list"])
    #expect(r.stdout.contains("\(u2) matrix vfio_ap-passthrough auto (defined)"))
    #expect(try d.bash("cat /sys/bus/mdev/devices/\(u2)/control_domains").stdout == "0003\n")
    // A 0-byte definition beside them: the real mdevctl cannot list the definitions any more,
    // and its boot-time start-parent-mdevs starts nothing; neither does apvirt's boot.
    d.stop()
    let empty = "0badf00d-0000-4000-8000-000000000000"
    FileManager.default.createFile(atPath: d.state + "/etc/mdevctl.d/matrix/\(empty)", contents: Data())
    try d.start()
    #expect(try d.exec(["mdevctl", "list", "-d"]).status != 0)
    #expect(
      try d.bash("test -e /sys/bus/mdev/devices/\(u2)").status != 0,
      "an mdev started beside a broken definition")
    #expect(d.log.contains("no mdev of parent matrix started"))
  }
}
