import APModel
import Sysfs

/// One vfio_ap mediated device (`struct ap_matrix_mdev`): the matrix an administrator assigned,
/// the guest's APCB filtered from it (the shadow APCB), the queues linked to it, and the KVM it
/// is attached to while a VMM has it open.
public final class MediatedDevice: SysfsOwner {
  /// What its sysfs directories hold of it, weakly (see ``SysfsOwnerToken``).
  public private(set) lazy var sysfsOwnerToken = SysfsOwnerToken(owner: self)

  /// The UUID in lower case, also the device's name.
  public let uuid: String
  /// Creation order. The kernel adds mdevs at the head of its list, so walks meet the newest
  /// first; ``VFIOAPDriver`` reproduces that order with this number.
  let sequence: Int
  /// The assigned adapters, usage domains and control domains (`matrix`, `ap_config`). Every
  /// assignment store reads it, under the host's lock, one access at a time: unchecked for
  /// exclusivity.
  @exclusivity(unchecked) public internal(set) var matrix = APMatrix()
  /// The guest's AP configuration (`guest_matrix`): the assigned matrix filtered against the
  /// host's configuration and the queues bound to vfio_ap. Kept even with no guest attached.
  public internal(set) var shadowAPCB = APMatrix()
  /// The linked queues, by ascending APQN: those of the assigned APQNs that are present and
  /// bound to vfio_ap, whose records name this mdev (``VFIOAPQueue/matrixMdev``). Found in
  /// vfio_ap's dense table rather than kept in one of the mdev's own: a bulk configuration change
  /// links and unlinks 65,280 queues at once.
  var queues: [VFIOAPQueue] {
    // The table once, not through the driver at each APQN (up to 65,536).
    let table = driver.queues
    var linked: [VFIOAPQueue] = []
    for apid in matrix.apm {
      for apqi in matrix.aqm {
        if let q = table[apid << 8 | apqi], q.isLinked(to: self) { linked.append(q) }
      }
    }
    return linked
  }

  /// The linked queue of `apqn`, if it is linked here.
  func linkedQueue(_ apqn: APQN) -> VFIOAPQueue? {
    guard let q = driver.queues[apqn.rawValue], q.isLinked(to: self) else { return nil }
    return q
  }
  /// The VM the device is attached to while open.
  public internal(set) var kvm: KVMVirtualMachine?
  /// Adapters, domains and control domains the host configuration gained that this mdev has
  /// assigned, while the AP bus scan that adds them is in progress.
  var apmAdd = APMask()
  var aqmAdd = APMask()
  var admAdd = APMask()
  /// The VMM's eventfds: the request IRQ (index 0) and the config-change IRQ (index 1).
  var requestTrigger: (@Sendable () -> Void)?
  var configChangeTrigger: (@Sendable () -> Void)?
  /// Whether a VMM has the vfio device open.
  public internal(set) var isOpen = false
  /// How many times the kernel asked the user to release the device (`#%u`).
  public internal(set) var requestCount: UInt32 = 0
  /// A `remove` is waiting for the VMM to close the device.
  public internal(set) var removalPending = false
  let directory: SysfsDirectory
  /// vfio_ap, which makes the mdev and drops it at its removal. Unchecked (`unowned(unsafe)`), as
  /// the queues' is: every store to the mdev's attributes goes through it, and a checked
  /// reference costs a count change at each.
  unowned(unsafe) let driver: VFIOAPDriver
  /// The IOMMU group vfio gave the device when vfio_ap registered it.
  public internal(set) var iommuGroup: IOMMUGroup?

  init(uuid: String, sequence: Int, directory: SysfsDirectory, driver: VFIOAPDriver) {
    self.driver = driver
    self.uuid = uuid
    self.sequence = sequence
    self.directory = directory
  }

  /// Whether a change of the host configuration that adds resources to this mdev is being
  /// handled (between `on_config_changed` and `on_scan_complete`).
  var hasPendingAdditions: Bool { !apmAdd.isEmpty || !aqmAdd.isEmpty || !admAdd.isEmpty }

  /// Whether vfio_ap's mdev driver is bound: from its probe in `mdev_device_create` until
  /// `device_del` releases it.
  var isBound = false

  /// What `dev_uevent` gives an mdev: only its driver while bound, as the mdev bus has no
  /// uevent callback and an mdev no device type.
  var ueventVariables: [String] { isBound ? Self.boundUEventVariables : [] }
  /// Made once: every uevent of a bound mdev carries it.
  static let boundUEventVariables = ["DRIVER=" + VFIOAPDriver.mdevDriverName]

  /// The APQNs of the linked queues, ascending.
  public var linkedAPQNs: [APQN] { queues.map(\.apqn) }
}
