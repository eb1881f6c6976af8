import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The guests' side seen through files and the CLI: `apvirt exec --guest`, `apvirt guest`, and
/// libvirt's attach-device / detach-device.
@Suite("Interop: the guest's view, its AP instructions, libvirt's hostdev", .serialized)
struct GuestViewTests {
  let u1 = "62177883-f1bb-47f0-914d-32a22e3a8804"
  let u2 = "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3"

  func setUp(_ d: Daemon) throws {
    let m = "/sys/devices/vfio_ap/matrix"
    let r = try d.bash(
      """
      set -e
      echo -5,-6 > /sys/bus/ap/apmask
      for u in \(u1) \(u2); do echo $u > \(m)/mdev_supported_types/vfio_ap-passthrough/create; done
      echo 5 > \(m)/\(u1)/assign_adapter; echo 4 > \(m)/\(u1)/assign_domain; echo 0xab > \(m)/\(u1)/assign_domain
      echo 6 > \(m)/\(u2)/assign_adapter; echo 4 > \(m)/\(u2)/assign_domain
      """)
    #expect(r.status == 0, "\(r.stderr)")
  }

  func startGuest(_ d: Daemon, _ args: [String]) throws -> CommandResult {
    let env = ProcessInfo.processInfo.environment.merging(["APVIRT_MOUNT": d.mount]) { $1 }
    return try run(apvirtBinary, ["qemu", "-daemonize"] + args, environment: env)
  }

