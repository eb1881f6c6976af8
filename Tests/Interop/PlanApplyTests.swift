import Foundation
import Planning
import Scenario
import Testing

/// `apvirt plan` and `apvirt apply` against a running emulated host.
@Suite(.serialized) struct PlanApplyTests {
  static let threeGuests = ScenarioInteropTests.examplesDirectory + "/three-guests.yaml"

  func capture(_ d: Daemon, _ name: String) throws -> Scenario {
    let out = d.root + "/" + name
    let r = try run(apvirtBinary, ["capture", "--sysfs", d.mount, "-o", out])
    #expect(r.status == 0, "\(r.stderr)")
    return try ScenarioLoader.load(path: out)
  }

  /// What a capture gives back of the scenario, without the guests (apply starts none) and with
  /// every mdev `manual` (no mdevctl definition in the daemon's state) unless `persisted`.
  func expected(_ path: String, persisted: Bool = false) throws -> Scenario {
    var s = ScenarioCapture.visible(try ScenarioLoader.load(path: path))
    s.guests = []
    if !persisted {
      s.mdevs = s.mdevs.map {
        var m = $0; m.start = .manual; return m
      }
    }
    s.mdevs.sort { $0.uuid < $1.uuid }
    return s
  }

  @Test func emptyHostToThreeGuestsByPlanThenApply() throws {
    let d = try Daemon()
    let plan = try run(apvirtBinary, ["plan", Self.threeGuests, "--sysfs", d.mount])
    #expect(plan.status == 0, "\(plan.stderr)")
    #expect(plan.stdout.contains("echo -5,-6 > bus/ap/apmask"), "\(plan.stdout)")
    // Masks are freed before anything is assigned.
    let lines = plan.stdout.split(separator: "\n").filter { $0.hasPrefix("echo ") }
    #expect(lines.count == 16)
    #expect(lines.prefix(2).allSatisfy { $0.contains("bus/ap/") })
    let json = try run(apvirtBinary, ["plan", Self.threeGuests, "--sysfs", d.mount, "--json"])
    #expect(json.stdout.contains("\"reachable\" : true"), "\(json.stdout)")

    let apply = try run(apvirtBinary, ["apply", Self.threeGuests, "--sysfs", d.mount])
    #expect(apply.status == 0, "\(apply.stderr)")
    var got = try capture(d, "after.yaml")
    got.mdevs.sort { $0.uuid < $1.uuid }
    #expect(got == (try expected(Self.threeGuests)))
    // And nothing is left to do.
    let again = try run(apvirtBinary, ["plan", Self.threeGuests, "--sysfs", d.mount])
    #expect(again.stdout.contains(": 0 writes"), "\(again.stdout)")
  }

  @Test func thePlanRunByHandGivesTheSameResult() throws {
    let d = try Daemon()
    let plan = try run(apvirtBinary, ["plan", Self.threeGuests, "--sysfs", d.mount])
    #expect(plan.status == 0, "\(plan.stderr)")
    // The plan is a shell script to run from the sysfs root (its effects are comments).
    let r = try d.bash("set -e; cd /sys\n" + plan.stdout)
    #expect(r.status == 0, "\(r.stderr)")
    var got = try capture(d, "by-hand.yaml")
    got.mdevs.sort { $0.uuid < $1.uuid }
    #expect(got == (try expected(Self.threeGuests)))
  }

  /// A change made by hand while apply runs makes a write fail with the kernel's errno: apply
  /// undoes what it did and the host is exactly as before.
  @Test func aFailureMidwayLeavesTheHostAsBefore() throws {
    let d = try Daemon()
    let before = try SysfsSnapshot.read(root: d.mount)
    // Before write 10 (a domain for the first mdev with adapters 05 06), 06.0004 goes back to the host.
    let r = try run(
      apvirtBinary,
      [
        "apply", Self.threeGuests, "--sysfs", d.mount,
        "--before-write", "10:echo +6 > bus/ap/apmask; echo +0x4 > bus/ap/aqmask",
      ])
    #expect(r.status == 1)
    #expect(r.stderr.contains("write 10 of 16 failed"), "\(r.stderr)")
    #expect(r.stderr.contains("(EADDRNOTAVAIL)"), "\(r.stderr)")
    #expect(r.stderr.contains("the host is as it was before apply"), "\(r.stderr)")
    #expect(try SysfsSnapshot.read(root: d.mount) == before)
  }

