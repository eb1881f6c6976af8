import APModel
import Machine
import Sysfs
import SystemPackage

/// The vfio_ap device driver (`vfio_ap_drv.c`): the matrix device, the `vfio_ap-passthrough`
/// mdev type, the mediated devices, and the ownership index of APQNs by mdev.
///
/// The operations on the matrix (`vfio_ap_ops.c`) are in extensions named after what they do:
/// assignment (``VFIOAPDriver/assignAdapter(_:_:)`` and its siblings), guest filtering, queue
/// resets, host configuration changes, and the vfio device side.
public final class VFIOAPDriver: SysfsOwner {
  /// What its sysfs directories hold of it, weakly (see ``SysfsOwnerToken``).
  public private(set) lazy var sysfsOwnerToken = SysfsOwnerToken(owner: self)

  /// The kernel, which makes the driver at boot and holds it as long as it lives. Unchecked
  /// (`unowned(unsafe)`), as the bus's: every store to an mdev reaches the kernel through it,
  /// and the kernel has a side table (its clock holds it weakly), so a checked reference costs a
  /// slow-path count change at each.
  unowned(unsafe) let kernel: HostKernel
  var machine: APMachine { kernel.machine }
  var bus: APBus { kernel.apBus }

  /// The name of vfio_ap's mdev driver (`vfio_ap_matrix_driver`), under `/sys/bus/mdev/drivers`.
  public static let mdevDriverName = "vfio_ap_mdev"
  /// What `dev_uevent` gives the matrix device: its driver (it has no device type, and the
  /// matrix bus no uevent callback).
  static let matrixUEventVariables = ["DRIVER=vfio_ap"]

  /// The most mdevs the type offers (`available_instances` starts here).
  public static let maxInstances = 65536

  /// The mdevs by UUID.
  public private(set) var mdevs: [String: MediatedDevice] = [:]
  /// The queues bound to vfio_ap, by APQN raw value: vfio_ap's own data for each, from its
  /// probe to its remove. Dense: a bulk configuration change probes and removes 65,280 queues
  /// at once, and a slot costs no hashing.
  var queues = APQNTable<VFIOAPQueue>()
  var nextSequence = 0
  /// The rate limit of the `Waited %dms for reset of queue` notice (`pr_notice_ratelimited`).
  var resetWaitNotices = RateLimit()
  /// Which mdev's assigned matrix holds each APQN (by raw value). Sharing is forbidden, so each
  /// APQN has at most one owner, and the sharing check of the rules looks up the APQNs a store
  /// adds here instead of walking every mdev.
  var owners = APQNTable<MediatedDevice>()
  /// The host's AP configuration as vfio_ap knows it (`matrix_dev->info`): updated when the AP
  /// bus reports a configuration change.
  public internal(set) var info: APMatrix
  let apxa: Bool
  let na: Int
  let nd: Int
  /// What the shared rules need of the kernel that never changes: its version's rule
  /// differences and the mdevs' limits, kept here so that a store does not recompute them.
  let ruleFeatures: VFIOAPRuleFeatures
  let ruleLimits: VFIOAPLimits

  let matrixDirectory: SysfsDirectory
  /// Each mdev's attributes, as the profile's kernel has them (`ap_config` from 6.10).
  let mdevGroup: SysfsAttributeGroup
  let typeDirectory: SysfsDirectory
  let typeDevices: SysfsDirectory
  /// `/bus/mdev/devices` and `/bus/mdev/drivers/vfio_ap_mdev`: every mdev is linked from both.
  let mdevBusDevices: SysfsDirectory
  let mdevDriverDevices: SysfsDirectory
  /// The targets of the links an mdev's creation makes, the same for every mdev but for its
  /// name, written once at load (see ``MdevLinkTargets``).
  let mdevLinks: MdevLinkTargets

