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
    #expect(r.stderr.contains("adapter 30 is not in the LPAR's configuration"))
    r = try d.apvirt(["status", "--json"])
    let status = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
    #expect((status?["adapters"] as? [Any])?.count == 13)
    #expect(status?["queues"] as? Int == 13 * 255)
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
    _ = try run("/usr/bin/setpriv", asNobody + [apvirtBinary, "down", "--mount", root + "/run/sys"])
    #expect(waitForExit(p))
    #expect(p.terminationStatus == 0)
    #expect(!(FUSEMount.readProcFile("/proc/self/mountinfo") ?? "").contains("\(root)/run/sys"))
  }
}
