import APModel
import Machine
import Sysfs
import SystemPackage

/// A driver on the AP bus as devices and `/sys/bus/ap/drivers/` name it: zcrypt's default
/// drivers for CEX4+ cards and queues (`zcrypt_cex4.c`), and vfio_ap for queues handed to
/// guests (`vfio_ap_drv.c`). What a driver does is its ``APDriverOperations``.
public struct APDriver: Hashable, Sendable, CustomStringConvertible {
  /// The name under `/sys/bus/ap/drivers/`.
  public let name: String

  public init(name: String) { self.name = name }

  /// zcrypt's card driver (`zcrypt_cex4_card_driver`).
  public static let cex4card = APDriver(name: "cex4card")
  /// zcrypt's queue driver (`zcrypt_cex4_queue_driver`).
  public static let cex4queue = APDriver(name: "cex4queue")
  /// vfio_ap's queue driver (`vfio_ap_drv`).
  public static let vfioAP = APDriver(name: "vfio_ap")

  public var description: String { name }
}

/// What `struct ap_device_id` matches (`AP_DEVICE_ID_MATCH_CARD_TYPE`,
/// `AP_DEVICE_ID_MATCH_QUEUE_TYPE`): a card or a queue device of one device type.
struct APDeviceID: Hashable {
  enum Kind: Hashable {
    case card
    case queue
  }
  let kind: Kind
  /// The device type (`ap_dev->device_type`): the card's compatible type.
  let type: AdapterType

  /// The table of a driver for the Crypto Express generations the kernel knows, CEX4 to CEX8,
  /// as zcrypt's `zcrypt_cex4_card_ids`/`zcrypt_cex4_queue_ids` and vfio_ap's `ap_queue_ids`
  /// list them.
  static func cex4Onwards(_ kind: Kind) -> APDeviceIDTable {
    APDeviceIDTable(
      (AdapterType.cex4.rawValue...AdapterType.newestKnown.rawValue).map {
        APDeviceID(kind: kind, type: AdapterType(rawValue: $0))
      })
  }
}

/// A driver's `ap_device_id` table, kept as one bit per device type and kind: `ap_bus_match`
/// runs for every driver and every device the bus adds (three drivers, 65,536 queues at a
/// full-architecture boot), and a bit test needs neither the list nor a comparison per entry.
struct APDeviceIDTable {
  private var cards = APMask()
  private var queues = APMask()

  init(_ ids: [APDeviceID]) {
    for id in ids where (0...255).contains(id.type.rawValue) {
      switch id.kind {
      case .card: cards.insert(id.type.rawValue)
      case .queue: queues.insert(id.type.rawValue)
      }
    }
  }

  /// One of the ids names a device of this kind and type.
  func matches(_ kind: APDeviceID.Kind, _ type: AdapterType) -> Bool {
    kind == .card ? cards.contains(type.rawValue) : queues.contains(type.rawValue)
  }
}

/// A device on the AP bus (`struct ap_device`): a card or a queue, which is all a driver's
/// operations are given.
enum APDevice {
  case card(APCard)
  case queue(APQueue)

  var kind: APDeviceID.Kind {
    switch self {
    case .card: .card
    case .queue: .queue
    }
  }

  /// `ap_dev->device_type`: the type the kernel works with, for a queue its card's.
  var deviceType: AdapterType {
    switch self {
    case .card(let c): c.type
    case .queue(let q): q.card.type
    }
  }

  var name: String {
    switch self {
    case .card(let c): c.name
    case .queue(let q): q.name
    }
  }

  /// The device's directory (for a queue, made if no one has looked it up yet).
  var directory: SysfsDirectory {
    switch self {
    case .card(let c): c.directory
    case .queue(let q): q.directory
    }
  }

  /// Where the device is, for its events.
  var devicePath: APDevicePath {
    switch self {
    case .card(let c): c.devicePath
    case .queue(let q): q.devicePath
    }
  }

  /// The target of a link from `directory` to the device's directory, as
  /// ``SysfsDirectory/linkTarget(to:)`` writes it: for a queue, the way to its card's directory
  /// and its name, so that listing `/sys/bus/ap/devices` makes no queue directory.
  func linkTarget(from directory: SysfsDirectory) -> String {
    switch self {
    case .card(let c): directory.linkTarget(to: c.directory)
    case .queue(let q): directory.linkTarget(to: q.card.directory) + "/" + q.name
    }
  }

