import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// A domain as libvirt's users write one for AP pass-through: s390x, a CPU model with the AP
/// features required, apvirt's emulator, and a vfio-ap mdev hostdev.
func domainXML(name: String, uuid: String, emulator: String, mdev: String, ap: Bool = true) -> String {
  let features =
    ap ? ["ap", "apqci", "apft"].map { "<feature policy='require' name='\($0)'/>" }.joined() : ""
  return """
    <domain type='kvm'>
      <name>\(name)</name>
      <uuid>\(uuid)</uuid>
      <memory unit='MiB'>512</memory>
      <vcpu>1</vcpu>
      <os><type arch='s390x' machine='s390-ccw-virtio'>hvm</type></os>
      <cpu mode='custom' match='exact' check='none'><model>z15</model>\(features)</cpu>
      <devices>
        <emulator>\(emulator)</emulator>
        <hostdev mode='subsystem' type='mdev' model='vfio-ap'>
          <source><address uuid='\(mdev)'/></source>
        </hostdev>
        <memballoon model='none'/>
      </devices>
    </domain>

    """
}

func hostdevXML(_ mdev: String) -> String {
  """
  <hostdev mode='subsystem' type='mdev' model='vfio-ap'>
    <source><address uuid='\(mdev)'/></source>
  </hostdev>

  """
}

@Suite(
  "Interop: libvirt's domains with apvirt's qemu-system-s390x", .serialized,
  .enabled(if: Requirement.libvirt && Requirement.mdevctl, Requirement.libvirtMissing))
struct LibvirtDomainTests {
  let mdev = "8a3ce2fb-0f4e-44b6-b7c2-1c3b0e7c8e9a"
  let domainUUID = "7de585c2-211a-4d1a-ba6b-f5625711f814"

