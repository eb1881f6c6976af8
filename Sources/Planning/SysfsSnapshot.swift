import APModel

/// The AP part of a host's sysfs, read once from a root directory: the emulated host's mount
/// (`/run/apvirt/sys`), a real LPAR's `/sys`, or a plain `cp -r` copy of either.
///
/// It holds what the assignment rules and the filtering need: the AP bus's masks and limits, the
/// host's AP configuration (QCI), every card and queue with its driver and state, and every
/// mediated device with its assigned and filtered matrices. Files that older kernels lack
/// (`features` before 6.4, an mdev's `ap_config` before 6.10, `guest_matrix` before 6.2) are
/// optional; a file every AP kernel has and that cannot be read is a ``SnapshotError``.
public struct SysfsSnapshot: Hashable, Sendable {
  /// The directory it was read from (what `/sys` is on an LPAR).
  public var root: String
  /// `bus/ap/apmask`, `bus/ap/aqmask`: the APQNs reserved for the host's default drivers are
  /// those whose adapter bit and domain bit are both set.
  public var apmask: APMask
  public var aqmask: APMask
  /// The host's AP configuration as QCI reports it (`ap_adapter_mask`, `ap_usage_domain_mask`,
  /// `ap_control_domain_mask`); nil without QCI (`not supported`).
  public var qci: APMatrix?
  /// `ap_max_adapter_id`, `ap_max_domain_id`: vfio_ap's `apm_max` and `aqm_max`/`adm_max` are the
  /// same numbers (`na`/`nd` with APXA, 63 and 15 without).
  public var maxAdapterID: Int
  public var maxDomainID: Int
  /// `bus/ap/features` (`APSC APXA QACT RC8A APSB`); nil before Linux 6.4.
  public var features: [String]?
  public var cards: [APID: Card]
  public var queues: [APQN: Queue]
  /// The mediated devices, by UUID ascending.
  public var mdevs: [Mdev]
  /// Whether `devices/vfio_ap/matrix` exists (the vfio_ap module is loaded).
  public var hasVFIOAP: Bool
  /// `bus/ap/ap_interrupts`: whether the AP bus uses interrupts (the machine has AQIC).
  public var interrupts: Bool?

  public struct Card: Hashable, Sendable {
    public var apid: APID
    /// zcrypt's `type` (`CEX8C`); nil when no zcrypt driver is bound.
    public var type: String?
    public var driver: String?
    public var online: Bool?
    public var config: Bool?
    public var chkstop: Bool?
    /// `raw_hwtype`: the type TAPQ reports (14 for a CEX8), before the kernel maps a newer one
    /// to the newest it knows (`hwtype`).
    public var rawHardwareType: Int?
    /// `ap_functions`: TAPQ's facility bits (the mode: CCA, accelerator, EP11; APXA).
    public var functions: UInt32?
    /// `depth`: the queue depth TAPQ reports.
    public var depth: Int?

    public init(
      apid: APID, type: String? = nil, driver: String? = nil, online: Bool? = nil, config: Bool? = nil,
      chkstop: Bool? = nil, rawHardwareType: Int? = nil, functions: UInt32? = nil, depth: Int? = nil
    ) {
      self.apid = apid
      self.type = type
      self.driver = driver
      self.online = online
      self.config = config
      self.chkstop = chkstop
      self.rawHardwareType = rawHardwareType
      self.functions = functions
      self.depth = depth
    }
  }

  public struct Queue: Hashable, Sendable {
    public var apqn: APQN
    /// The bound driver's name (`cex4queue`, `vfio_ap`); nil when unbound.
    public var driver: String?
    public var online: Bool?
    public var config: Bool?
    public var chkstop: Bool?
    /// vfio_ap's `status` (`in use`, `assigned`, `unassigned`) on a queue bound to it.
    public var status: String?
    /// Linux 6.19's `driver_override`; nil when unset or absent.
    public var driverOverride: String?

    public init(
      apqn: APQN, driver: String? = nil, online: Bool? = nil, config: Bool? = nil, chkstop: Bool? = nil,
      status: String? = nil, driverOverride: String? = nil
    ) {
      self.apqn = apqn
      self.driver = driver
      self.online = online
      self.config = config
      self.chkstop = chkstop
      self.status = status
      self.driverOverride = driverOverride
    }

    public var isBoundToVFIOAP: Bool { driver == SysfsSnapshot.vfioAPDriver }
    /// Whether a guest uses it now (vfio_ap's `status` reads `in use`).
    public var inUse: Bool { status == "in use" }
  }