  /// The child `name` of the device's directory has vanished from the tables: the removal
  /// journal is told (for a queue, without making its directory).
  func childRemoved(_ name: @autoclosure () -> String) {
    switch self {
    case .card(let c): c.directory.computedChildRemoved(name())
    case .queue(let q): q.childRemoved(name())
    }
  }

  /// What `dev_uevent` and `ap_uevent` give the device now (its `uevent` file).
  var ueventVariables: [String] {
    switch self {
    case .card(let c): c.ueventVariables
    case .queue(let q): q.ueventVariables
    }
  }

  /// The values ``ueventVariables`` is written from, as an event keeps them.
  var ueventParts: APDeviceUEventVariables {
    switch self {
    case .card(let c): c.ueventParts
    case .queue(let q): q.ueventParts
    }
  }

  /// `dev->driver`: the driver bound now.
  var boundDriver: (any APDriverOperations)? {
    get {
      switch self {
      case .card(let c): c.boundDriver
      case .queue(let q): q.boundDriver
      }
    }
    nonmutating set {
      switch self {
      case .card(let c): c.boundDriver = newValue
      case .queue(let q): q.boundDriver = newValue
      }
    }
  }
}

/// The operations of an AP device driver (`struct ap_driver` in `ap_bus.h`), which is all the AP
/// bus knows of its drivers: it registers them (`ap_driver_register`), matches devices against
/// their ids (`ap_bus_match`), and calls these operations. zcrypt's `cex4card` and `cex4queue`
/// and vfio_ap implement them.
protocol APDriverOperations: AnyObject {
  /// The driver's name (`ap_drv->driver.name`).
  var driver: APDriver { get }
  /// `AP_DRIVER_FLAG_DEFAULT`: a default driver binds the queues apmask x aqmask reserve for
  /// the host; the others bind the rest.
  var isDefault: Bool { get }
  /// `ap_drv->ids`: the devices the driver matches.
  var ids: APDeviceIDTable { get }
  /// `ap_drv->probe`, called by `ap_device_probe` once the bus has decided the device is the
  /// driver's (the device's `driver` is set, its links made). A driver that refuses the device
  /// throws, and the device stays unbound.
  func probe(_ device: APDevice) throws(Errno)
  /// `ap_drv->remove`, called by `ap_device_remove` before the bus flushes and resets a queue.
  func remove(_ device: APDevice)
  /// `ap_drv->in_use`: whether the driver uses any APQN of `apm x aqm`, asked before the masks
  /// reserve them for the default drivers (`__verify_card_reservations`,
  /// `__verify_queue_reservations` turn a yes into EBUSY).
  func inUse(apm: APMask, aqm: APMask) -> Bool
  /// `ap_drv->on_config_changed`: the scan read a new configuration with QCI, before it adds or
  /// removes devices.
  func onConfigChanged(old: QCIInfo, new: QCIInfo)
  /// `ap_drv->on_scan_complete`: the scan that followed a configuration change is done.
  func onScanComplete(old: QCIInfo, new: QCIInfo)
  /// The attribute groups the driver's probe gave a queue bound to it (`sysfs_create_group` on
  /// the device), each with the driver's record of the queue that its attributes show, computed
  /// from the driver's table when the queue's directory is looked up (see ``APQueue``).
  func queueGroups(_ q: APQueue) -> [SysfsBoundGroup]
}

extension APDriverOperations {
  /// A driver without `in_use` uses nothing the masks could take.
  func inUse(apm: APMask, aqm: APMask) -> Bool { false }
  func onConfigChanged(old: QCIInfo, new: QCIInfo) {}
  func onScanComplete(old: QCIInfo, new: QCIInfo) {}
  func queueGroups(_ q: APQueue) -> [SysfsBoundGroup] { [] }

  /// `ap_bus_match`: one of the driver's ids names the device's kind and type.
  func matchesType(of device: APDevice) -> Bool {
    ids.matches(device.kind, device.deviceType)
  }
}
