import APModel
import Sysfs

/// The links of the AP bus that are views of its tables, computed when looked up as kernfs shows
/// a kset's kobjects, instead of one stored node per device: the bus's device list, each
/// driver's bound devices, and each device's own `subsystem` and `driver`. A link is there
/// exactly while the table entry is; the bus tells the directory when an entry goes
/// (``SysfsDirectory/computedChildRemoved(_:)``), so the removal journal names the link as it
/// named the stored one.
///
/// The providers are stateless: one of each serves every directory of its kind, given the
/// directory's owner back (the bus, a driver's handle, a card or a queue).
enum APDeviceLinks {
  /// `/sys/bus/ap/devices`: `card05` and `05.0004`, each a link to the device's directory
  /// (`../../../devices/ap/card05/05.0004`). Owner: the ``APBus``.
  static let busDevices = BusDevices()
  /// `/sys/bus/ap/drivers/<drv>`: a link per device bound to the driver
  /// (`../../../../devices/ap/card05`). Owner: the driver's ``APDriverHandle``.
  static let driverDevices = DriverDevices()
  /// A card's or a queue's `subsystem` (`/sys/bus/ap`) and, while bound, `driver`
  /// (`/sys/bus/ap/drivers/<drv>`); for a card also its queues' directories (`05.0004`), from
  /// the bus's queue table; for a queue also its attributes: the bus's (`ap_queue_dev_attr_group`)
  /// and those the bound driver's probe gave it (``APDriverOperations/queueGroups(_:)``).
  /// Owner: the ``APCard`` or ``APQueue``.
  static let deviceLinks = DeviceLinks()

  final class BusDevices: SysfsChildProvider, Sendable {
    func child(_ name: String, of owner: AnyObject, in directory: SysfsDirectory) -> SysfsProvidedChild? {
      guard let device = (owner as! APBus).device(named: name) else { return nil }
      return .symlink(device.linkTarget(from: directory))
    }

    func childNames(of owner: AnyObject, in directory: SysfsDirectory) -> [String] {
      let bus = owner as! APBus
      return bus.cards.values.map(\.name) + bus.queues.values.map(\.name)
    }
  }

  final class DriverDevices: SysfsChildProvider, Sendable {
    func child(_ name: String, of owner: AnyObject, in directory: SysfsDirectory) -> SysfsProvidedChild? {
      let handle = owner as! APDriverHandle
      guard let device = handle.bus.device(named: name), device.boundDriver === handle.driver else {
        return nil
      }
      return .symlink(device.linkTarget(from: directory))
    }

    func childNames(of owner: AnyObject, in directory: SysfsDirectory) -> [String] {
      let handle = owner as! APDriverHandle
      let d = handle.driver
      return handle.bus.cards.values.compactMap { $0.boundDriver === d ? $0.name : nil }
        + handle.bus.queues.values.compactMap { $0.boundDriver === d ? $0.name : nil }
    }
  }

  final class DeviceLinks: SysfsChildProvider, Sendable {
    func child(_ name: String, of owner: AnyObject, in directory: SysfsDirectory) -> SysfsProvidedChild? {
      switch name {
      case "subsystem": .symlink(directory.linkTarget(toAbsolute: "/bus/ap"))
      case "driver":
        Self.driver(of: owner).map {
          .symlink(directory.linkTarget(toAbsolute: "/bus/ap/drivers/" + $0.name))
        }
      default:
        Self.queue(name, of: owner).map { .directory($0.directory) }
      }
    }

    func groups(of owner: AnyObject, in directory: SysfsDirectory) -> [SysfsBoundGroup] {
      guard let q = owner as? APQueue else { return [] }
      let own = SysfsBoundGroup(q.card.bus.attributes.queueGroup, owner: q)
      guard let d = q.boundDriver else { return [own] }
      return [own] + d.queueGroups(q)
    }

    func childNames(of owner: AnyObject, in directory: SysfsDirectory) -> [String] {
      var names = Self.driver(of: owner) == nil ? ["subsystem"] : ["driver", "subsystem"]
      if let card = owner as? APCard { names += card.bus.queues(of: card).map(\.name) }
      return names
    }

    /// The queue device `name` (`05.0004`, exactly) of the card `owner`.
    static func queue(_ name: String, of owner: AnyObject) -> APQueue? {
      guard let card = owner as? APCard, let apqn = APQN(name), apqn.apid == card.apid,
        let q = card.bus.queues[apqn.rawValue], q.name == name
      else { return nil }
      return q
    }

    static func driver(of owner: AnyObject) -> APDriver? {
      if let q = owner as? APQueue { return q.driver }
      return (owner as! APCard).driver
    }
  }
}