  public struct Mdev: Hashable, Sendable {
    /// Lower case, as the directory is named.
    public var uuid: String
    /// The assigned matrix: `ap_config` where the kernel has it, else `matrix` and
    /// `control_domains`.
    public var matrix: APMatrix
    /// `guest_matrix` (adapters and domains; the guest's control domains are not shown by the
    /// kernel); nil before Linux 6.2.
    public var guestMatrix: APMatrix?
    /// Whether any of its queues reads `in use`: a guest has the mdev open and uses them.
    public var inUse: Bool
    /// Whether it has `ap_config` (Linux 6.10).
    public var hasAPConfig: Bool

    public init(
      uuid: String, matrix: APMatrix, guestMatrix: APMatrix? = nil, inUse: Bool = false,
      hasAPConfig: Bool = true
    ) {
      self.uuid = uuid
      self.matrix = matrix
      self.guestMatrix = guestMatrix
      self.inUse = inUse
      self.hasAPConfig = hasAPConfig
    }

    /// The first eight hex digits, as the map's legend names it.
    public var shortID: String { String(uuid.prefix(8)) }
  }

  public static let vfioAPDriver = "vfio_ap"
  /// The default (zcrypt) driver a queue of a CEX4 or later adapter binds to.
  public static let defaultQueueDriver = "cex4queue"

  public init(
    root: String = "/sys", apmask: APMask = .all(), aqmask: APMask = .all(), qci: APMatrix? = nil,
    maxAdapterID: Int = 255, maxDomainID: Int = 255, features: [String]? = nil, cards: [APID: Card] = [:],
    queues: [APQN: Queue] = [:], mdevs: [Mdev] = [], hasVFIOAP: Bool = true
  ) {
    self.root = root
    self.apmask = apmask
    self.aqmask = aqmask
    self.qci = qci
    self.maxAdapterID = maxAdapterID
    self.maxDomainID = maxDomainID
    self.features = features
    self.cards = cards
    self.queues = queues
    self.mdevs = mdevs.sorted { $0.uuid < $1.uuid }
    self.hasVFIOAP = hasVFIOAP
  }

  /// The host's AP configuration: QCI's masks, or without QCI the cards and queues that exist
  /// (control domains unknown, so empty).
  public var hostConfiguration: APMatrix {
    if let qci { return qci }
    return APMatrix(apm: APMask(cards.keys), aqm: APMask(queues.keys.map(\.apqi)))
  }

  /// vfio_ap's `apm_max`, `aqm_max` and `adm_max`.
  public var apmMax: Int { maxAdapterID }
  public var aqmMax: Int { maxDomainID }
  public var admMax: Int { maxDomainID }

  public func mdev(_ uuid: String) -> Mdev? {
    let u = uuid.lowercased()
    return mdevs.first { $0.uuid == u }
  }

  /// The mdev whose assigned matrix holds `apqn` (the kernel lets at most one).
  public func holder(of apqn: APQN) -> Mdev? { mdevs.first { $0.matrix.contains(apqn) } }

  /// Whether any queue has a `driver_override` (Linux 6.19): masks and overrides exclude each
  /// other, and an overridden queue's owner is its driver.
  public var hasDriverOverrides: Bool { queues.values.contains { $0.driverOverride != nil } }

  /// `ap_owned_by_def_drv`: an overridden queue belongs to the default drivers when one of them
  /// is bound to it; any other APQN when apmask and aqmask both reserve it.
  /// (The shared rule, ``VFIOAPRules/ownedByDefDrv(_:)``.)
  public func ownedByDefaultDriver(_ apqn: APQN) -> Bool {
    VFIOAPRules(SnapshotRulesState(self, indexOwners: false)).ownedByDefDrv(apqn)
  }

  /// apmask bit `apid` and aqmask bit `apqi` are both set.
  public func isReservedByMasks(_ apqn: APQN) -> Bool {
    apmask.contains(apqn.apid) && aqmask.contains(apqn.apqi)
  }

  /// Whether the card or the queue is deconfigured (SCLP `config` 0).
  public func isDeconfigured(_ apqn: APQN) -> Bool {
    queues[apqn]?.config == false || cards[apqn.apid]?.config == false
  }

  public func isCheckstopped(_ apqn: APQN) -> Bool {
    queues[apqn]?.chkstop == true || cards[apqn.apid]?.chkstop == true
  }
}
