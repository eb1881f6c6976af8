import APModel
import Machine
import Sysfs

/// A card device (`/sys/devices/ap/card05`): one adapter as the AP bus sees it.
public final class APCard: SysfsOwner {
  /// What its sysfs directories hold of it, weakly (see ``SysfsOwnerToken``).
  public private(set) lazy var sysfsOwnerToken = SysfsOwnerToken(owner: self)

  public let apid: APID
  /// The type TAPQ reports.
  public let rawType: AdapterType
  /// The type the kernel works with (`hwtype`): newer hardware mapped to the newest known.
  public var type: AdapterType { rawType.compatible }
  public let mode: AdapterMode
  public let functions: UInt32
  public let queueDepth: Int
  /// Maximum message length in 4 KiB units (0 = 12 KiB).
  public let ml: Int
  /// SCLP configured (`config`).
  public var config = true
  public var chkstop = false
  /// The driver bound now (`dev->driver`), or nil.
  var boundDriver: (any APDriverOperations)?
  /// The name of the driver bound now, or nil.
  public var driver: APDriver? { boundDriver?.driver }
  /// Requests processed, summed over the card's queues (`total_request_count` of
  /// `struct ap_card`).
  public var requestCount: UInt64 = 0
  public let directory: SysfsDirectory
  unowned let bus: APBus

  init(apid: APID, info: TAPQInfo, directory: SysfsDirectory, bus: APBus) {
    self.bus = bus
    self.apid = apid
    rawType = info.type
    mode = info.mode
    functions = info.functions
    queueDepth = info.queueDepth
    ml = info.ml
    config = info.adapterConfigured
    chkstop = info.checkstopped
    self.directory = directory
  }

  /// `card05`
  public var name: String { "card" + hex2(apid) }

  /// Where the device is (`/devices/ap/card05`), for its events.
  var devicePath: APDevicePath { .card(apid) }

  /// zcrypt's `type`: `CEX8C`.
  public var typeName: String { type.name + mode.typeSuffix }

  /// What `dev_uevent` and `ap_uevent` give the card: its device type, its driver when bound,
  /// then `DEV_TYPE`, `MODALIAS` (both of the type the kernel works with) and `MODE`.
  public var ueventVariables: [String] { ueventParts.strings }

  /// The values ``ueventVariables`` is written from, as an event keeps them.
  var ueventParts: APDeviceUEventVariables { .init(kind: .card(type), driver: driver, mode: mode) }

  var ueventObject: UEventObject {
    .device(
      devpath: directory.path, subsystem: "ap", variables: ueventVariables, logName: name,
      logDriver: driver?.name ?? "ap")
  }

  /// `max_msg_size`: ml x 4096, or 12288 when ml is 0.
  public var maxMessageSize: Int { ml == 0 ? 12288 : ml * 4096 }
}
