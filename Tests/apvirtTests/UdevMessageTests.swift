import Foundation
import HostKernel
import Machine
import Testing

@testable import apvirt

/// The libudev netlink message apvirt sends for a uevent (systemd's device-monitor.c format).
@Suite("udev messages: libudev's netlink format")
struct UdevMessageTests {
  let message = UdevMessage.forUEvent(
    action: "add", devpath: "/devices/ap/card05", subsystem: "ap",
    environment: [
      "CONFIG=1", "DEVTYPE=ap_card", "DRIVER=cex4card", "DEV_TYPE=000E", "MODALIAS=ap:t0E", "MODE=cca",
      "CONFIG=0",
    ],
    seqnum: 42, usecInitialized: 1234)!

  @Test func propertiesInTheKernelsOrder() {
    #expect(
      message.properties.map { "\($0.0)=\($0.1)" } == [
        "ACTION=add", "DEVPATH=/devices/ap/card05", "SUBSYSTEM=ap", "CONFIG=1", "DEVTYPE=ap_card",
        "DRIVER=cex4card",
        "DEV_TYPE=000E", "MODALIAS=ap:t0E", "MODE=cca", "SEQNUM=42", "USEC_INITIALIZED=1234",
      ])
  }

  @Test func theHeader() {
    let b = message.bytes
    #expect(Array(b[0..<8]) == Array("libudev".utf8) + [0])
    // The magic in network byte order, the sizes in the host's.
    #expect(Array(b[8..<12]) == [0xfe, 0xed, 0xca, 0xfe])
    func host(_ at: Int) -> UInt32 { b[at..<(at + 4)].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) } }
    func big(_ at: Int) -> UInt32 {
      UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3])
    }
    #expect(host(12) == 40 && host(16) == 40)
    #expect(Int(host(20)) == b.count - 40)
    #expect(big(24) == UdevMessage.murmurHash2(Array("ap".utf8)))
    #expect(big(28) == UdevMessage.murmurHash2(Array("ap_card".utf8)))
    #expect(host(32) == 0 && host(36) == 0)
    // Properties: KEY=value, each ending in NUL.
    #expect(b.last == 0)
    #expect(
      String(decoding: b[40...], as: UTF8.self).hasPrefix("ACTION=add\u{0}DEVPATH=/devices/ap/card05\u{0}"))
    #expect(UdevMessage(bytes: b) == message)
  }

  @Test func murmurHash2() {
    // The algorithm's fixed points and its tail handling: lengths 0 to 5.
    #expect(UdevMessage.murmurHash2([]) == 0)
    let hashes = (0...5).map { UdevMessage.murmurHash2(Array("abcde".utf8.prefix($0))) }
    #expect(Set(hashes).count == 6)
    // Seeded values differ, and equal inputs agree.
    #expect(UdevMessage.murmurHash2(Array("mdev".utf8)) == UdevMessage.murmurHash2(Array("mdev".utf8)))
    #expect(
      UdevMessage.murmurHash2(Array("mdev".utf8), seed: 1) != UdevMessage.murmurHash2(Array("mdev".utf8)))
  }

  @Test func subsystems() {
    #expect(UEvent.subsystem(of: "/devices/ap") == "ap")
    #expect(UEvent.subsystem(of: "/devices/ap/card05/05.0004") == "ap")
    #expect(UEvent.subsystem(of: "/devices/vfio_ap/matrix") == "matrix")
    #expect(
      UEvent.subsystem(of: "/devices/vfio_ap/matrix/62177883-f1bb-47f0-914d-32a22e3a8804") == "mdev")
    #expect(UEvent.subsystem(of: "/devices/vfio_ap") == "")
    #expect(UEvent.subsystem(of: "/bus/ap") == "bus")
    #expect(UEvent.subsystem(of: "/bus/ap/drivers/cex4queue") == "drivers")
    // The kernel records the subsystem it sends with: a bus's synthetic uevent is `bus`.
    let host = EmulatedHost(definition: .embeddedDefault)
    #expect((try? host.write("/bus/ap/uevent", Array("change".utf8))) != nil)
    #expect(host.withKernel { $0.uevents.last?.subsystem } == "bus")
    // An event whose device has no subsystem is dropped, as kobject_uevent_env drops it.
    #expect(
      UdevMessage.forUEvent(
        action: "add", devpath: "/62177883", subsystem: UEvent.subsystem(of: "/62177883"), environment: [],
        seqnum: 1,
        usecInitialized: 1)
        == nil)
  }

  @Test func malformedBytesAreNotAMessage() {
    #expect(UdevMessage(bytes: []) == nil)
    #expect(UdevMessage(bytes: Array("add@/devices/ap".utf8) + [0]) == nil)
    var b = message.bytes
    b[8] = 0
    #expect(UdevMessage(bytes: b) == nil)
  }
}
