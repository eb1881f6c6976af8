import APModel
import Machine
import Sysfs

/// A queue device (`/sys/devices/ap/card05/05.0004`).
///
/// A full architecture has 65,536 of them, and a bulk configuration change adds or removes
/// 65,280 at once, so a queue device is only its own state: its directory is made when it is
/// first looked up (``directory``), and what the directory shows (the bus's attributes, the
/// bound driver's, the `driver` and `subsystem` links) is computed from the bus's and the
/// driver's tables then (``APDeviceLinks``), as kernfs shows a kobject's attributes.
public final class APQueue: SysfsOwner {
  /// What its sysfs directories hold of it, weakly (see ``SysfsOwnerToken``).
  public private(set) lazy var sysfsOwnerToken = SysfsOwnerToken(owner: self)

  public let apqn: APQN
  /// The card device (held strongly: a card holds none of its queues, the bus's table does).
  public let card: APCard
  public var config = true
  public var chkstop = false
  /// The driver bound now (`dev->driver`), or nil.
  var boundDriver: (any APDriverOperations)?
  /// The name of the driver bound now, or nil.
  public var driver: APDriver? { boundDriver?.driver }
  /// Set through `driver_override`: only this driver may bind the queue, masks aside.
  public var driverOverride: String?
  /// Whether the AP bus state machine runs for it (`ap_queue_init_state`, which zcrypt's queue
  /// probe calls and vfio_ap's does not): otherwise `request_count` and the queue counters
  /// read `-`.
  public internal(set) var initialized = false
  /// The AP bus's state machine for the queue (`aq->sm_state`): what `reset` and `interrupt`
  /// show. A `reset` written while the state machine does not run (bound to vfio_ap, or to
  /// nothing) sets `resetStart`, and `ap_sm_event` does nothing for an uninitiated queue, so no
  /// RAPQ is issued and the state stays until a default driver binds the queue again
  /// (`ap_queue_init_state`). The unbind leaves the state as it was (`ap_queue_remove`).
  public internal(set) var smState: SMState = .idle
  /// Whether the state machine has seen interruptions enabled (`aq->interrupt`).
  public internal(set) var interruptsEnabled = false
  /// The response code that stopped the state machine (`AP_DEV_STATE_ERROR`, `last_err_rc`),
  /// or nil while it runs.
  public internal(set) var lastError: APResponseCode?

  /// `enum ap_sm_state`, without the states of a queue with requests (nothing sends any).
  public enum SMState: Sendable, Equatable {
    /// `AP_SM_STATE_RESET_START`: the reset (RAPQ) is to be issued.
    case resetStart
    /// `AP_SM_STATE_RESET_WAIT`: issued; polled with TAPQ until it answers 00.
    case resetWait
    /// `AP_SM_STATE_SETIRQ_WAIT`: interruptions asked for (AQIC); polled until TAPQ shows them.
    case setIRQWait
    /// `AP_SM_STATE_IDLE`.
    case idle
  }

  /// Whether a reset was requested and has not completed (`reset` reads `Reset in progress.`).
  public var resetRequested: Bool { smState == .resetStart || smState == .resetWait }
  /// Requests processed (`total_request_count` of `struct ap_queue`).
  public var requestCount: UInt64 = 0
  /// The directory, once someone looked the queue up.
  private var madeDirectory: SysfsDirectory?

  init(apqn: APQN, card: APCard) {
    self.apqn = apqn
    self.card = card
  }

  /// The queue's directory, a child of its card's that the card's directory serves from the
  /// bus's table: made at the first lookup and kept, so that it stays the same directory (the
  /// same inode) while the device lives. Everything in it is computed when looked up.
  public var directory: SysfsDirectory {
    if let d = madeDirectory { return d }
    let d = card.directory.makeComputedDirectory(name)
    d.provideChildren(APDeviceLinks.deviceLinks, owner: self)
    madeDirectory = d
    return d
  }

  /// The directory if someone has looked the queue up.
  var existingDirectory: SysfsDirectory? { madeDirectory }

  /// Where the device is (`/devices/ap/card05/05.0004`), for its events.
  var devicePath: APDevicePath { .queue(apqn) }

  /// The child `name` of the queue's directory has vanished from the tables (the `driver` link,
  /// an attribute of a driver's group): the removal journal is told, without making the
  /// directory to tell it.
  func childRemoved(_ name: @autoclosure () -> String) {
    if let d = madeDirectory {
      d.computedChildRemoved(name())
    } else {
      card.directory.computedChildRemoved(name(), inChild: self.name)
    }
  }

  /// A driver's group no longer applies to the queue (its remove): each attribute is journaled
  /// as a removed group's are, when the journal records.
  func groupRemoved(_ group: SysfsAttributeGroup) {
    guard card.directory.recordsRemovals else { return }
    for a in group.attributes { childRemoved(a.name) }
  }

  /// `05.0004`
  public var name: String { apqn.description }

  /// What `dev_uevent` and `ap_uevent` give the queue: its device type, its driver when bound,
  /// and the card's `MODE`.
  public var ueventVariables: [String] { ueventParts.strings }

  /// The values ``ueventVariables`` is written from, as an event keeps them.
  var ueventParts: APDeviceUEventVariables { .init(kind: .queue, driver: driver, mode: card.mode) }

  var ueventObject: UEventObject {
    .device(
      devpath: devicePath.string, subsystem: "ap", variables: ueventVariables, logName: name,
      logDriver: driver?.name ?? "ap")
  }
}
