import FUSE
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

@Suite("Interop: the control socket and the daemon's life cycle", .serialized)
struct ControlTests {
  @Test func hardwareOperationsReachTheHost() throws {
    let d = try Daemon()
    var r = try d.apvirt(["hw", "add-adapter", "0x20", "--type", "CEX7", "--mode", "ep11"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(
      try d.bash("cat /sys/devices/ap/card20/type /sys/bus/ap/ap_adapter_mask").stdout == "CEX7P\n0xfff000008"
        + String(repeating: "0", count: 55) + "\n")
    r = try d.apvirt(["hw", "configure", "5", "off"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(
      try d.bash("cat /sys/devices/ap/card05/config /sys/devices/ap/card05/05.0004/config").stdout == "0\n0\n"
    )
    r = try d.apvirt(["hw", "checkstop", "6", "on"])
    #expect(try d.bash("cat /sys/devices/ap/card06/chkstop /sys/devices/ap/card06/online").stdout == "1\n0\n")
    r = try d.apvirt(["hw", "remove-domain", "7", "--usage-only"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(try d.bash("test -e /sys/devices/ap/card01/01.0007").status != 0)
    #expect(
      try d.bash("cat /sys/bus/ap/ap_control_domain_mask").stdout == "0x" + String(repeating: "f", count: 64)
        + "\n")
    r = try d.apvirt(["hw", "remove-adapter", "0x30"])
    #expect(r.status != 0)
    #expect(r.stderr.contains("adapter 0x30 is not in the LPAR's configuration"))
    r = try d.apvirt(["status", "--json"])
    let status = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
    #expect((status?["adapters"] as? [Any])?.count == 13)
    #expect(status?["queues"] as? Int == 13 * 255)
  }

  /// What the host's sysfs shows of the LPAR's configuration: the three masks and the devices.
  func hostView(_ d: Daemon) throws -> String {
    var out = ""
    for f in ["ap_adapter_mask", "ap_usage_domain_mask", "ap_control_domain_mask"] {
      out += f + " " + (try String(contentsOfFile: d.mount + "/bus/ap/" + f, encoding: .utf8))
    }
    let devices = try FileManager.default.contentsOfDirectory(atPath: d.mount + "/bus/ap/devices").sorted()
    out += devices.joined(separator: " ") + "\n"
    for card in devices where card.hasPrefix("card") {
      for a in ["config", "chkstop", "online"] {
        out +=
          card + "/" + a + " "
          + (try String(contentsOfFile: d.mount + "/devices/ap/\(card)/\(a)", encoding: .utf8))
      }
    }
    return out
  }

  /// Issue 11, 5: every `hw` change says in one line what the host now shows; --json gives the
  /// devices.
  @Test func hardwareOperationsSayWhatChanged() throws {
    let d = try Daemon()
    let lines: [([String], String)] = [
      (
        ["add-adapter", "0x20", "--type", "CEX7", "--mode", "ep11"],
        "adapter 0x20 (CEX7, ep11) added: card20 and its 256 queues appear on the host"
      ),
      (
        ["configure", "5", "off"],
        "adapter 0x05 deconfigured: card05 and its 256 queues stay on the host, with config 0"
      ),
      (["configure", "5", "off"], "adapter 0x05 is already deconfigured: nothing changed"),
      (
        ["configure", "5", "on"],
        "adapter 0x05 configured: card05 and its 256 queues stay on the host, with config 1"
      ),
      (
        ["checkstop", "6", "on"],
        "adapter 0x06 checkstopped: card06 and its 256 queues stay on the host, with chkstop 1"
      ),
      (
        ["checkstop", "6", "off"],
        "adapter 0x06 out of checkstop: card06 and its 256 queues stay on the host, with chkstop 0"
      ),
      (
        ["remove-domain", "7", "--usage-only"],
        "domain 0x07 removed as a usage domain: ap_usage_domain_mask drops it; 13 queues, 00.0007 to 20.0007, leave the host"
      ),
      (
        ["remove-domain", "7", "--control-only"],
        "domain 0x07 removed as a control domain: ap_control_domain_mask drops it; no queues change (a control domain has none)"
      ),
      (
        ["add-domain", "7"],
        "domain 0x07 added as a usage and control domain: ap_usage_domain_mask shows it; 13 queues, 00.0007 to 20.0007, appear on the host"
      ),
      (
        ["remove-adapter", "0x20"],
        "adapter 0x20 (CEX7, ep11) removed: card20 and its 256 queues leave the host"
      ),
    ]
    for (args, line) in lines {
      let r = try d.apvirt(["hw"] + args)
      #expect(r.status == 0, "\(args): \(r.stderr)")
      #expect(r.stdout == line + "\n", "\(args)")
      #expect(r.stderr == "")
    }
    let r = try d.apvirt(["hw", "add-adapter", "0x21", "--json"])
    #expect(r.status == 0, "\(r.stderr)")
    let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
    #expect(
      json?["summary"] as? String
        == "adapter 0x21 (CEX8, cca) added: card21 and its 256 queues appear on the host")
    #expect(json?["changed"] as? Bool == true)
    let added = json?["added"] as? [String] ?? []
    #expect(added.count == 257 && added.first == "card21" && added[1] == "21.0000" && added.last == "21.00ff")
    #expect(json?["removed"] as? [String] == [] && json?["updated"] as? [String] == [])
    #expect(FileManager.default.fileExists(atPath: d.mount + "/devices/ap/card21/21.00ff"))
  }

  /// Issue 11, 3 and 4: a refused `hw` operation says why, in 0x-hex with the range where it is
  /// one, and leaves the host's sysfs as it was.
  @Test func aRefusedHardwareOperationSaysWhyAndChangesNothing() throws {
    let d = try Daemon()
    #expect(try d.apvirt(["hw", "remove-domain", "7", "--usage-only"]).status == 0)
    #expect(try d.apvirt(["hw", "checkstop", "6", "on"]).status == 0)
    let before = try hostView(d)
    #expect(before.contains("card06/chkstop 1\n"))
    let refusals: [([String], Int32, String)] = [
      (
        ["add-domain", "0xab", "--usage-only", "--control-only"], 64,
        "--usage-only and --control-only contradict each other: give one of them, or neither for both a usage and a control domain"
      ),
      (
        ["add-domain", "7"], 1,
        "control domain 0x07 is already in the LPAR's configuration: nothing changed; add it as a usage domain alone with --usage-only"
      ),
      (
        ["remove-domain", "7"], 1,
        "usage domain 0x07 is not in the LPAR's configuration: nothing changed; remove it as a control domain alone with --control-only"
      ),
      (
        ["add-domain", "4", "--control-only"], 1,
        "control domain 0x04 is already in the LPAR's configuration: nothing changed"
      ),
      (["add-adapter", "5"], 1, "adapter 0x05 is already in the LPAR's configuration"),
      (
        ["add-adapter", "0x20", "--type", "CEX9"], 64,
        "unknown adapter type 'CEX9' for --type (known: CEX4, CEX5, CEX6, CEX7, CEX8)"
      ),
      (
        ["add-adapter", "0x20", "--mode", "fast"], 64,
        "unknown mode 'fast' for --mode (known: cca, accel, ep11)"
      ),
      (
        ["remove-adapter", "99"], 1,
        "adapter 0x63 is not in the LPAR's configuration (`apvirt status` lists its adapters)"
      ),
      (
        ["configure", "0x40", "on"], 1,
        "adapter 0x40 is not in the LPAR's configuration (`apvirt status` lists its adapters)"
      ),
      (["checkstop", "6", "on"], 0, "adapter 0x06 is already checkstopped: nothing changed"),
      (["remove-adapter", "300"], 64, "adapter 300 (0x12c) is out of range: adapters are 0x00-0xff (0-255)"),
      (["add-domain", "0x100"], 64, "domain 0x100 (256) is out of range: domains are 0x00-0xff (0-255)"),
      (["configure", "zz", "on"], 64, "'zz' is not an adapter number (decimal or 0x-hex)"),
    ]
    for (args, status, text) in refusals {
      let r = try d.apvirt(["hw"] + args)
      #expect(r.status == status, "\(args): \(r.stderr)")
      if status == 0 {
        #expect(r.stdout == text + "\n", "\(args)")
      } else {
        #expect(r.stderr.hasPrefix("Error: \(text)\n"), "\(args): \(r.stderr)")
        #expect(r.stdout == "")
      }
      // The usage text for a command line that cannot be right, none for a refusal.
      #expect(r.stderr.contains("Usage:") == (status == 64), "\(args)")
      #expect(try hostView(d) == before, "\(args) changed the host")
    }
  }

  /// Issue 11, 4: beyond the machine's Na and Nd (z15-lab: 0x54) the daemon says the range.
  @Test func numbersBeyondTheMachineSayItsRange() throws {
    let d = try Daemon(options: ["--machine", examplesDirectory + "/z15-lab.yaml"])
    let before = try hostView(d)
    for (args, text) in [
      (
        ["add-adapter", "0x63"],
        "adapter 0x63 is out of range: this machine's adapters are 0x00-0x54 (its Na)"
      ),
      (
        ["remove-adapter", "99"],
        "adapter 0x63 is out of range: this machine's adapters are 0x00-0x54 (its Na)"
      ),
      (
        ["configure", "0x55", "off"],
        "adapter 0x55 is out of range: this machine's adapters are 0x00-0x54 (its Na)"
      ),
      (["add-domain", "0x60"], "domain 0x60 is out of range: this machine's domains are 0x00-0x54 (its Nd)"),
      (
        ["remove-domain", "0xff", "--usage-only"],
        "domain 0xff is out of range: this machine's domains are 0x00-0x54 (its Nd)"
      ),
    ] {
      let r = try d.apvirt(["hw"] + args)
      #expect(r.status == 1, "\(args)")
      #expect(r.stderr == "Error: \(text)\n", "\(args)")
      #expect(try hostView(d) == before, "\(args) changed the host")
    }
  }

  @Test func sigtermUnmountsCleanly() throws {
    let d = try Daemon()
    let pid = d.process!.processIdentifier
    kill(pid, SIGTERM)
    let exited = waitForExit(d.process!)
    #expect(exited, "the daemon ignored SIGTERM")
    if !exited { kill(pid, SIGKILL) }
    #expect(d.process!.terminationStatus == 0)
    d.process = nil
    var st = stat()
    #expect(stat(d.mount + "/bus", &st) != 0)
    #expect(!FileManager.default.fileExists(atPath: d.runtime + "/control.sock"))
    #expect(d.log.contains("stopping: signal"))
  }

  @Test func downStopsTheDaemonAndWithoutOneCommandsSaySo() throws {
    let d = try Daemon()
    d.stop()
    let r = try d.apvirt(["status"])
    #expect(r.status != 0)
    #expect(r.stderr.contains("no apvirt daemon at \(d.mount)"))
    let e = try d.exec(["true"])
    #expect(e.status != 0)
    #expect(e.stderr.contains("no emulated host mounted"))
  }

  @Test func execPassesTheExitStatusThrough() throws {
    let d = try Daemon()
    #expect(try d.bash("exit 7").status == 7)
    #expect(
      try d.exec(["/bin/sh", "-c", "test -d /sys/bus/ap && test -d /etc/mdevctl.d/scripts.d/callouts"]).status
        == 0)
  }
}

@Suite("Interop: an unprivileged daemon mounts through fusermount3", .serialized)
struct UnprivilegedTests {
  @Test func nobodyRunsAHostThroughFusermount3() throws {
    #expect(FileManager.default.isExecutableFile(atPath: "/usr/bin/fusermount3"), "CI installs fuse3")
    let root = "/tmp/apvirt-nobody-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: root) }
    #expect(chown(root, 65534, 65534) == 0)
    let asNobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
    p.arguments = asNobody + [apvirtBinary, "up", "--mount", root + "/run/sys", "--state", root + "/state"]
    let log = root + "/up.log"
    FileManager.default.createFile(atPath: log, contents: nil)
    defer { try? FileManager.default.removeItem(atPath: log) }
    p.standardError = FileHandle(forWritingAtPath: log)
    try p.run()
    var ready = false
    for _ in 0..<100 {
      if (try? String(contentsOfFile: log, encoding: .utf8))?.contains("ready") == true {
        ready = true
        break
      }
      usleep(50_000)
    }
    #expect(ready, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
    let mounts = FUSEMount.readProcFile("/proc/self/mountinfo") ?? ""
    #expect(mounts.contains("\(root)/run/sys") && mounts.contains("user_id=65534"))
    let r = try run(
      "/usr/bin/setpriv",
      asNobody + [
        "/bin/bash", "-c",
        "echo -5 > \(root)/run/sys/bus/ap/apmask; cat \(root)/run/sys/bus/ap/apmask; echo 3 > \(root)/run/sys/bus/ap/config_time",
      ])
    #expect(r.stdout == "0xfbffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\n")
    #expect(r.stderr.hasSuffix("echo: write error: Invalid argument\n"))
    // Without user_allow_other (Debian's /etc/fuse.conf) the mount is nobody's alone, root
    // included: root's exec says so and what to do, instead of "no emulated host mounted".
    if !FUSEMount.userAllowOther {
      let e = try run(
        apvirtBinary, ["exec", "--mount", root + "/run/sys", "--state", root + "/state", "--", "true"])
      #expect(e.status == 1)
      #expect(
        e.stderr.contains("was mounted by uid 65534 without allow_other, so no one else (root included)"),
        "\(e.stderr)")
      #expect(e.stderr.contains("add user_allow_other to /etc/fuse.conf"))
    }
    _ = try run("/usr/bin/setpriv", asNobody + [apvirtBinary, "down", "--mount", root + "/run/sys"])
    #expect(waitForExit(p))
    #expect(p.terminationStatus == 0)
    #expect(!(FUSEMount.readProcFile("/proc/self/mountinfo") ?? "").contains("\(root)/run/sys"))
  }
}

/// Firmware timing and faults through `apvirt hw latency` and `apvirt hw fault`: what the host's
/// files and its log show.
@Suite("Interop: firmware timing and faults", .serialized)
struct FirmwareTimingInteropTests {
  /// Reads a file through `apvirt exec` every 0.25 s until it reads `text`, for up to 10 s.
  func eventually(_ d: Daemon, _ path: String, _ text: String) throws -> Bool {
    for _ in 0..<40 {
      if try d.bash("cat \(path)").stdout == text { return true }
      usleep(250_000)
    }
    return false
  }

  @Test func resetLatencyShowsInResetAndTheWaitedNoticeInDmesg() throws {
    let d = try Daemon()
    var r = try d.apvirt(["hw", "latency", "5", "--reset", "2s", "--irq", "500"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout == "adapter 0x05: reset latency 2000ms, irq latency 500ms\n")
    let q = "/sys/devices/ap/card05/05.0004"
    r = try d.bash("echo 1 > \(q)/reset && cat \(q)/reset \(q)/interrupt")
    #expect(r.stdout == "Reset in progress.\nInterrupts disabled.\n", "\(r.stderr)")
    #expect(try eventually(d, q + "/reset", "No Reset Timer set.\n"))
    #expect(try eventually(d, q + "/interrupt", "Interrupts enabled.\n"))

    r = try d.apvirt(["hw", "latency", "5", "--reset", "100ms", "--json"])
    let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
    #expect(json?["summary"] as? String == "adapter 0x05: reset latency 100ms, irq latency 500ms")
    let u = "62177883-f1bb-47f0-914d-32a22e3a8804"
    let m = "/sys/devices/vfio_ap/matrix/\(u)"
    r = try d.bash(
      """
      set -e
      echo -5 > /sys/bus/ap/apmask
      echo \(u) > /sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create
      echo 5 > \(m)/assign_adapter
      echo 4 > \(m)/assign_domain
      echo 4 > \(m)/unassign_domain
      """)
    #expect(r.status == 0, "\(r.stderr)")
    let dmesg = try d.apvirt(["dmesg"]).stdout
    #expect(dmesg.contains("vfio_ap: Waited 20ms for reset of queue 05.0004 (2, 1, 0)"), "\(dmesg)")
  }

  @Test func faultsAreInjectedAndClearedInOneLine() throws {
    let d = try Daemon()
    var r = try d.apvirt(["hw", "fault", "05.0004", "busy", "--count", "2"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout == "queue 05.0004: the next 2 resets answer rc 05 (busy)\n")
    r = try d.apvirt(["hw", "fault", "05.0004", "clear"])
    #expect(r.stdout == "queue 05.0004: fault cleared (busy, 2 resets left)\n")
    r = try d.apvirt(["hw", "fault", "05.0004", "clear"])
    #expect(r.stdout == "queue 05.0004: no fault injected: nothing changed\n")
    r = try d.apvirt(["hw", "fault", "6", "checkstop-during-reset"])
    #expect(r.stdout == "adapter 0x06: the next reset checkstops the adapter while it runs\n")
    r = try d.bash("echo 1 > /sys/devices/ap/card06/06.0004/reset; cat /sys/devices/ap/card06/06.0004/reset")
    #expect(r.stdout == "Reset in progress.\n")
    r = try d.apvirt(["hw", "fault", "0x30", "busy"])
    #expect(r.status != 0)
    #expect(r.stderr.contains("adapter 0x30 is not in the LPAR's configuration"), "\(r.stderr)")
    r = try d.apvirt(["hw", "fault", "5", "slow"])
    #expect(r.status != 0)
    #expect(r.stderr.contains("unknown fault 'slow'"), "\(r.stderr)")
  }
}