  @Test func theGuestsSysfsAndItsInstructions() throws {
    let d = try Daemon()
    try setUp(d)
    let q = try startGuest(
      d,
      [
        "-name", "guest1", "-cpu", "host", "-device",
        "vfio-ap,id=hostdev0,sysfsdev=/sys/bus/mdev/devices/\(u1)",
      ])
    #expect(q.status == 0, "\(q.stderr)")
    // The guest's bus scans on its own; ask it now through its `scans` attribute.
    var r = try run(
      apvirtBinary,
      [
        "exec", "--mount", d.mount, "--state", d.state, "--guest", "guest1", "--", "/bin/bash", "-c",
        "echo 1 > /sys/bus/ap/scans; ls /sys/bus/ap/devices; cat /sys/devices/ap/card05/type /sys/bus/ap/ap_usage_domain_mask; test -e /sys/devices/vfio_ap || echo no-vfio; ls /sys/bus/ap/drivers",
      ])
    #expect(r.status == 0, "\(r.stderr)")
    let mask = "0x08" + String(repeating: "0", count: 40) + "1" + String(repeating: "0", count: 21)
    // A KVM guest never loads vfio_ap: zcrypt's drivers only.
    #expect(r.stdout == "05.0004\n05.00ab\ncard05\nCEX8C\n\(mask)\nno-vfio\ncex4card\ncex4queue\n")
    // The guest's CPU reaches its queues, and only those.
    #expect(
      try d.apvirt(["guest", "guest1", "nqap", "05.0004", "--payload", "0102"]).stdout == "rc=00 (NORMAL)\n")
    #expect(
      try d.apvirt(["guest", "guest1", "dqap", "05.0004"]).stdout == "psmid=1 rc=00 (NORMAL) reply=02010504\n"
    )
    #expect(try d.apvirt(["guest", "guest1", "tapq", "06.0004"]).stdout == "rc=01 (Q_NOT_AVAIL)\n")
    #expect(try d.apvirt(["guest", "guest1", "tapq", "05.0004"]).stdout == "rc=00 (NORMAL) type=CEX8C\n")
    // --json: the reply, with the code's name.
    #expect(try d.apvirt(["guest", "guest1", "nqap", "05.00ab", "--payload", "0a0b"]).status == 0)
    let j = try d.apvirt(["guest", "guest1", "dqap", "05.00ab", "--json"])
    #expect(j.status == 0, "\(j.stderr)")
    let reply = try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any]
    #expect(reply?["instruction"] as? String == "dqap" && reply?["apqn"] as? String == "05.00ab")
    #expect(reply?["rc"] as? String == "00" && reply?["rc_name"] as? String == "NORMAL")
    #expect(reply?["psmid"] as? Int == 1 && reply?["reply"] as? String == "0b0a05ab")
    let none = try d.apvirt(["guest", "guest1", "dqap", "05.00ab", "--json"])
    let empty = try JSONSerialization.jsonObject(with: Data(none.stdout.utf8)) as? [String: Any]
    #expect(empty?["rc"] as? String == "10" && empty?["rc_name"] as? String == "NO_PENDING_REPLY")
    #expect(empty?["reply"] == nil)
    // Leave state in the queue; the host takes adapter 5 away: rc 01, and zeroized.
    _ = try d.apvirt(["guest", "guest1", "nqap", "05.0004", "--payload", "ff"])
    #expect(try d.bash("echo 5 > /sys/devices/vfio_ap/matrix/\(u1)/unassign_adapter").status == 0)
    #expect(
      try d.apvirt(["guest", "guest1", "nqap", "05.0004", "--payload", "01"]).stdout
        == "rc=01 (Q_NOT_AVAIL)\n")
    // Handed to another guest, the queue holds nothing of the first.
    #expect(try d.bash("echo 5 > /sys/devices/vfio_ap/matrix/\(u2)/assign_adapter").status == 0)
    #expect(
      try startGuest(
        d, ["-name", "guest2", "-cpu", "host", "-device", "vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(u2)"]
      ).status == 0)
    #expect(try d.apvirt(["guest", "guest2", "dqap", "05.0004"]).stdout == "rc=10 (NO_PENDING_REPLY)\n")
    #expect(try d.bash("ls /run/apvirt 2>/dev/null; true").status == 0)
    #expect(try run("/bin/ls", [d.runtime + "/guests"]).stdout == "guest1\nguest2\n")
    // Each guest's tree has inode numbers of its own, and what one guest's store changes the
    // other's tree does not show.
    let masks = ["guest1", "guest2"].map { d.runtime + "/guests/\($0)/bus/ap/ap_usage_domain_mask" }
    let inodes = try run("/usr/bin/stat", ["-c", "%i"] + masks).stdout.split(separator: "\n")
    #expect(inodes.count == 2 && inodes[0] != inodes[1], "\(inodes)")
    // Every node of the guests' mount shows the mount's one time, however often it is looked up.
    let times = try run("/usr/bin/stat", ["-c", "%Y", d.runtime + "/guests"] + masks).stdout.split(
      separator: "\n")
    #expect(times.count == 3 && Set(times).count == 1, "\(times)")
    let scans = ["guest1", "guest2"].map { d.runtime + "/guests/\($0)/bus/ap/scans" }
    let before = try run("/bin/cat", scans).stdout
    #expect(try run("/bin/bash", ["-c", "echo 1 > \(scans[1])"]).status == 0)
    let after = try run("/bin/cat", scans).stdout.split(separator: "\n")
    let was = before.split(separator: "\n")
    #expect(after.count == 2 && after[0] == was[0] && Int(after[1])! > Int(was[1])!, "\(was) \(after)")
  }

  /// Issue 11, 1: what cannot be an instruction, an APQN or a payload is refused before anything
  /// reaches the guest, with what is wrong and the usage.
  @Test func aWrongInstructionAPQNOrPayloadIsRefused() throws {
    let d = try Daemon()
    try setUp(d)
    #expect(
      try startGuest(
        d, ["-name", "g", "-cpu", "host", "-device", "vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(u1)"]
      )
      .status == 0)
    let form = "write the adapter and the domain in hex, without 0x, as sysfs names queues (05.0004)"
    let cases: [([String], String)] = [
      (["look", "06.0030"], "unknown instruction 'look': give tapq, nqap, dqap or zapq"),
      (
        ["nqap", "05.0004", "--payload", "zz"],
        "--payload 'zz' is not hex ('z'): give the request as hex digits, two a byte (0102)"
      ),
      (
        ["nqap", "05.0004", "--payload", "123"],
        "--payload '123' has an odd number of hex digits (3): give two a byte (0123)"
      ),
      (["tapq", "05.0004", "--payload", "12"], "--payload is for nqap only: tapq sends no request"),
      (["tapq", "050004"], "'050004' is not an APQN: \(form)"),
      (["tapq", "05.00.04"], "'05.00.04' is not an APQN: \(form)"),
      (["tapq", "0x05.0004"], "'0x05.0004' is not an APQN: the adapter '0x05' is not hex; \(form)"),
      (["tapq", "05."], "'05.' is not an APQN: the domain '' is not hex; \(form)"),
      (
        ["tapq", "100.0004"],
        "'100.0004' is not an APQN: adapter 0x100 is out of range: adapters are 0x00-0xff"
      ),
      (["tapq", "05.0100"], "'05.0100' is not an APQN: domain 0x100 is out of range: domains are 0x00-0xff"),
    ]
    for (args, text) in cases {
      let r = try d.apvirt(["guest", "g"] + args)
      #expect(r.status == 64, "\(args)")
      #expect(r.stdout == "")
      #expect(r.stderr.hasPrefix("Error: \(text)\n"), "\(args): \(r.stderr)")
      #expect(r.stderr.contains("Usage: apvirt guest"), "\(args)")
    }
    // Nothing reached the queue: the first DQAP finds no reply.
    #expect(try d.apvirt(["guest", "g", "dqap", "05.0004"]).stdout == "rc=10 (NO_PENDING_REPLY)\n")
  }

  @Test func libvirtAttachAndDetachDevice() throws {
    let d = try Daemon()
    try setUp(d)
    #expect(try startGuest(d, ["-name", "dom", "-cpu", "host"]).status == 0)
    let xml = d.root + "/hostdev.xml"
    try """
    <hostdev mode='subsystem' type='mdev' model='vfio-ap'>
      <source>
        <address uuid='\(u1)'/>
      </source>
    </hostdev>
    """.write(toFile: xml, atomically: true, encoding: .utf8)
    var r = try d.apvirt(["attach-device", "dom", xml])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout == "Device attached successfully\n")
    #expect(try d.bash("cat /sys/bus/ap/devices/05.0004/status").stdout == "in use\n")
    // One vfio-ap hostdev per domain.
    let other = d.root + "/other.xml"
    try
      "<hostdev mode='subsystem' type='mdev' model='vfio-ap'><source><address uuid='\(u2)'/></source></hostdev>"
      .write(
        toFile: other, atomically: true, encoding: .utf8)
    r = try d.apvirt(["attach-device", "dom", other])
    #expect(r.status != 0)
    #expect(r.stderr.contains("Only one hostdev of model vfio-ap is supported"))
    let boot = d.root + "/boot.xml"
    try
      "<hostdev mode='subsystem' type='mdev' model='vfio-ap'><source><address uuid='\(u2)'/></source><boot order='1'/></hostdev>"
      .write(
        toFile: boot, atomically: true, encoding: .utf8)
    r = try d.apvirt(["attach-device", "dom", boot])
    #expect(
      r.stderr.contains("booting from assigned devices is not supported by mediated devices of model vfio-ap")
    )
    r = try d.apvirt(["detach-device", "dom", xml])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(try d.bash("cat /sys/bus/ap/devices/05.0004/status").stdout == "assigned\n")
  }
}
