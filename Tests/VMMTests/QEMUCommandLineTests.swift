import Foundation
import Testing

@testable import VMM

/// The command line's checks that need no host: the emulated versions, guest names, a sysfsdev
/// under the host's sysfs mount.
@Suite("VMM: QEMU's command line, versions and names")
struct QEMUCommandLineTests {
  @Test func onlyTheVersionsApvirtEmulatesAreTaken() {
    #expect(QEMUVersion.problem("10.2.0") == nil)
    #expect(QEMUVersion.problem("10.2") == nil)
    #expect(QEMUVersion.problem("3.1.0") == nil)
    #expect(QEMUVersion.problem("9.2.1") == nil)
    #expect(
      QEMUVersion.problem("1.0")
        == "apvirt emulates QEMU 3.1 to 10.2, not 1.0: the vfio-ap device and the AP CPU features came with QEMU 3.1"
    )
    #expect(
      QEMUVersion.problem("11.0") == "apvirt emulates QEMU 3.1 to 10.2, not 11.0: it knows no QEMU after 10.2"
    )
    for garbage in ["garbage", "10", "10.x.2", "10.2.0.1", "10..2", "-1.2", "", "１０.2"] {
      #expect(
        QEMUVersion.problem(garbage)
          == "not a QEMU version (MAJOR.MINOR[.MICRO]); apvirt emulates QEMU 3.1 to 10.2",
        "\(garbage)")
    }
  }

  @Test func libvirtsNameFormKeepsWorking() throws {
    #expect(try QEMUCommandLine.parse(["-name", "guest=vm1,debug-threads=on"]).name == "vm1")
    #expect(try QEMUCommandLine.parse(["-name", "my guest"]).name == "my guest")
  }

  @Test func namesThatAreNotFileNamesAreRefusedWithTheReason() {
    let cases: [(String, String)] = [
      ("../../etc", "contains '/'"), ("a/b", "contains '/'"), ("", "is empty"),
      (".hidden", "starts with '.'"),
      ("..", "starts with '.'"), ("x\ny", "contains control characters"),
      ("guest=,debug-threads=on", "is empty"),
      (String(repeating: "n", count: 256), "is longer than 255 bytes"),
    ]
    for (name, why) in cases {
      do {
        _ = try QEMUCommandLine.parse(["-name", name])
        Issue.record("-name \(name) was accepted")
      } catch {
        #expect(error.description.hasPrefix("qemu-system-s390x: -name \(QEMUCommandLine.printable(name)): "))
        #expect(error.message.contains("apvirt cannot serve a guest whose name \(why)"), "\(error)")
        #expect(error.message.contains("/run/apvirt/guests/NAME"))
      }
    }
    #expect(QEMUCommandLine.printable("x\ny\u{1b}") == "x\\ny\\u{1B}")
  }

  @Test func aSysfsdevUnderTheHostsMountIsTheSameDevice() throws {
    let host = try makeHost()
    var c = try QEMUCommandLine.parse([
      "-cpu", "host", "-device", "vfio-ap,id=h0,sysfsdev=/run/apvirt/sys/bus/mdev/devices/\(uuid1)",
    ])
    c.sysfsMounts = ["/run/apvirt/sys"]
    let g = try Guest(host: host, configuration: c, clock: fixedClock)
    #expect(g.device?.uuid == uuid1)
    #expect(g.device?.sysfsdev == "/run/apvirt/sys/bus/mdev/devices/\(uuid1)")
    // A mount the host does not have is no alias.
    #expect(throws: DeviceError.self) {
      try g.deviceDel("h0")
      _ = try g.deviceAdd([
        ("driver", .string("vfio-ap")), ("sysfsdev", .string("/elsewhere/sys/bus/mdev/devices/\(uuid1)")),
      ])
    }
    #expect(g.device == nil)
    _ = try g.deviceAdd([
      ("driver", .string("vfio-ap")),
      ("sysfsdev", .string("/run/apvirt/sys/devices/vfio_ap/matrix/\(uuid2)")),
    ])
    #expect(g.device?.uuid == uuid2)
  }
}
