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
    #expect(try d.apvirt(["guest", "guest1", "nqap", "05.0004", "--payload", "0102"]).stdout == "rc=00\n")
    #expect(try d.apvirt(["guest", "guest1", "dqap", "05.0004"]).stdout == "psmid=1 rc=00 reply=02010504\n")
    #expect(try d.apvirt(["guest", "guest1", "tapq", "06.0004"]).stdout == "rc=01\n")
    // Leave state in the queue; the host takes adapter 5 away: rc 01, and zeroized.
    _ = try d.apvirt(["guest", "guest1", "nqap", "05.0004", "--payload", "ff"])
    #expect(try d.bash("echo 5 > /sys/devices/vfio_ap/matrix/\(u1)/unassign_adapter").status == 0)
    #expect(try d.apvirt(["guest", "guest1", "nqap", "05.0004", "--payload", "01"]).stdout == "rc=01\n")
    // Handed to another guest, the queue holds nothing of the first.
    #expect(try d.bash("echo 5 > /sys/devices/vfio_ap/matrix/\(u2)/assign_adapter").status == 0)
    #expect(
      try startGuest(
        d, ["-name", "guest2", "-cpu", "host", "-device", "vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(u2)"]
      ).status == 0)
    #expect(try d.apvirt(["guest", "guest2", "dqap", "05.0004"]).stdout == "rc=10\n")
    #expect(try d.bash("ls /run/apvirt 2>/dev/null; true").status == 0)
    #expect(try run("/bin/ls", [d.runtime + "/guests"]).stdout == "guest1\nguest2\n")
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
