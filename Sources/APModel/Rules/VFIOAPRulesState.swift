/// What the assignment rules of vfio_ap (`vfio_ap_ops.c`) and the ownership rules of the AP bus
/// (`ap_bus.c`) look at, asked of whoever holds it: the emulated kernel answers from its own
/// tables (its ownership index, its queue devices), the planner from a sysfs snapshot. Nothing is
/// copied into a value first, so that a store costs what it looks up, not the size of the host.
///
/// The answers must describe one consistent moment: the kernel takes its locks before it asks.
public protocol VFIOAPRulesState {
  /// How the state names a mediated device (`struct ap_matrix_mdev`): the kernel's object, the
  /// planner's index into its snapshot.
  associatedtype Mdev: Equatable

  /// The rule differences of the kernel version the state is from.
  var features: VFIOAPRuleFeatures { get }
  /// `ap_perms.apm` and `ap_perms.aqm` (`/sys/bus/ap/apmask`, `aqmask`).
  var apmask: APMask { get }
  var aqmask: APMask { get }
  /// `apm_max`, `aqm_max` and `adm_max` of the mdevs.
  var limits: VFIOAPLimits { get }
  /// Whether any queue has a `driver_override` (`ap_driver_override_ctr` is not 0): only then
  /// must ownership be asked APQN by APQN.
  var hasDriverOverrides: Bool { get }
  /// The queue device's `driver_override` and the driver bound to it; nil for no queue device or
  /// no override.
  func driverOverride(of apqn: APQN) -> APQueueOverride?
  /// The mdev whose assigned matrix holds the APQN (`vfio_ap_mdev_for_queue`); the rules keep
  /// each APQN in at most one.
  func mdev(holding apqn: APQN) -> Mdev?
  /// An mdev's assigned matrix (`matrix_mdev->matrix`).
  func matrix(of mdev: Mdev) -> APMatrix
  /// Whether `a` comes before `b` in `matrix_dev->mdev_list`: the kernel's walks meet the newest
  /// first, and the first mdev met is the one it reports.
  func precedes(_ a: Mdev, _ b: Mdev) -> Bool
}

/// The kernel versions' differences that change a rule's answer. (Those that change only a log
/// line's words, such as d33d729afcc8's sharing messages, are the kernel's business.)
public struct VFIOAPRuleFeatures: OptionSet, Hashable, Sendable {
  public let rawValue: Int
  public init(rawValue: Int) { self.rawValue = rawValue }

  /// Linux 6.19 (d38a87d7c064, 46030379f13c): a queue's `driver_override` decides its owner
  /// whatever the masks say (`ap_owned_by_def_drv`).
  public static let driverOverride = VFIOAPRuleFeatures(rawValue: 1 << 0)
}

/// vfio_ap's limits of the ids an mdev may be given (`matrix.apm_max`, `aqm_max`, `adm_max`):
/// QCI's Na and Nd with APXA, 63 and 15 without.
public struct VFIOAPLimits: Hashable, Sendable {
  public var apmMax: Int
  public var aqmMax: Int
  public var admMax: Int

  public init(apmMax: Int, aqmMax: Int, admMax: Int) {
    self.apmMax = apmMax
    self.aqmMax = aqmMax
    self.admMax = admMax
  }

  /// The limit of one kind of id.
  public subscript(kind: VFIOAPIDKind) -> Int {
    switch kind {
    case .adapter: apmMax
    case .domain: aqmMax
    case .controlDomain: admMax
    }
  }
}

/// What an mdev's `assign_*` and `unassign_*` files take.
public enum VFIOAPIDKind: Hashable, Sendable {
  case adapter, domain, controlDomain
}

/// A queue device's `driver_override` (Linux 6.19) with the driver bound to it, which is what
/// `ap_owned_by_def_drv` looks at.
public struct APQueueOverride: Hashable, Sendable {
  /// The driver named in `driver_override`.
  public var name: String
  /// The bound driver's name; nil when none is bound.
  public var boundDriver: String?
  /// Whether the bound driver is one of the host's default drivers (`AP_DRIVER_FLAG_DEFAULT`).
  public var boundDriverIsDefault: Bool

  public init(name: String, boundDriver: String?, boundDriverIsDefault: Bool) {
    self.name = name
    self.boundDriver = boundDriver
    self.boundDriverIsDefault = boundDriverIsDefault
  }
}
