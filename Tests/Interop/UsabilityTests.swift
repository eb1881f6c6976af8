import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The CLI as a user meets it: what each command prints, how it fails and with which exit
/// status, and what a reboot keeps.
@Suite("Interop: apvirt as a user meets it", .serialized)
struct UsabilityTests {
  let u1 = "62177883-f1bb-47f0-914d-32a22e3a8804"
  let u2 = "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3"
  let u3 = "9b1f2a3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"

  func scratch() throws -> String {
    let dir = "/tmp/apvirt-test-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
  }

  @Test func versionIsPrinted() throws {
    let r = try run(apvirtBinary, ["--version"])
    #expect(r.status == 0)
    #expect(r.stdout == "apvirt 0.9.0 (Linux 6.19 AP bus and vfio_ap, QEMU 10.2.0 vfio-ap)\n")
  }

  @Test func runtimeFailuresExit1WithTheReasonAndNoUsage() throws {
    let dir = try scratch()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var r = try run(apvirtBinary, ["status", "--mount", dir + "/sys"])
    #expect(r.status == 1)
    #expect(
      r.stderr
        == "Error: no apvirt daemon at \(dir)/sys (cannot connect to \(dir)/control.sock: No such file or directory); start one with `apvirt up`\n"
    )
    r = try run(apvirtBinary, ["detach-device", "g1", dir + "/missing.xml"])
    #expect(r.status == 1)
    #expect(r.stderr == "Error: \(dir)/missing.xml: No such file or directory\n")
    // A bad argument is still a usage error (64, with the usage).
    r = try run(apvirtBinary, ["up", "--threads", "0"])
    #expect(r.status == 64)
    #expect(r.stderr.contains("Usage: apvirt up"))
  }

  @Test func aMountPointThatIsAFileIsRefusedAndNothingIsTaken() throws {
    let dir = try scratch()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    FileManager.default.createFile(atPath: dir + "/passwd", contents: Data("root:x:0:0\n".utf8))
    chmod(dir, 0o755)
    var r = try run(apvirtBinary, ["up", "--mount", dir + "/passwd", "--state", dir + "/state"])
    #expect(r.status == 1)
    #expect(
      r.stderr.contains("cannot mount at \(dir)/passwd: it exists and is not a directory"), "\(r.stderr)")
    // A directory that holds what is not apvirt's is not made the daemon's runtime directory.
    FileManager.default.createFile(atPath: dir + "/notes.txt", contents: Data())
    r = try run(apvirtBinary, ["up", "--mount", dir + "/sys", "--state", dir + "/state"])
    #expect(r.status == 1)
    #expect(r.stderr.contains("\(dir) holds files that are not apvirt's (notes.txt, passwd)"), "\(r.stderr)")
    var st = stat()
    stat(dir, &st)
    #expect(st.st_mode & 0o777 == 0o755, "the directory's mode was changed")
    #expect(!FileManager.default.fileExists(atPath: dir + "/apvirt.lock"))
    #expect(!r.stderr.contains("NSCocoaErrorDomain"))
  }

  @Test func statusForAUserWhoMayNotReachTheDaemonSaysSo() throws {
    let d = try Daemon()
    let r = try run(
      "/usr/bin/setpriv",
      ["--reuid", "65534", "--regid", "65534", "--clear-groups", apvirtBinary, "status", "--mount", d.mount])
    #expect(r.status == 1)
    #expect(
      r.stderr.hasPrefix("Error: permission denied: \(d.runtime) belongs to the daemon's user"), "\(r.stderr)"
    )
    #expect(!r.stderr.contains("start one with"))
  }

  @Test func execDoesNotMakeAStateDirectory() throws {
    let d = try Daemon()
    let missing = d.root + "/no-such-state"
    let r = try run(apvirtBinary, ["exec", "--mount", d.mount, "--state", missing, "--", "true"])
    #expect(r.status == 1)
    #expect(r.stderr.contains("no state directory at \(missing)"), "\(r.stderr)")
    #expect(!FileManager.default.fileExists(atPath: missing))
  }

  @Test func downSaysWhatItStoppedAndLeavesOnlyTheLock() throws {
    let d = try Daemon()
    let r = try d.apvirt(["down"])
    #expect(r.status == 0)
    #expect(r.stdout == "stopped the emulated host at \(d.mount)\n")
    #expect(waitForExit(d.process!))
    d.process = nil
    #expect(try FileManager.default.contentsOfDirectory(atPath: d.runtime) == ["apvirt.lock"])
  }

  @Test func statusIsReadable() throws {
    let d = try Daemon()
    try d.bash(
      """
      set -e
      echo -5 > /sys/bus/ap/apmask
      echo \(u1) > /sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create
      echo 5 > /sys/devices/vfio_ap/matrix/\(u1)/assign_adapter
      echo 4 > /sys/devices/vfio_ap/matrix/\(u1)/assign_domain
      echo 7 > /sys/devices/vfio_ap/matrix/\(u1)/assign_control_domain
      """)
    let r = try d.apvirt(["status"])
    #expect(r.status == 0)
    let lines = r.stdout.split(separator: "\n", omittingEmptySubsequences: false)
    #expect(
      lines.first
        == "Linux 6.19 on machine default: 12 adapters, 256 usage domains, 256 control domains, CRYCB format 2"
    )
    #expect(
      lines.contains("queues: 3072, bound 2816 to cex4queue, 256 to vfio_ap; 1 AP bus scan"), "\(r.stdout)")
    #expect(lines.contains("adapter 05 CEX8C CCA-Coproc"))
    #expect(lines.contains("adapter 0b CEX8A Accelerator"), "\(r.stdout)")
    #expect(lines.contains("mdev \(u1): matrix 05.0004; control domains 0007; no guest"), "\(r.stdout)")
    #expect(!r.stdout.contains(" \n"), "trailing spaces")
    // Each store is in the daemon's log with its result; a refused one with its errno. The
    // stores' lines come shortly after their replies, in order.
    _ = try d.bash("echo 0x99 > /sys/devices/vfio_ap/matrix/\(u1)/assign_adapter")
    let refused =
      "info: store devices/vfio_ap/matrix/\(u1)/assign_adapter \"0x99\": EADDRNOTAVAIL (Cannot assign requested address)"
    let log = d.log(waitingFor: refused)
    #expect(log.contains("info: store bus/ap/apmask \"-5\": ok"), "\(log)")
    #expect(log.contains(refused), "\(log)")
    #expect(!log.contains("[apvirt]"))
    #expect(!log.contains("control: status"))
  }

  @Test func statusShowsTheFirmwaresLatenciesAndFaults() throws {
    let d = try Daemon()
    var r = try d.apvirt(["hw", "latency", "5", "--reset", "150", "--irq", "5"])
    #expect(r.status == 0, "\(r.stderr)")
    r = try d.apvirt(["hw", "fault", "05.0004", "busy", "--count", "2"])
    #expect(r.status == 0, "\(r.stderr)")
    let st = try d.apvirt(["status"]).stdout
    #expect(st.contains("adapter 05 CEX8C CCA-Coproc reset latency 150ms irq latency 5ms\n"), "\(st)")
    #expect(st.contains("fault: queue 05.0004: busy for the next 2 resets\n"), "\(st)")
    let json = try JSONSerialization.jsonObject(with: Data(try d.apvirt(["status", "--json"]).stdout.utf8))
    let adapters = (json as? [String: Any])?["adapters"] as? [[String: Any]] ?? []
    #expect(adapters.first { $0["apid"] as? Int == 5 }?["reset_latency_ms"] as? Double == 150)
  }

  @Test func bootMasksFromTheKernelCommandLine() throws {
    let d = try Daemon(options: ["--cmdline", #"ap.apmask="0xf9ff" ap.aqmask=0x0-"#])
    #expect(
      try d.bash("cat /sys/bus/ap/apmask").stdout
        == "0xf9ff000000000000000000000000000000000000000000000000000000000000\n")
    // A value the kernel cannot parse leaves that mask empty (ap_perms_init ignores the error).
    #expect(try d.bash("cat /sys/bus/ap/aqmask").stdout == "0x" + String(repeating: "0", count: 64) + "\n")
    #expect(
      d.log.contains("warning: kernel command line: ap.aqmask=0x0- is not a mask the kernel can parse"),
      "\(d.log)")
    #expect(try d.bash("readlink /sys/bus/ap/devices/05.0004/driver").stdout.hasSuffix("/vfio_ap\n"))
    let st = try d.apvirt(["status"])
    #expect(st.stdout.contains("boot: kernel command line: ap.aqmask=0x0- is not a mask"), "\(st.stdout)")
    // What the kernel would hand to init is refused here, naming what is modelled.
    let r = try run(apvirtBinary, ["up", "--cmdline", "ap.apmask=0x0 quiet", "--mount", d.root + "/x/sys"])
    #expect(r.status == 64)
    #expect(
      r.stderr.hasPrefix(
        "Error: --cmdline: kernel parameter 'quiet' is not modelled; apvirt knows ap.apmask and ap.aqmask"),
      "\(r.stderr)")
  }

  /// At boot the real mdevctl starts the auto mdevs, as udev runs it on a real host, with its
  /// callouts: one that refuses a control-domain-only mdev (as s390-tools' ap-check does) keeps
  /// it from starting at boot as it would at `mdevctl start`.
  @Test(.enabled(if: Requirement.mdevctl, Requirement.mdevctlMissing))
  func bootRunsMdevctlWithItsCallouts() throws {
    let d = try Daemon()
    let callouts = d.state + "/etc/mdevctl.d/scripts.d/callouts"
    let script = callouts + "/refuse-control-only"
    try """
    #!/bin/sh
    # pre start: refuse a device without an adapter (what ap-check does)
    case "$*" in *"-e pre"*"-a start"*) grep -q assign_adapter || { echo "refused by callout" >&2; exit 1; } ;; esac
    exit 0
    """.write(toFile: script, atomically: true, encoding: .utf8)
    chmod(script, 0o755)
    let dir = d.state + "/etc/mdevctl.d/matrix"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try #"{"mdev_type": "vfio_ap-passthrough", "start": "auto", "attrs": [{"assign_control_domain": "3"}]}"#
      .write(toFile: dir + "/" + u1, atomically: true, encoding: .utf8)
    try
      #"{"mdev_type": "vfio_ap-passthrough", "start": "auto", "attrs": [{"assign_adapter": "5"}, {"assign_control_domain": "3"}]}"#
      .write(toFile: dir + "/" + u2, atomically: true, encoding: .utf8)
    // By hand, the callout refuses it.
    var r = try d.exec(["mdevctl", "start", "-u", u1])
    #expect(r.status != 0, "\(r.stdout)\(r.stderr)")
    d.stop()
    try d.start()
    #expect(try d.bash("ls /sys/bus/mdev/devices").stdout == "\(u2)\n")
    r = try d.apvirt(["status"])
    #expect(r.stdout.contains("boot: mdevctl start-parent-mdevs matrix: \(u1): not started"), "\(r.stdout)")
    #expect(r.stdout.contains("boot: mdevctl start-parent-mdevs matrix: \(u2): started"), "\(r.stdout)")
  }

  @Test func kernelProfilesAreChosenAtBootAndUnknownOnesRefused() throws {
    let r = try run(apvirtBinary, ["up", "--kernel", "5.4", "--mount", "/tmp/apvirt-never/sys"])
    #expect(r.status == 64)
    #expect(
      r.stderr.hasPrefix(
        "Error: --kernel 5.4: not a kernel apvirt models; it knows 6.1, 6.6, 6.12, 6.16, 6.19"),
      "\(r.stderr)")
    #expect(!FileManager.default.fileExists(atPath: "/tmp/apvirt-never"))
    let d = try Daemon(options: ["--kernel", "6.1"])
    #expect(
      try d.bash("ls /sys/bus/ap/features /sys/devices/vfio_ap/matrix/features 2>&1; true").stdout.contains(
        "No such file"))
    #expect(try d.bash("cat /sys/bus/ap/devices/05.0004/driver_override").status != 0)
    #expect(try d.apvirt(["status"]).stdout.hasPrefix("Linux 6.1 on machine default"))
    #expect(d.log.contains("booted Linux 6.1 on machine 'default'"))
    // The machine file's `kernel:`, and --kernel over it.
    let file = d.root + "/k.yaml"
    try "name: k\nkernel: 6.12\nadapters: [{ apid: 5 }]\n".write(
      toFile: file, atomically: true, encoding: .utf8)
    let k = try Daemon(options: ["--machine", file])
    #expect(try k.apvirt(["status"]).stdout.hasPrefix("Linux 6.12 on machine k"))
    let over = try Daemon(options: ["--machine", file, "--kernel", "6.6"])
    #expect(try over.apvirt(["status"]).stdout.hasPrefix("Linux 6.6 on machine k"))
    try "name: k\nkernel: 5.4\nadapters: [{ apid: 5 }]\n".write(
      toFile: file, atomically: true, encoding: .utf8)
    let bad = try run(apvirtBinary, ["up", "--machine", file, "--mount", d.root + "/bad/sys"])
    #expect(bad.status == 1)
    #expect(
      bad.stderr
        == "Error: \(file): kernel: 5.4: not a kernel apvirt models; it knows 6.1, 6.6, 6.12, 6.16, 6.19\n")
  }

  /// The kernel documentation's three guests, defined with mdevctl `--auto`, and the masks kept
  /// with chzdev: after `apvirt down` and `apvirt up`, with no command in between, all three
  /// mdevs are back with their matrices.
  @Test(.enabled(if: Requirement.mdevctl, Requirement.mdevctlMissing))
  func theThreeGuestExampleComesBackAfterAReboot() throws {
    let d = try Daemon()
    // chzdev's persistent masks start empty (zdev's p_apmask): a list of changes applies to
    // nothing, so the masks are given whole, as the lists of what the host keeps.
    var r = try d.apvirt([
      "chzdev", "-t", "ap", "apmask=0-4,7-255", "aqmask=0-3,5-0x46,0x48-0xaa,0xac-0xfe", "--state", d.state,
    ])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.contains("apmask 0xf9ff"), "\(r.stdout)")
    #expect(try d.bash("cat /sys/bus/ap/aqmask").stdout.hasPrefix("0xf7ff"))
    #expect(
      try String(contentsOfFile: d.state + "/etc/udev/rules.d/41-ap.rules", encoding: .utf8).contains(
        #"ATTR{../../bus/ap/apmask}="0xf9ff"#))
    let guests: [(String, [(String, String)])] = [
      (
        u1,
        [
          ("assign_adapter", "5"), ("assign_adapter", "6"), ("assign_domain", "4"), ("assign_domain", "0xab"),
          ("assign_control_domain", "0xab"),
        ]
      ),
      (u2, [("assign_adapter", "5"), ("assign_domain", "0x47"), ("assign_domain", "0xff")]),
      (u3, [("assign_adapter", "6"), ("assign_domain", "0x47"), ("assign_domain", "0xff")]),
    ]
    for (u, attrs) in guests {
      r = try d.exec(["mdevctl", "define", "-u", u, "-p", "matrix", "-t", "vfio_ap-passthrough", "--auto"])
      #expect(r.status == 0, "\(r.stderr)")
      for (a, v) in attrs {
        r = try d.exec(["mdevctl", "modify", "-u", u, "--addattr=\(a)", "--value=\(v)"])
        #expect(r.status == 0, "\(r.stderr)")
      }
      r = try d.exec(["mdevctl", "start", "-u", u])
      #expect(r.status == 0, "\(r.stderr)")
    }
    let before = try d.bash("cat /sys/bus/mdev/devices/*/matrix").stdout
    d.stop()
    try d.start()
    #expect(try d.bash("cat /sys/bus/ap/apmask").stdout.hasPrefix("0xf9ffff"))
    #expect(try d.bash("cat /sys/bus/mdev/devices/*/matrix").stdout == before)
    #expect(
      try d.bash("cat /sys/bus/mdev/devices/\(u1)/matrix").stdout == "05.0004\n05.00ab\n06.0004\n06.00ab\n")
    r = try d.exec(["mdevctl", "list"])
    for u in [u1, u2, u3] {
      #expect(r.stdout.contains("\(u) matrix vfio_ap-passthrough auto (defined)"), "\(r.stdout)")
    }
    let st = try d.apvirt(["status"]).stdout
    #expect(
      st.contains("boot: udev rule \(d.state)/etc/udev/rules.d/41-ap.rules: apmask set to 0xf9ff"), "\(st)")
    #expect(st.contains("boot: mdevctl start-parent-mdevs matrix: \(u2): started"), "\(st)")
    // Without the persistent masks the reboot cannot start them, and status says why.
    r = try d.apvirt(["chzdev", "-t", "ap", "--remove", "--state", d.state])
    #expect(r.status == 0, "\(r.stderr)")
    d.stop()
    try d.start()
    let failed = try d.apvirt(["status"]).stdout
    #expect(failed.contains("boot: mdevctl start-parent-mdevs matrix: \(u1): not started"), "\(failed)")
    #expect(failed.contains("(FAILED)"))
    #expect(d.log.contains("warning: mdevctl start-parent-mdevs matrix: \(u1): not started"), "\(d.log)")
  }
}