  init(kernel: HostKernel) {
    self.kernel = kernel
    let qci = kernel.apBus.qci
    info = qci?.matrix ?? kernel.machine.lparMatrix
    apxa = qci?.apxa ?? false
    na = qci?.na ?? 63
    nd = qci?.nd ?? 15
    ruleFeatures = kernel.profile.ruleFeatures
    ruleLimits = VFIOAPLimits(
      apmMax: apxa ? na : 63, aqmMax: apxa ? nd : 15, admMax: apxa ? nd : 15)
    let tree = kernel.sysfs
    let matrix = tree.makeDirectories("/devices/vfio_ap/matrix")
    matrixDirectory = matrix
    typeDirectory = matrix.directory("mdev_supported_types").directory("vfio_ap-passthrough")
    typeDevices = typeDirectory.directory("devices")
    mdevBusDevices = tree.makeDirectories("/bus/mdev/devices")
    mdevDriverDevices = tree.makeDirectories("/bus/mdev/drivers/" + Self.mdevDriverName)
    mdevLinks = MdevLinkTargets(
      matrix: matrix, type: typeDirectory, driver: mdevDriverDevices, bus: tree.makeDirectories("/bus/mdev"),
      typeDevices: typeDevices, busDevices: mdevBusDevices, driverDevices: mdevDriverDevices)
    // `vfio_ap_matrix_dev_create`: `device_register` announces the matrix device (unbound: its
    // `uevent` file comes with the driver's attributes), and `driver_register` binds the matrix
    // driver to it (the matrix bus matches every device).
    kernel.uevent(.add, matrix.path)
    let profile = kernel.profile
    mdevGroup =
      profile.hasAPConfig ? MdevAttributes.mdevGroup : MdevAttributes.mdevGroup.without(["ap_config"])
    matrix.addGroup(
      profile.hasMatrixFeatures
        ? MdevAttributes.matrixGroup : MdevAttributes.matrixGroup.without(["features"]),
      owner: self)
    kernel.uevent(.bind, matrix.path)
    matrix.symlink("driver", toAbsolute: "/bus/matrix/drivers/vfio_ap")
    matrix.symlink("subsystem", toAbsolute: "/bus/matrix")
    tree.makeDirectories("/bus/matrix/drivers/vfio_ap").symlink("matrix", toAbsolute: matrix.path)
    tree.makeDirectories("/devices/vfio_ap").addGroup(MdevAttributes.rootGroup, owner: self)
    for bus in ["/bus/matrix", "/bus/mdev"] {
      tree.makeDirectories(bus).addGroup(MdevAttributes.busGroup(bus), owner: self)
    }
    for drv in ["/bus/matrix/drivers/vfio_ap", "/bus/mdev/drivers/" + Self.mdevDriverName] {
      tree.makeDirectories(drv).addGroup(MdevAttributes.driverGroup(drv), owner: self)
    }
    tree.makeDirectories("/bus/matrix/devices").symlink("matrix", toAbsolute: matrix.path)
    typeDirectory.addGroup(MdevAttributes.typeGroup, owner: self)
    tree.makeDirectories("/class/mdev_bus").symlink("matrix", toAbsolute: matrix.path)
    // `vfio_ap_init` registers the queue driver with the AP bus after the matrix device, then
    // the matrix device as the mdev parent (`mdev_register_parent`), which udev rules (mdevctl's)
    // take as the moment to start defined mdevs.
    kernel.apBus.registerDriver(self)
    kernel.devLog(driver: "vfio_ap", device: "matrix", "MDEV: Registered")
    kernel.uevent(.change, matrix.path, ["MDEV_STATE=registered"])
  }

  /// `apm_max`, `aqm_max`, `adm_max`.
  public var apmMax: Int { ruleLimits.apmMax }
  public var aqmMax: Int { ruleLimits.aqmMax }
  public var admMax: Int { ruleLimits.admMax }

  public var availableInstances: Int { Self.maxInstances - mdevs.count }

  /// `vfio_ap_find_queue`: vfio_ap's data for a queue bound to it.
  func queue(_ apqn: APQN) -> VFIOAPQueue? { queues[apqn.rawValue] }

  public func mdev(_ uuid: String) -> MediatedDevice? { mdevs[uuid.lowercased()] }

  /// The mdevs newest first: the order of the kernel's `mdev_list`.
  var mdevList: [MediatedDevice] { mdevs.values.sorted { $0.sequence > $1.sequence } }

  // MARK: - Create and remove

