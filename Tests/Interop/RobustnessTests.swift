import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

@Suite("Interop: robustness of the daemon", .serialized)
struct RobustnessTests {
  /// Everything a user can see that a store could change.
  func snapshot(_ d: Daemon) throws -> String {
    try d.bash(
      """
      cd /sys/bus/ap && cat apmask aqmask ap_domain config_time poll_timeout poll_thread bindings
      for m in /sys/devices/vfio_ap/matrix/*-*; do echo $m; cat $m/matrix $m/guest_matrix $m/control_domains; done
      ls /sys/bus/ap/drivers/vfio_ap /sys/bus/ap/drivers/cex4queue | md5sum
      for c in /sys/devices/ap/card0[4-6]; do cat $c/config $c/online; done
      """
    ).stdout
  }

  @Test func garbageWritesToEveryAttributeChangeNothing() throws {
    let d = try Daemon()
    let uuid = "90c6c135-ad44-41d0-b1b7-bae47de48627"
    try d.bash(
      """
      echo -5 > /sys/bus/ap/apmask
      echo \(uuid) > /sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create
      echo 5 > /sys/devices/vfio_ap/matrix/\(uuid)/assign_adapter
      echo 4 > /sys/devices/vfio_ap/matrix/\(uuid)/assign_domain
      """)
    let before = try snapshot(d)
    // Every writable attribute of the bus, a card, a queue on each driver, the type and the mdev.
    // driver_override takes any text by design and `scans`, `reset` and `request_count` take any
    // write; they are left out of the comparison but written too.
    let files = try d.bash(
      """
      find /sys/bus/ap -maxdepth 1 -type f -perm /222
      find /sys/bus/ap/drivers -maxdepth 2 -type f -perm /222
      find /sys/devices/ap/card04 /sys/devices/ap/card05 /sys/devices/ap/card04/04.0004 /sys/devices/ap/card05/05.0004 \
        -maxdepth 1 -type f -perm /222
      find /sys/devices/vfio_ap/matrix -maxdepth 4 -type f -perm /222 -not -name remove
      """
    ).stdout.split(separator: "\n").map(String.init).filter { !$0.hasSuffix("driver_override") }
    #expect(files.count >= 34)
    let garbage: [[UInt8]] = [
      Array("zz".utf8), [0x7f, 1, 2, 0xff, 0xfe], Array(String(repeating: "x", count: 5000).utf8),
      Array("-".utf8), Array("+".utf8), Array(("x" + String(repeating: "f", count: 70)).utf8),
      Array("z5".utf8), Array("!@#$%".utf8), Array("zz\n\n\n".utf8),
    ]
    var rng = SystemRandomNumberGenerator()
    var writes = 0
    for file in files {
      let path = d.mount + file.dropFirst(4)
      for g in garbage {
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else { continue }
        // Partial writes too: a prefix of the garbage, at an offset. ("x" followed by 70 hex
        // digits is an invalid mask only whole: its prefixes are valid masks.)
        let cuttable = g.count > 2 && g.first != UInt8(ascii: "x")
        let n = cuttable && Bool.random(using: &rng) ? g.count / 2 : g.count
        _ = g.withUnsafeBytes { pwrite(fd, $0.baseAddress, n, off_t(Int.random(in: 0...8, using: &rng))) }
        close(fd)
        writes += 1
      }
    }
    #expect(writes > 300)
    // Alive, and nothing changed.
    #expect(try d.bash("cat /sys/bus/ap/apmask").status == 0)
    let after = try snapshot(d)
    #expect(after == before)
    if after != before {
      let a = after.split(separator: "\n")
      let b = before.split(separator: "\n")
      for (x, y) in zip(a, b) where x != y { Issue.record("changed: \(y) -> \(x)") }
    }
  }

  @Test func aKilledDaemonsMountIsClearedByTheNext() throws {
    let d = try Daemon()
    d.kill9()
    var st = statvfs()
    #expect(statvfs(d.mount, &st) != 0 && errno == ENOTCONN)
    try d.start()
    #expect(d.log.contains("cleared a stale mount"))
    #expect(try d.bash("cat /sys/bus/ap/bindings").stdout == "3072/3072 (complete)\n")
  }

  @Test func aSecondDaemonOnTheSameMountIsRefused() throws {
    let d = try Daemon()
    let r = try run(apvirtBinary, ["up", "--mount", d.mount, "--state", d.state])
    #expect(r.status != 0)
    #expect(r.stderr.contains("another apvirt up (pid \(d.process!.processIdentifier)) is using"))
    #expect(try d.bash("cat /sys/bus/ap/bindings").status == 0)
  }
}