/// KubeVirt's VM path (DRA) on Linux 6.19, through the mount and a guest: the queue is handed
/// to vfio_ap with `driver_override` while the masks stay all ones.
@Suite("Interop: KubeVirt's driver_override path", .serialized)
struct KubeVirtPathTests {
  @Test func overrideProbeAssignAndStartAGuest() throws {
    let d = try Daemon()
    let u = "62177883-f1bb-47f0-914d-32a22e3a8804"
    var r = try d.bash(
      """
      set -e
      echo vfio_ap > /sys/bus/ap/devices/05.0004/driver_override
      echo 05.0004 > /sys/bus/ap/drivers/cex4queue/unbind
      echo 05.0004 > /sys/bus/ap/drivers_probe
      readlink /sys/bus/ap/devices/05.0004/driver
      echo \(u) > /sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create
      echo 5 > /sys/devices/vfio_ap/matrix/\(u)/assign_adapter
      echo 4 > /sys/devices/vfio_ap/matrix/\(u)/assign_domain
      cat /sys/devices/vfio_ap/matrix/\(u)/matrix /sys/bus/ap/apmask
      echo -6 > /sys/bus/ap/apmask
      """)
    #expect(r.status != 0, "apmask was written while an override is set")
    #expect(
      r.stdout
        == "../../../../bus/ap/drivers/vfio_ap\n05.0004\n0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\n",
      "\(r.stderr)")
    #expect(r.stderr.hasSuffix("echo: write error: Invalid argument\n"), "\(r.stderr)")
    r = try run(
      apvirtBinary,
      [
        "qemu", "-daemonize", "-name", "kv", "-cpu", "host", "-device",
        "vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(u)",
      ], environment: ProcessInfo.processInfo.environment.merging(["APVIRT_MOUNT": d.mount]) { $1 })
    #expect(r.status == 0, "\(r.stderr)")
    r = try run(
      apvirtBinary,
      ["exec", "--mount", d.mount, "--state", d.state, "--guest", "kv", "--", "ls", "/sys/bus/ap/devices"])
    #expect(r.stdout == "05.0004\ncard05\n", "\(r.stderr)")
    #expect(try d.apvirt(["down"]).stdout.contains("its guests were stopped: kv"))
    d.process.map { _ = waitForExit($0) }
    d.process = nil
  }
}
