import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The Python `qemu.qmp` client, unmodified, against guests started with `apvirt qemu`.
@Suite(
  "Interop: qemu.qmp against apvirt guests", .serialized,
  .enabled(if: Requirement.qemuQMP, Requirement.qemuQMPMissing))
struct QMPInteropTests {
  let u1 = "62177883-f1bb-47f0-914d-32a22e3a8804"
  let u2 = "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3"
  static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
    "Scripts/qmp_scenario.py"
  ).path

  func prepare(_ d: Daemon) throws {
    let m = "/sys/devices/vfio_ap/matrix"
    let r = try d.bash(
      """
      set -e
      echo -5,-6 > /sys/bus/ap/apmask
      for u in \(u1) \(u2); do echo $u > \(m)/mdev_supported_types/vfio_ap-passthrough/create; done
      echo 5 > \(m)/\(u1)/assign_adapter; echo 4 > \(m)/\(u1)/assign_domain
      echo 6 > \(m)/\(u2)/assign_adapter; echo 4 > \(m)/\(u2)/assign_domain
      """)
    #expect(r.status == 0, "\(r.stderr)")
  }

  /// Starts `apvirt qemu` in the background; returns the process once its QMP socket exists.
  func startGuest(_ d: Daemon, _ args: [String]) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: apvirtBinary)
    p.arguments = ["qemu"] + args
    p.environment = ProcessInfo.processInfo.environment.merging(["APVIRT_MOUNT": d.mount]) { $1 }
    let log = d.root + "/qemu-\(UUID().uuidString.prefix(4)).log"
    FileManager.default.createFile(atPath: log, contents: nil)
    p.standardError = FileHandle(forWritingAtPath: log)
    try p.run()
    return p
  }

  func waitForSocket(_ path: String) {
    for _ in 0..<100 where !FileManager.default.fileExists(atPath: path) { usleep(50_000) }
  }

  func python(_ args: [String]) throws -> CommandResult {
    try run("/usr/bin/env", ["python3", Self.script] + args)
  }

  @Test func hotPlugUnplugAndTheBusFullError() throws {
    let d = try Daemon()
    try prepare(d)
    let sock = d.root + "/g1.qmp"
    let qemu = try startGuest(
      d, ["-name", "g1", "-cpu", "host", "-qmp", "unix:\(sock),server=on,wait=off", "-nographic"])
    waitForSocket(sock)
    let r = try python(["hotplug", sock, "/sys/bus/mdev/devices/\(u1)", "/sys/bus/mdev/devices/\(u2)"])
    #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
    #expect(!r.stdout.contains("FAIL"), "\(r.stdout)")
    // The host's removal of the mdev in use: the guest unplugs it and says so unasked.
    let waiter = Process()
    waiter.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    waiter.arguments = ["python3", Self.script, "unsolicited", sock]
    let out = Pipe()
    waiter.standardOutput = out
    try waiter.run()
    let ready = out.fileHandleForReading.availableData
    #expect(String(decoding: ready, as: UTF8.self).contains("ready"))
    let removal = try d.bash("echo 1 > /sys/bus/mdev/devices/\(u1)/remove; ls /sys/bus/mdev/devices")
    #expect(removal.status == 0, "\(removal.stderr)")
    #expect(removal.stdout == "\(u2)\n")
    #expect(waitForExit(waiter, seconds: 30))
    let rest = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    #expect(waiter.terminationStatus == 0, "\(rest)")
    #expect(rest.contains("ok unsolicited DEVICE_DELETED"), "\(rest)")
    // quit ended the guest, and with it `apvirt qemu`.
    #expect(waitForExit(qemu))
    #expect(qemu.terminationStatus == 0)
  }

  @Test func aGuestWithoutAPHasNoAPBus() throws {
    let d = try Daemon()
    try prepare(d)
    let sock = d.root + "/g2.qmp"
    let qemu = try startGuest(
      d, ["-name", "g2", "-cpu", "z15,ap=off", "-qmp", "unix:\(sock),server=on,wait=off"])
    waitForSocket(sock)
    let r = try python(["ap-off", sock, "/sys/bus/mdev/devices/\(u1)"])
    #expect(r.status == 0, "\(r.stdout)\(r.stderr)")
    qemu.terminate()
    #expect(waitForExit(qemu))
  }

  @Test func aHostBefore6_15HasNoConfigChangeIRQAndQEMUWarns() throws {
    // QEMU 10.2 wires the config-change IRQ by default; a kernel without it (Linux 6.12 here)
    // has one IRQ, so realize warns and the guest starts all the same.
    let d = try Daemon(options: ["--kernel", "6.12"])
    try prepare(d)
    let env = ProcessInfo.processInfo.environment.merging(["APVIRT_MOUNT": d.mount]) { $1 }
    let dev = "vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(u1)"
    var r = try run(
      apvirtBinary, ["qemu", "-cpu", "host", "-daemonize", "-name", "old", "-device", dev], environment: env)
    #expect(r.status == 0, "\(r.stderr)")
    #expect(
      r.stderr == "qemu-system-s390x: -device \(dev): warning: vfio: IRQ 1 not available (number of irqs 1)\n"
    )
    #expect(try d.bash("cat \(d.mount)/devices/vfio_ap/matrix/\(u1)/guest_matrix").stdout == "05.0004\n")
    // x-cfg-chg-irq=off asks for no such IRQ, so nothing is said.
    r = try run(
      apvirtBinary,
      [
        "qemu", "-cpu", "host", "-daemonize", "-name", "old2", "-device",
        "vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(u2),x-cfg-chg-irq=off",
      ],
      environment: env)
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stderr == "")
  }

  @Test func commandLineErrorsAreQEMUs() throws {
    let d = try Daemon()
    try prepare(d)
    var r = try run(apvirtBinary, ["qemu", "-bogus"])
    #expect(r.status == 1)
    #expect(r.stderr == "qemu-system-s390x: -bogus: invalid option\n")
    let env = ProcessInfo.processInfo.environment.merging(["APVIRT_MOUNT": d.mount]) { $1 }
    r = try run(
      apvirtBinary,
      ["qemu", "-cpu", "z15,ap=off", "-device", "vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(u1)"],
      environment: env)
    #expect(r.status == 1)
    #expect(
      r.stderr
        == "qemu-system-s390x: -device vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(u1): No 'ap-bus' bus found for device 'vfio-ap'\n"
    )
    r = try run(apvirtBinary, ["qemu", "-cpu", "z15,apqci=on", "-daemonize", "-name", "w"], environment: env)
    #expect(r.status == 0)
    #expect(r.stderr == "qemu-system-s390x: warning: 'apqci' requires 'ap'.\n")
    // The multi-call name.
    let link = d.root + "/qemu-system-s390x"
    try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: apvirtBinary)
    r = try run(link, ["-nosuch"])
    #expect(r.stderr == "qemu-system-s390x: -nosuch: invalid option\n")
  }
}