  /// `create` of the mdev type: 36 or 37 bytes, the first 36 a UUID (the 37th is not looked at);
  /// a UUID that exists is EEXIST; no instance left is EUSERS.
  func createStore(_ bytes: [UInt8]) throws(Errno) {
    // A NUL among the first 36 bytes (where the kernel's C string would end) is neither a hex
    // digit nor a hyphen, so the UUID check refuses it as the shorter string would be.
    guard bytes.count == 36 || bytes.count == 37, let uuid = Self.parseUUID(bytes[0..<36]) else {
      throw .invalidArgument
    }
    _ = try create(uuid)
  }

  /// Creates an mdev (what `create` does after parsing).
  @discardableResult
  public func createMdev(_ uuid: String) throws(Errno) -> MediatedDevice {
    guard let uuid = Self.parseUUID(uuid.utf8) else { throw .invalidArgument }
    return try create(uuid)
  }

  /// `mdev_device_create` for a UUID already checked and in lower case.
  private func create(_ uuid: String) throws(Errno) -> MediatedDevice {
    if mdevs[uuid] != nil { throw .fileExists }
    if availableInstances == 0 { throw .tooManyUsers }
    let dir = matrixDirectory.directory(uuid)
    let m = MediatedDevice(uuid: uuid, sequence: nextSequence, directory: dir, driver: self)
    nextSequence += 1
    mdevs[uuid] = m
    dir.addGroup(mdevGroup, owner: m)
    dir.symlink("mdev_type", to: mdevLinks.type)
    dir.symlink("driver", to: mdevLinks.driver)
    dir.symlink("subsystem", to: mdevLinks.bus)
    typeDevices.symlink(uuid, to: mdevLinks.typeDevicesPrefix + uuid)
    mdevBusDevices.symlink(uuid, to: mdevLinks.busDevicesPrefix + uuid)
    mdevDriverDevices.symlink(uuid, to: mdevLinks.driverDevicesPrefix + uuid)
    // `mdev_device_create`: `device_add` announces the device (the mdev bus adds no variables),
    // then `device_driver_attach` probes it: `vfio_ap_mdev_probe` registers an emulated-IOMMU
    // vfio device, in a group of its own, and `driver_bound` announces the binding. The events
    // carry what the mdev's `uevent` file shows at each moment (``MediatedDevice/ueventVariables``).
    kernel.deviceUEvent(.add, dir.path, variables: m.ueventVariables, subsystem: "mdev")
    m.iommuGroup = kernel.allocateIOMMUGroup(for: dir, driver: Self.mdevDriverName)
    m.isBound = true
    kernel.deviceUEvent(.bind, dir.path, variables: m.ueventVariables, subsystem: "mdev")
    return m
  }

  /// The kernel's `uuid_is_valid` and the device name `%pUl` prints from the parsed UUID: the
  /// same text in lower case.
  static func parseUUID(_ s: some Collection<UInt8>) -> String? { KernelNumber.uuid(s, lowercased: true) }

  /// The errno with which a `remove` store reports that it must wait for the VMM to release
  /// the device: the kernel's internal ERESTARTSYS. The owner of the kernel waits (without the
  /// lock) and retries; it never reaches a user.
  public static let blockedUntilReleased = Errno(rawValue: 512)

  /// `remove` of an mdev: `kstrtoul`; 0 does nothing; otherwise the mdev goes, after the VMM
  /// has released it if it is open.
  func removeStore(_ m: MediatedDevice, _ bytes: [UInt8]) throws(Errno) {
    let v = try KernelNumber.kstrtoul(bytes)
    guard v != 0 else { return }
    try removeMdev(m)
  }

  /// Removes an mdev. If a VMM has it open, asks the VMM to release it (the request IRQ) and
  /// throws ``blockedUntilReleased``; call again after the device was closed (or, to repeat the
  /// request as the kernel does about every 10 s, again while it is still open).
  public func removeMdev(_ m: MediatedDevice) throws(Errno) {
    guard mdevs[m.uuid] === m else { throw .noSuchDevice }
    if m.isOpen {
      m.removalPending = true
      request(m)
      throw Self.blockedUntilReleased
    }
    _ = resetQueues(m)
    unlinkFromQueues(m)
    for a in m.matrix.apm { for q in m.matrix.aqm { owners[a << 8 | q] = nil } }
    mdevs[m.uuid] = nil
    if let g = m.iommuGroup { kernel.releaseIOMMUGroup(g, of: m.directory, driver: Self.mdevDriverName) }
    m.iommuGroup = nil
    // `device_del` releases the driver (the unbind event), announces the removal, and then the
    // device leaves the tree.
    m.isBound = false
    kernel.deviceUEvent(.unbind, m.directory.path, variables: m.ueventVariables, subsystem: "mdev")
    kernel.deviceUEvent(.remove, m.directory.path, variables: m.ueventVariables, subsystem: "mdev")
    matrixDirectory.remove(m.uuid)
    typeDevices.remove(m.uuid)
    mdevBusDevices.remove(m.uuid)
    mdevDriverDevices.remove(m.uuid)
  }

