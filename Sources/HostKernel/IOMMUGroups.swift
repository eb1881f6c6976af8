import Sysfs
import SystemPackage

/// An IOMMU group (`struct iommu_group`, `drivers/iommu/iommu.c`) as vfio gives one to an
/// emulated-IOMMU device such as a vfio_ap mdev: `vfio_register_emulated_iommu_dev` has no real
/// IOMMU to ask, so it allocates a fresh group (`iommu_group_alloc`), names it `vfio-noiommu` and
/// adds the device to it. The group has no default domain (`type` reads `unknown`) and no
/// reserved regions.
public final class IOMMUGroup: SysfsOwner {
  /// What its sysfs directories hold of it, weakly (see ``SysfsOwnerToken``).
  public private(set) lazy var sysfsOwnerToken = SysfsOwnerToken(owner: self)

  /// The group number, the directory's name under `/sys/kernel/iommu_groups`.
  public let id: Int
  public let directory: SysfsDirectory

  init(id: Int, directory: SysfsDirectory) {
    self.id = id
    self.directory = directory
  }

  static let attributes = SysfsAttributeGroup([
    .readOnly("reserved_regions") { (_: IOMMUGroup) in "" },
    .readOnly("type") { (_: IOMMUGroup) in "unknown\n" },
    .readOnly("name") { (_: IOMMUGroup) in "vfio-noiommu\n" },
  ])
}

extension HostKernel {
  /// `iommu_group_alloc` and `iommu_group_add_device`: a group with the lowest free id (the
  /// kernel's `iommu_group_ida`), its `devices/<name>` link to the device, and the device's
  /// `iommu_group` link to it.
  /// `driver` is the device's driver, whose name prefixes the log line as `dev_info` writes it.
  func allocateIOMMUGroup(for device: SysfsDirectory, driver: String) -> IOMMUGroup {
    let id = iommuGroupIDs.allocate()
    let dir = iommuGroupsDirectory.directory(String(id))
    let g = IOMMUGroup(id: id, directory: dir)
    iommuGroups[id] = g
    dir.addGroup(IOMMUGroup.attributes, owner: g)
    dir.directory("devices").symlink(device.name, to: device)
    device.symlink("iommu_group", to: dir)
    devLog(driver: driver, device: device.name, "Adding to iommu group \(id)")
    return g
  }

  /// `iommu_group_remove_device` and the group's release: the links go, then the group and its
  /// id, which the next group may take.
  func releaseIOMMUGroup(_ g: IOMMUGroup, of device: SysfsDirectory, driver: String) {
    devLog(driver: driver, device: device.name, "Removing from iommu group \(g.id)")
    device.remove("iommu_group")
    iommuGroupsDirectory.remove(String(g.id))
    iommuGroups[g.id] = nil
    iommuGroupIDs.release(g.id)
  }
}

/// The kernel's `ida` for IOMMU group numbers: the lowest free id, from a bitmap with a hint
/// below which every word is full, so that allocating after N groups costs one word's look, not
/// N dictionary probes (65,536 mdevs were quadratic).
struct IDAllocator {
  private var words: [UInt64] = []
  /// No word before this one has a free bit.
  private var firstFreeWord = 0

  /// Takes the lowest free id.
  mutating func allocate() -> Int {
    var w = firstFreeWord
    while w < words.count && words[w] == .max { w += 1 }
    if w == words.count { words.append(0) }
    let bit = (~words[w]).trailingZeroBitCount
    words[w] |= 1 << bit
    firstFreeWord = w
    return w << 6 | bit
  }

  /// Frees `id` for the next ``allocate()``.
  mutating func release(_ id: Int) {
    let w = id >> 6
    guard w < words.count else { return }
    words[w] &= ~(1 << (id & 63))
    firstFreeWord = min(firstFreeWord, w)
  }
}