  /// A host with libvirtd, an mdev holding 05.0004 and a defined domain that uses it.
  func prepared() throws -> (LibvirtHost, String) {
    let h = try LibvirtHost(domains: true)
    let m = "/sys/devices/vfio_ap/matrix"
    let made = try h.daemon.bash(
      "echo \(mdev) > \(m)/mdev_supported_types/vfio_ap-passthrough/create && echo 5 > \(m)/\(mdev)/assign_adapter && echo 4 > \(m)/\(mdev)/assign_domain"
    )
    #expect(made.status == 0, "\(made.stderr)")
    let link = h.daemon.root + "/bin/qemu-system-s390x"
    try FileManager.default.createDirectory(atPath: h.daemon.root + "/bin", withIntermediateDirectories: true)
    try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: apvirtBinary)
    let xml = h.daemon.root + "/guest1.xml"
    try domainXML(name: "guest1", uuid: domainUUID, emulator: link, mdev: mdev).write(
      toFile: xml, atomically: true, encoding: .utf8)
    try hostdevXML(mdev).write(toFile: h.daemon.root + "/hostdev.xml", atomically: true, encoding: .utf8)
    let defined = try h.virsh(["define", xml])
    #expect(defined.status == 0, "\(defined.stderr)")
    return (h, link)
  }

  /// The guest's APCB as the host sees it (`apvirt status`), "-" without such a guest.
  func apcb(_ h: LibvirtHost, _ guest: String = "guest1") throws -> String {
    let out = try h.daemon.apvirt(["status", "--json"]).stdout
    let st = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
    let vms = st?["vms"] as? [[String: Any]] ?? []
    guard let vm = vms.first(where: { $0["name"] as? String == guest }) else { return "-" }
    return (vm["apcb"] as? [String] ?? []).joined(separator: " ")
  }

  /// This host's emulator processes (its `bin/qemu-system-s390x -name guest=...`) still running.
  func emulators(_ h: LibvirtHost) throws -> [String] {
    let pattern = h.daemon.root + "/bin/qemu-system-s390x -name guest="
    return try run("/usr/bin/pgrep", ["-f", pattern]).stdout.split(separator: "\n").map(String.init)
  }

  @Test func startDetachAttachAndTheMonitor() throws {
    let (h, link) = try prepared()
    let started = try h.virsh(["start", "guest1"])
    #expect(started.status == 0, "\(started.stderr)\n\(h.libvirtdLog.suffix(2000))")
    #expect(try h.virsh(["domstate", "guest1"]).stdout == "running\n\n")
    // The emulator runs as libvirt runs QEMU: as libvirt-qemu, with libvirt's environment.
    let pids = try emulators(h)
    #expect(pids.count == 1)
    let owner = try run("/usr/bin/ps", ["-o", "user=", "-p", pids.first ?? "0"]).stdout
    #expect(owner.hasPrefix("libvirt+") || owner.hasPrefix("libvirt-qemu"), "\(owner)")
    #expect(try apcb(h) == "05.0004")
    let view = try run(
      apvirtBinary,
      [
        "exec", "--mount", h.daemon.mount, "--state", h.daemon.state, "--guest", "guest1", "--", "ls",
        "/sys/bus/ap/devices",
      ])
    #expect(view.stdout.split(separator: "\n").contains("05.0004"), "\(view.stdout)\(view.stderr)")
    let hostdev = h.daemon.root + "/hostdev.xml"

    // detach-device: device_del, DEVICE_DELETED, and the guest's APCB is empty.
    let detached = try h.virsh(["detach-device", "guest1", hostdev])
    #expect(detached.status == 0, "\(detached.stderr)")
    #expect(try apcb(h) == "")
    #expect(!(try h.virsh(["dumpxml", "guest1"]).stdout.contains("<hostdev")))
    let attached = try h.virsh(["attach-device", "guest1", hostdev])
    #expect(attached.status == 0, "\(attached.stderr)")
    #expect(try apcb(h) == "05.0004")
    // One mdev, one guest: libvirt refuses a second hostdev of it.
    let again = try h.virsh(["attach-device", "guest1", hostdev])
    #expect(again.status != 0)
    #expect(again.stderr.contains("is in use by driver QEMU, domain guest1"), "\(again.stderr)")
    // A second mdev: libvirt passes it on and QEMU finds the AP bus full (its text from 10.2);
    // a domain defined with two is libvirt's own refusal.
    let second = "33333333-2222-4333-8444-555555555555"
    let m = "/sys/devices/vfio_ap/matrix"
    #expect(
      try h.daemon.bash(
        "echo \(second) > \(m)/mdev_supported_types/vfio_ap-passthrough/create && echo 6 > \(m)/\(second)/assign_adapter && echo 0x47 > \(m)/\(second)/assign_domain"
      ).status == 0)
    try hostdevXML(second).write(toFile: h.daemon.root + "/second.xml", atomically: true, encoding: .utf8)
    let full = try h.virsh(["attach-device", "guest1", h.daemon.root + "/second.xml"])
    #expect(full.status != 0)
    #expect(full.stderr.contains("A 'ap-bus' bus was found but is full"), "\(full.stderr)")
    #expect(try apcb(h) == "05.0004")
    let two = domainXML(name: "two", uuid: "22222222-2222-4333-8444-555555555555", emulator: link, mdev: mdev)
      .replacingOccurrences(of: "    <memballoon", with: hostdevXML(second) + "    <memballoon")
    try two.write(toFile: h.daemon.root + "/two.xml", atomically: true, encoding: .utf8)
    let refused = try h.virsh(["define", h.daemon.root + "/two.xml"])
    #expect(refused.status != 0)
    #expect(refused.stderr.contains("Only one hostdev of model vfio-ap is supported"), "\(refused.stderr)")

    // The monitor as the kernel documentation uses it.
    let del = try h.virsh(["qemu-monitor-command", "guest1", "--hmp", "device_del hostdev0"])
    #expect(
      del.status == 0 && del.stdout.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(del.stderr)")
    #expect(try apcb(h) == "")
    let add = try h.virsh([
      "qemu-monitor-command", "guest1", "--hmp",
      "device_add vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(mdev),id=hostdev0",
    ])
    #expect(add.status == 0, "\(add.stderr)")
    #expect(try apcb(h) == "05.0004")

    // virsh shutdown: system_powerdown, the guest's SHUTDOWN, libvirt ends the emulator.
    let down = try h.virsh(["shutdown", "guest1"])
    #expect(down.status == 0, "\(down.stderr)")
    #expect(try h.eventually { try h.virsh(["domstate", "guest1"]).stdout == "shut off\n\n" })
    #expect(try h.eventually { try emulators(h).isEmpty && apcb(h) == "-" })

    // virsh destroy ends it too, and nothing of the guest is left in the daemon.
    #expect(try h.virsh(["start", "guest1"]).status == 0)
    #expect(try apcb(h) == "05.0004")
    let destroyed = try h.virsh(["destroy", "guest1"])
    #expect(destroyed.status == 0, "\(destroyed.stderr)")
    #expect(try h.eventually { try emulators(h).isEmpty && apcb(h) == "-" })
  }

  /// The documentation's procedure around a live migration, on one host: detach, remove the
  /// mdev, create it again with the same matrix, attach; and the host taking an in-use mdev
  /// away, which makes libvirt drop the hostdev.
  @Test func theMigrationProcedureAndAHostRemovingTheMdev() throws {
    let (h, _) = try prepared()
    #expect(try h.virsh(["start", "guest1"]).status == 0)
    let hostdev = h.daemon.root + "/hostdev.xml"
    let m = "/sys/devices/vfio_ap/matrix"
    #expect(try h.virsh(["detach-device", "guest1", hostdev]).status == 0)
    #expect(try apcb(h) == "")
    #expect(try h.daemon.bash("echo 1 > \(m)/\(mdev)/remove").status == 0)
    let again = try h.daemon.bash(
      "echo \(mdev) > \(m)/mdev_supported_types/vfio_ap-passthrough/create && echo 5 > \(m)/\(mdev)/assign_adapter && echo 4 > \(m)/\(mdev)/assign_domain"
    )
    #expect(again.status == 0, "\(again.stderr)")
    #expect(try apcb(h) == "")
    let attached = try h.virsh(["attach-device", "guest1", hostdev])
    #expect(attached.status == 0, "\(attached.stderr)")
    #expect(try apcb(h) == "05.0004")

    // The host removes the mdev the guest uses: vfio_ap asks QEMU for it back (the request
    // IRQ), QEMU unplugs it with an unsolicited DEVICE_DELETED, and libvirt drops the hostdev.
    let removed = try h.daemon.bash("echo 1 > \(m)/\(mdev)/remove")
    #expect(removed.status == 0, "\(removed.stderr)")
    #expect(try apcb(h) == "")
    #expect(try h.eventually { try !h.virsh(["dumpxml", "guest1"]).stdout.contains("<hostdev") })
    #expect(try h.virsh(["destroy", "guest1"]).status == 0)
  }

  /// What an ordinary domain XML has besides the hostdev: the default balloon, a pty console and
  /// a disk (accepted; it does no I/O).
  @Test func anOrdinaryDomainWithBalloonConsoleAndDisk() throws {
    let (h, link) = try prepared()
    let xml = h.daemon.root + "/ordinary.xml"
    let image = h.daemon.root + "/disk.img"
    FileManager.default.createFile(atPath: image, contents: Data(count: 1 << 20))
    let disk =
      "<console type='pty'/><disk type='file' device='disk'><driver name='qemu' type='raw'/>"
      + "<source file='\(image)'/><target dev='vda' bus='virtio'/></disk>"
    try domainXML(name: "ordinary", uuid: "44444444-2222-4333-8444-555555555555", emulator: link, mdev: mdev)
      .replacingOccurrences(of: "<memballoon model='none'/>", with: disk)
      .write(toFile: xml, atomically: true, encoding: .utf8)
    #expect(try h.virsh(["define", xml]).status == 0)
    let started = try h.virsh(["start", "ordinary"])
    #expect(started.status == 0, "\(started.stderr)")
    let live = try h.virsh(["dumpxml", "ordinary"]).stdout
    #expect(live.contains("<console type='pty' tty='/dev/pts/"), "\(live)")
    #expect(live.contains("<memballoon model='virtio'>"))
    #expect(try h.virsh(["domblklist", "ordinary"]).stdout.contains("vda      \(image)"))
    #expect(try h.virsh(["setmem", "ordinary", "256M"]).status == 0)
    #expect(try h.virsh(["dominfo", "ordinary"]).stdout.contains("Used memory:    262144 KiB"))
    #expect(try apcb(h, "ordinary") == "05.0004")
    #expect(try h.virsh(["destroy", "ordinary"]).status == 0)
    #expect(try h.eventually { try emulators(h).isEmpty && apcb(h, "ordinary") == "-" })
  }

  /// A CPU model without `ap` gives the guest no AP bus, and QEMU refuses the vfio-ap device.
  @Test func aCPUWithoutAPCannotStart() throws {
    let (h, link) = try prepared()
    let xml = h.daemon.root + "/noap.xml"
    try domainXML(
      name: "noap", uuid: "11111111-2222-4333-8444-555555555555", emulator: link, mdev: mdev, ap: false
    ).write(toFile: xml, atomically: true, encoding: .utf8)
    #expect(try h.virsh(["define", xml]).status == 0)
    let started = try h.virsh(["start", "noap"])
    #expect(started.status != 0)
    #expect(started.stderr.contains("No 'ap-bus' bus found for device 'vfio-ap'"), "\(started.stderr)")
    #expect(try h.eventually { try emulators(h).isEmpty && apcb(h, "noap") == "-" })
  }

  /// `apvirt capture` names libvirt's guest as libvirt started it: the daemon has the `-cpu`
  /// libvirt gave, and reading libvirt's own files (its persistent definitions under
  /// etc/libvirt/qemu, with their `autostart` and `networks` beside them, and `virsh dumpxml`
  /// of the running domain) gives the same name and CPU model.
  @Test func captureNamesTheDomainFromTheDaemonAndFromLibvirtsFiles() throws {
    let (h, _) = try prepared()
    let started = try h.virsh(["start", "guest1"])
    #expect(started.status == 0, "\(started.stderr)\n\(h.libvirtdLog.suffix(2000))")
    let guest = "  - name: guest1\n    cpu: \"z15,ap=on,apqci=on,apft=on\"\n    mdev: \(mdev)\n"

    let fromDaemon = try run(apvirtBinary, ["capture", "--sysfs", h.daemon.mount])
    #expect(fromDaemon.status == 0, "\(fromDaemon.stderr)")
    #expect(fromDaemon.stdout.hasSuffix("guests:\n" + guest), "\(fromDaemon.stdout)")

    let persistent = h.daemon.state + "/private/etc/libvirt/qemu"
    let dumped = h.daemon.root + "/dumped"
    try FileManager.default.createDirectory(atPath: dumped, withIntermediateDirectories: true)
    let dump = try h.virsh(["dumpxml", "guest1"])
    #expect(dump.stdout.contains("<domain type='kvm' id="), "\(dump.stdout)")
    try dump.stdout.write(toFile: dumped + "/guest1.xml", atomically: true, encoding: .utf8)
    for dir in [persistent, dumped] {
      let r = try run(apvirtBinary, ["capture", "--sysfs", h.daemon.mount, "--libvirt", dir])
      #expect(r.status == 0, "\(dir): \(r.stderr)")
      #expect(r.stdout.hasSuffix("guests:\n" + guest), "\(dir): \(r.stdout)")
      #expect(r.stdout.contains("# Guest names and CPU models from libvirt's domains in \(dir).\n"))
      #expect(r.stderr == "", "\(dir): \(r.stderr)")
    }
  }
}