  func unlinkFromQueues(_ m: MediatedDevice) {
    for q in m.queues { q.matrixMdev = nil }
  }

  // MARK: - Ownership index

  func setOwner(_ m: MediatedDevice?, apm: APMask, aqm: APMask) {
    for a in apm { for q in aqm { owners[a << 8 | q] = m } }
  }

  /// The mdev whose assigned matrix holds the APQN (`vfio_ap_mdev_for_queue`).
  public func owner(of apqn: APQN) -> MediatedDevice? { owners[apqn.rawValue] }

  /// `vfio_ap_mdev_resource_in_use`, the `in_use` operation the AP bus calls before it reserves
  /// `apm x aqm` for the host: the rules' answer (``VFIOAPRules/resourceInUse(apm:aqm:detail:)``);
  /// the first mdev that holds any of it logs every such APQN.
  func resourceInUse(apm: APMask, aqm: APMask) -> Bool {
    guard
      case .sharedWith(let m, let a, let q)? = rules.resourceInUse(apm: apm, aqm: aqm, detail: .first).first
    else { return false }
    for apid in a {
      for apqi in q {
        mdevLog(
          m,
          kernel.profile.hasSharingMessageFix
            ? "Can not reserve queue \(hex2(apid)).\(hex4(apqi)) for host driver: in use by mdev"
            : "Userspace may not re-assign queue \(hex2(apid)).\(hex4(apqi)) already assigned to \(m.uuid)")
      }
    }
    return true
  }

  func mdevLog(_ m: MediatedDevice, _ message: String) {
    kernel.devLog(driver: "vfio_ap_mdev", device: m.uuid, message)
  }
}

/// The link targets of an mdev, relative as kernfs writes them, for a device directory that is a
/// child of the matrix device: its own links (`mdev_type`, `driver`, `subsystem`) are the same
/// for every mdev, and the links to it from the type's `devices`, `/bus/mdev/devices` and the
/// driver differ only in the name at the end. Written once from the directories, so that a
/// creation joins two strings instead of walking two paths per link.
struct MdevLinkTargets {
  let type: String
  let driver: String
  let bus: String
  let typeDevicesPrefix: String
  let busDevicesPrefix: String
  let driverDevicesPrefix: String

  init(
    matrix: SysfsDirectory, type: SysfsDirectory, driver: SysfsDirectory, bus: SysfsDirectory,
    typeDevices: SysfsDirectory, busDevices: SysfsDirectory, driverDevices: SysfsDirectory
  ) {
    // From a child of `matrix`, one level up reaches `matrix` (none of these lies below an
    // mdev); to a child of `matrix`, the way to `matrix` and the name.
    self.type = "../" + matrix.linkTarget(to: type)
    self.driver = "../" + matrix.linkTarget(to: driver)
    self.bus = "../" + matrix.linkTarget(to: bus)
    typeDevicesPrefix = Self.prefix(from: typeDevices, to: matrix)
    busDevicesPrefix = Self.prefix(from: busDevices, to: matrix)
    driverDevicesPrefix = Self.prefix(from: driverDevices, to: matrix)
  }

  /// The target from `directory` to a child of `matrix`, without the child's name: the way to
  /// `matrix` and a slash, which a way only up (`../../../`, from the type's `devices`) has.
  static func prefix(from directory: SysfsDirectory, to matrix: SysfsDirectory) -> String {
    let way = directory.linkTarget(to: matrix)
    return way.hasSuffix("/") ? way : way + "/"
  }
}