  /// Another mdev made by hand midway takes an APQN: the assign hits EADDRINUSE; apply undoes
  /// its own writes, and once the hand-made mdev is gone the host is exactly as before.
  @Test func anMdevMadeByHandMidwayIsEADDRINUSE() throws {
    let d = try Daemon()
    _ = try d.bash("echo -5,-6 > /sys/bus/ap/apmask; echo -0x4,-0x47,-0xab,-0xff > /sys/bus/ap/aqmask")
    let before = try SysfsSnapshot.read(root: d.mount)
    let u = "11111111-2222-4333-8444-555555555555"
    let m = "devices/vfio_ap/matrix/"
    let hook =
      "3:echo \(u) > \(m)mdev_supported_types/vfio_ap-passthrough/create; echo 5 > \(m)\(u)/assign_adapter; echo 0x47 > \(m)\(u)/assign_domain"
    let r = try run(apvirtBinary, ["apply", Self.threeGuests, "--sysfs", d.mount, "--before-write", hook])
    #expect(r.status == 1)
    #expect(r.stderr.contains("write 3 of 14 failed"), "\(r.stderr)")
    #expect(r.stderr.contains("(EADDRINUSE)"), "\(r.stderr)")
    #expect(r.stderr.contains("05.0047 is held by mdev \(u)"), "\(r.stderr)")
    _ = try d.bash("echo 1 > /sys/\(m)\(u)/remove")
    #expect(try SysfsSnapshot.read(root: d.mount) == before)
  }

  /// On a host without AP extended addressing (Nd 15) the three guests' domains 0x47, 0xab and
  /// 0xff do not exist: refused, with each write the kernel would refuse and why; nothing written.
  @Test func anUnreachableTargetIsRefusedWithTheConflicts() throws {
    let d = try Daemon(options: ["--machine", ScenarioInteropTests.examplesDirectory + "/format0.yaml"])
    let before = try SysfsSnapshot.read(root: d.mount)
    let p = try run(apvirtBinary, ["plan", Self.threeGuests, "--sysfs", d.mount])
    #expect(p.status == 1)
    #expect(p.stderr.contains("cannot reach"), "\(p.stderr)")
    #expect(p.stderr.contains("assign_domain: ENODEV: domain 171 (0xab) is beyond aqm_max 15"), "\(p.stderr)")
    let j = try run(apvirtBinary, ["plan", Self.threeGuests, "--sysfs", d.mount, "--json"])
    #expect(j.status == 1)
    #expect(j.stdout.contains("\"reachable\" : false"))
    let a = try run(apvirtBinary, ["apply", Self.threeGuests, "--sysfs", d.mount])
    #expect(a.status == 1)
    #expect(try SysfsSnapshot.read(root: d.mount) == before)
  }

  @Test func persistWritesTheDefinitionsAndTheMasks() throws {
    let d = try Daemon()
    let r = try run(
      apvirtBinary, ["apply", Self.threeGuests, "--sysfs", d.mount, "--persist", "--state", d.state])
    #expect(r.status == 0, "\(r.stderr)")
    let def = try String(
      contentsOfFile: d.state + "/etc/mdevctl.d/matrix/62177883-f1bb-47f0-914d-32a22e3a8804", encoding: .utf8)
    #expect(def.contains("\"start\": \"auto\""))
    #expect(def.contains("\"assign_control_domain\": \"0x00ab\""))
    let rules = try String(contentsOfFile: d.state + "/etc/udev/rules.d/41-ap.rules", encoding: .utf8)
    #expect(rules.contains("ATTR{../../bus/ap/apmask}=\"0xf9ff"))
    // mdevctl (where installed) reads the definitions as its own.
    // After a reboot the host comes back the same.
    d.stop()
    try d.start()
    var got = try capture(d, "rebooted.yaml")
    got.mdevs.sort { $0.uuid < $1.uuid }
    #expect(got == (try expected(Self.threeGuests, persisted: true)))
  }
}
