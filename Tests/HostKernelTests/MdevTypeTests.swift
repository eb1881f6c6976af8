import APModel
import SystemPackage
import Testing

@testable import HostKernel

@Suite("vfio_ap: the matrix device, the mdev type, create and remove")
struct MdevTypeTests {
  let typeDir = "/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough"

  /// An mdev's uevents are `mdev_device_create`'s and `device_del`'s: add (the mdev bus adds no
  /// variable, and the driver is not bound yet), bind with the driver, then unbind and remove
  /// without it. A removed device's uevent names the path it had (it used to be taken after the
  /// directory left the tree, and read `/<uuid>`) and carries its own variables, for mdevs and
  /// for queues.
  @Test func mdevUEventsAndRemovedDevicesPaths() throws {
    let k = bootWithFreedAdapters()
    let seq = k.uevents.lastSeqnum
    #expect(echo(k, uuid1, createPath) == nil)
    #expect(echo(k, "1", mdevPath(uuid1) + "/remove") == nil)
    #expect(
      k.uevents.events(after: seq).events.map(\.element) == [
        UEvent(.add, mdevPath(uuid1)), UEvent(.bind, mdevPath(uuid1), ["DRIVER=vfio_ap_mdev"]),
        UEvent(.unbind, mdevPath(uuid1)), UEvent(.remove, mdevPath(uuid1)),
      ])
    try k.machine.removeUsageDomain(7)
    k.notifyConfigurationChange()
    #expect(
      k.uevents.contains(UEvent(.remove, "/devices/ap/card05/05.0007", ["DEVTYPE=ap_queue", "MODE=cca"])))
    #expect(!k.uevents.contains { $0.action == .remove && !$0.devpath.hasPrefix("/devices/") })
  }

  /// At boot, `vfio_ap_init` announces the matrix device, binds its driver and registers it as
  /// the mdev parent (the change that mdevctl's udev rule starts defined mdevs on), after the AP
  /// bus announced each card and queue with its own variables.
  @Test func bootAnnouncesTheMatrixAndTheMdevParent() throws {
    // Small enough that the record keeps every boot event.
    let k = HostKernel(definition: machine(adapters: [5], domains: 0...15))
    let events = Array(k.uevents)
    let matrix = "/devices/vfio_ap/matrix"
    #expect(
      Array(events.prefix(3)) == [
        UEvent(.add, matrix), UEvent(.bind, matrix, ["DRIVER=vfio_ap"]),
        UEvent(.change, matrix, ["MDEV_STATE=registered", "DRIVER=vfio_ap"]),
      ])
    #expect(k.log.lines.contains { $0.text == "vfio_ap matrix: MDEV: Registered" })
    #expect(
      events.contains(
        UEvent(
          .add, "/devices/ap/card05", ["DEVTYPE=ap_card", "DEV_TYPE=000E", "MODALIAS=ap:t0E", "MODE=cca"])))
    #expect(
      events.contains(
        UEvent(
          .bind, "/devices/ap/card05",
          ["DEVTYPE=ap_card", "DRIVER=cex4card", "DEV_TYPE=000E", "MODALIAS=ap:t0E", "MODE=cca"])))
    #expect(events.last == UEvent(.change, "/devices/ap", ["INITSCAN=done"]))
    #expect(events.contains(UEvent(.add, "/devices/ap/card05/05.0004", ["DEVTYPE=ap_queue", "MODE=cca"])))
    #expect(
      events.contains(
        UEvent(.bind, "/devices/ap/card05/05.0004", ["DEVTYPE=ap_queue", "DRIVER=cex4queue", "MODE=cca"])))
  }

  @Test func matrixDeviceAndType() throws {
    let k = HostKernel()
    #expect(cat(k, "/devices/vfio_ap/matrix/features") == "guest_matrix hotplug ap_config\n")
    #expect(cat(k, typeDir + "/name") == "VFIO AP Passthrough Device\n")
    #expect(cat(k, typeDir + "/device_api") == "vfio-ap\n")
    #expect(cat(k, typeDir + "/available_instances") == "65536\n")
    #expect((try? k.read(typeDir + "/description")) == nil)
    #expect(try k.sysfs.info(typeDir + "/create").mode == 0o200)
    #expect(try k.sysfs.readlink("/class/mdev_bus/matrix") == "../../devices/vfio_ap/matrix")
    #expect(try k.sysfs.canonicalPath("/class/mdev_bus/matrix") == "/devices/vfio_ap/matrix")
    #expect(try k.sysfs.list(typeDir + "/devices").isEmpty)
  }

  @Test func createRules() throws {
    let k = HostKernel()
    #expect(echo(k, uuid1, createPath) == nil)
    #expect(cat(k, typeDir + "/available_instances") == "65535\n")
    // 37 bytes: the 37th is not looked at.
    #expect(echo(k, uuid2 + "x", createPath) == nil)
    #expect(k.vfioAP.mdev(uuid2) != nil)
    // Duplicates compare as UUIDs: upper case is the same device.
    #expect(echo(k, uuid1.uppercased() + "\n", createPath) == .fileExists)
    #expect(echo(k, String(uuid3.dropLast()), createPath) == .invalidArgument)
    #expect(echo(k, uuid3 + "\n\n", createPath) == .invalidArgument)
    #expect(echo(k, "90c6c135_ad44-41d0-b1b7-bae47de48627", createPath) == .invalidArgument)
    #expect(echo(k, "90c6c135-ad44-41d0-b1b7-bae47de4862g", createPath) == .invalidArgument)
    #expect(echo(k, uuid3.uppercased(), createPath) == nil)
    #expect(k.vfioAP.mdev(uuid3)?.uuid == uuid3)
    #expect(try k.sysfs.list(typeDir + "/devices").map(\.name) == [uuid2, uuid1, uuid3].sorted())
  }

  @Test func mdevLinksAndModes() throws {
    let k = HostKernel()
    makeMdev(k, uuid1)
    let dir = mdevPath(uuid1)
    #expect(try k.sysfs.readlink("/bus/mdev/devices/\(uuid1)") == "../../../devices/vfio_ap/matrix/\(uuid1)")
    #expect(try k.sysfs.readlink(dir + "/mdev_type") == "../mdev_supported_types/vfio_ap-passthrough")
    #expect(
      try k.sysfs.canonicalPath("/bus/mdev/devices/\(uuid1)/mdev_type")
        == "/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough")
    #expect(cat(k, "/bus/mdev/devices/\(uuid1)/mdev_type/device_api") == "vfio-ap\n")
    #expect(try k.sysfs.readlink(typeDir + "/devices/\(uuid1)") == "../../../\(uuid1)")
    #expect(try k.sysfs.canonicalPath("/bus/mdev/drivers/vfio_ap_mdev/\(uuid1)") == dir)
    #expect(try k.sysfs.readlink(dir + "/driver") == "../../../../bus/mdev/drivers/vfio_ap_mdev")
    #expect(
      try k.sysfs.readlink("/bus/mdev/drivers/vfio_ap_mdev/\(uuid1)")
        == "../../../../devices/vfio_ap/matrix/\(uuid1)")
    #expect(try k.sysfs.canonicalPath(dir + "/driver") == "/bus/mdev/drivers/vfio_ap_mdev")
    let modes = Dictionary(
      uniqueKeysWithValues: try k.sysfs.list(dir).filter { $0.kind == .attribute }.map {
        ($0.name, try k.sysfs.info(dir + "/" + $0.name).mode)
      })
    #expect(
      modes == [
        "assign_adapter": 0o200, "unassign_adapter": 0o200, "assign_domain": 0o200, "unassign_domain": 0o200,
        "assign_control_domain": 0o200, "unassign_control_domain": 0o200, "control_domains": 0o444,
        "matrix": 0o444, "guest_matrix": 0o444, "ap_config": 0o644, "remove": 0o200, "uevent": 0o644,
      ])
    // A write-only attribute cannot be read, a read-only one not written.
    #expect(throws: Errno.permissionDenied) { try k.sysfs.read(dir + "/assign_adapter") }
    #expect(echo(k, "1", dir + "/matrix") == .permissionDenied)
  }

  @Test func removeRules() throws {
    let k = bootWithFreedAdapters()
    makeMdev(k, uuid1, adapters: [5], domains: [4])
    #expect(echo(k, "x", mdevPath(uuid1) + "/remove") == .invalidArgument)
    #expect(echo(k, "0", mdevPath(uuid1) + "/remove") == nil)
    #expect(k.vfioAP.mdev(uuid1) != nil)
    #expect(echo(k, "1\n", mdevPath(uuid1) + "/remove") == nil)
    #expect(k.vfioAP.mdev(uuid1) == nil)
    #expect((try? k.sysfs.info(mdevPath(uuid1))) == nil)
    #expect((try? k.sysfs.info("/bus/mdev/devices/\(uuid1)", followLast: false)) == nil)
    #expect(cat(k, typeDir + "/available_instances") == "65536\n")
    // Its APQNs are free again.
    #expect(k.vfioAP.owner(of: APQN(5, 4)) == nil)
    makeMdev(k, uuid2, adapters: [5], domains: [4])
  }
}
