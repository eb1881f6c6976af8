import Synchronization
import Sysfs
import SystemPackage
import Testing

/// An object that owns attributes, like a card or a queue device.
final class Device: @unchecked Sendable, SysfsOwner {  // test-only; used from one test at a time
  lazy var sysfsOwnerToken = SysfsOwnerToken(owner: self)
  var value: String
  var stored: [[UInt8]] = []
  var storeError: Errno?
  var showError: Errno?
  init(_ value: String) { self.value = value }
}

/// Another owner type, to check that a group binds the owner it was added with.
final class Driver: @unchecked Sendable, SysfsOwner {  // test-only; immutable after init
  lazy var sysfsOwnerToken = SysfsOwnerToken(owner: self)
  let name: String
  init(_ name: String) { self.name = name }
}

let valueAttribute = SysfsAttribute.readWrite(
  "value",
  show: { (d: Device) throws(Errno) -> String in
    if let e = d.showError { throw e }
    return d.value + "\n"
  },
  store: { (d: Device, bytes: [UInt8]) throws(Errno) in
    if let e = d.storeError { throw e }
    d.stored.append(bytes)
  })

let readOnlyAttribute = SysfsAttribute.readOnly("hwtype") { (d: Device) throws(Errno) -> String in "14\n" }

let writeOnlyAttribute = SysfsAttribute.writeOnly("reset") { (d: Device, bytes: [UInt8]) throws(Errno) in
  d.stored.append(bytes)
}

let liveDevices = Mutex<[Device]>([])

let liveDrivers = Mutex<[Driver]>([])

/// Keeps a driver object alive for the test run.
func keepDriver(_ d: Driver) -> Driver {
  liveDrivers.withLock { $0.append(d) }
  return d
}

/// Keeps a device alive for the test run, as its subsystem would.
func keep(_ d: Device) -> Device {
  liveDevices.withLock { $0.append(d) }
  return d
}

/// A tree with:
///
///     /devices/ap/card05/{hwtype (0444), reset (0200), value (0644)}
///     /bus/ap/devices/card05 -> ../../../devices/ap/card05
///     /name (0444, at the root)
func makeTree(_ device: Device = Device("hello")) -> SysfsTree {
  // sysfs holds attribute owners weakly (a real owner, a device, is held by its subsystem); the
  // fixture keeps its devices alive for the whole test run.
  liveDevices.withLock { $0.append(device) }
  let tree = SysfsTree()
  let card = tree.makeDirectories("/devices/ap/card05")
  card.attribute(readOnlyAttribute, owner: device)
  card.attribute(writeOnlyAttribute, owner: device)
  card.attribute(valueAttribute, owner: device)
  tree.makeDirectories("/bus/ap/devices").symlink("card05", toAbsolute: "/devices/ap/card05")
  tree.root.attribute(
    SysfsAttribute.readOnly("name") { (_: Device) throws(Errno) in "root\n" }, owner: device)
  return tree
}

/// Runs `body` and returns the errno it threw, or nil. Any other error is a test failure.
func errno(_ body: () throws -> Void) -> Errno? {
  do {
    try body()
    return nil
  } catch let e as Errno {
    return e
  } catch {
    Issue.record("unexpected error \(error)")
    return nil
  }
}
