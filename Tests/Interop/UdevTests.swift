import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Debian's udevadm (libudev 252) against the emulated host's uevents (`apvirt up
/// --udev-events`): the messages pass libudev's checks and its socket filter (whose subsystem
/// hash the kernel compares), and carry the kernel's properties.
@Suite("Interop: udevadm monitor sees the host's uevents", .serialized)
struct UdevTests {
  let u1 = "62177883-f1bb-47f0-914d-32a22e3a8804"

  @Test func udevadmMonitorSeesBindingsAndMdevs() throws {
    #expect(FileManager.default.isExecutableFile(atPath: "/usr/bin/udevadm"), "CI installs udev")
    let d = try Daemon.sendingUEvents()
    let out = d.root + "/monitor.txt"
    let monitor = Process()
    let argv = d.inItsNetwork([
      apvirtBinary, "exec", "--mount", d.mount, "--state", d.state, "--", "/usr/bin/timeout", "6",
      "/usr/bin/udevadm", "monitor", "--udev", "--property", "--subsystem-match=mdev", "--subsystem-match=ap",
    ])
    monitor.executableURL = URL(fileURLWithPath: argv[0])
    monitor.arguments = Array(argv.dropFirst())
    FileManager.default.createFile(atPath: out, contents: nil)
    monitor.standardOutput = FileHandle(forWritingAtPath: out)
    monitor.standardError = FileHandle.nullDevice
    try monitor.run()
    // udevadm prints its banner once it listens.
    for _ in 0..<100 where !((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").contains("UDEV - ") {
      usleep(50_000)
    }
    let m = "/sys/devices/vfio_ap/matrix"
    #expect(
      try d.bash(
        "echo -5 > /sys/bus/ap/apmask && echo \(u1) > \(m)/mdev_supported_types/vfio_ap-passthrough/create && echo 1 > \(m)/\(u1)/remove"
      ).status == 0)
    // A matrix event is filtered out by the socket filter (subsystem hash), not by udevadm.
    monitor.waitUntilExit()
    let text = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
    #expect(text.contains("UDEV  ["))
    #expect(text.contains("add      /devices/vfio_ap/matrix/\(u1) (mdev)"), "\(text.prefix(2000))")
    #expect(text.contains("remove   /devices/vfio_ap/matrix/\(u1) (mdev)"), "\(text.prefix(2000))")
    #expect(text.contains("unbind   /devices/ap/card05/05.0004 (ap)"))
    #expect(text.contains("bind     /devices/ap/card05/05.0004 (ap)"))
    // The properties of the mdev's add and bind, in the kernel's order (the mdev bus adds none;
    // the driver comes with the bind), with udevd's USEC_INITIALIZED.
    func properties(_ action: String) -> [String] {
      let block = text.components(separatedBy: "\n\n").first {
        $0.contains("ACTION=\(action)\n") && $0.contains("SUBSYSTEM=mdev")
      }
      return block?.split(separator: "\n").dropFirst().map(String.init) ?? []
    }
    let add = properties("add")
    #expect(
      Array(add.prefix(3)) == ["ACTION=add", "DEVPATH=/devices/vfio_ap/matrix/\(u1)", "SUBSYSTEM=mdev"],
      "\(add)")
    #expect(add.count == 5 && add[3].hasPrefix("SEQNUM=") && add[4].hasPrefix("USEC_INITIALIZED="), "\(add)")
    let bind = properties("bind")
    #expect(Array(bind.prefix(4)).last == "DRIVER=vfio_ap_mdev", "\(bind)")
    #expect(text.contains("unbind   /devices/vfio_ap/matrix/\(u1) (mdev)"))
    // The AP bus's change event (the mask), with its variable.
    #expect(text.contains("APMASK=0xfb"), "\(text.prefix(3000))")
  }

  @Test func withoutTheFlagNothingIsSent() throws {
    // In a network namespace of its own, as the daemons that send are: only its own could reach.
    let d = try Daemon(wrapper: ["/usr/bin/unshare", "--net"])
    let quiet = d.root + "/quiet.txt"
    let argv = d.inItsNetwork([
      apvirtBinary, "exec", "--mount", d.mount, "--state", d.state, "--", "/bin/sh", "-c",
      "(/usr/bin/timeout 2 /usr/bin/udevadm monitor --udev --subsystem-match=ap > \(quiet) 2>&1 &) ; sleep 0.5; echo -5 > /sys/bus/ap/apmask; sleep 2; cat \(quiet)",
    ])
    let r = try run(argv[0], Array(argv.dropFirst()))
    #expect(!r.stdout.contains("/devices/ap/card05"), "\(r.stdout)")
  }
}
