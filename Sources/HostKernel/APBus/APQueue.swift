import APModel
import Machine
import Sysfs

/// A queue device (`/sys/devices/ap/card05/05.0004`).
public final class APQueue {
  public let apqn: APQN
  public unowned let card: APCard
  public var config = true
  public var chkstop = false
  /// The driver bound now, or nil.
  public var driver: APDriver?
  /// Set through `driver_override`: only this driver may bind the queue, masks aside.
  public var driverOverride: String?
  /// Whether the AP bus state machine runs for it (a default driver bound it): otherwise
  /// `request_count` and the queue counters read `-`.
  public var initialized = false
  /// A `reset` written while the AP bus's state machine does not run for the queue (bound to
  /// vfio_ap, or to nothing): `reset_store` sets AP_SM_STATE_RESET_START, and `ap_sm_event`
  /// does nothing for an uninitiated queue, so no RAPQ is issued and the state stays until a
  /// default driver binds the queue again (`ap_queue_init_state`).
  public var resetRequested = false
  /// zcrypt's online switch for the queue.
  public var online = true
  public var requestCount: UInt64 = 0
  /// vfio_ap's per-queue data (`struct vfio_ap_queue`) while vfio_ap has the queue bound.
  var vfio: VFIOAPQueue?
  public let directory: SysfsDirectory

  init(apqn: APQN, card: APCard, directory: SysfsDirectory) {
    self.apqn = apqn
    self.card = card
    self.directory = directory
  }

  /// `05.0004`
  public var name: String { apqn.description }

  /// What `dev_uevent` and `ap_uevent` give the queue: its device type, its driver when bound,
  /// and the card's `MODE`.
  public var ueventVariables: [String] {
    ["DEVTYPE=ap_queue"] + (driver.map { ["DRIVER=" + $0.name] } ?? []) + ["MODE=" + card.mode.ueventName]
  }

  var ueventObject: UEventObject {
    .device(
      devpath: directory.path, subsystem: "ap", variables: ueventVariables, logName: name,
      logDriver: driver?.name ?? "ap")
  }
}

/// What vfio_ap keeps per bound queue (`struct vfio_ap_queue`).
final class VFIOAPQueue {
  let apqn: APQN
  /// The mdev the queue is linked to, if any.
  weak var matrixMdev: MediatedDevice?
  /// The response code of the last reset (ZAPQ) vfio_ap issued; 00 until the first.
  var resetResponseCode: APResponseCode = .normal

  init(apqn: APQN) { self.apqn = apqn }
}
