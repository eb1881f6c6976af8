import Sysfs
import SystemPackage

/// An IOMMU group (`struct iommu_group`, `drivers/iommu/iommu.c`) as vfio gives one to an
/// emulated-IOMMU device such as a vfio_ap mdev: `vfio_register_emulated_iommu_dev` has no real
/// IOMMU to ask, so it allocates a fresh group (`iommu_group_alloc`), names it `vfio-noiommu` and
/// adds the device to it. The group has no default domain (`type` reads `unknown`) and no
/// reserved regions.
public final class IOMMUGroup {
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
    var id = 0
    while iommuGroups[id] != nil { id += 1 }
    let dir = iommuGroupsDirectory.directory(String(id))
    let g = IOMMUGroup(id: id, directory: dir)
    iommuGroups[id] = g
    dir.addGroup(IOMMUGroup.attributes, owner: g)
    dir.directory("devices").symlink(device.name, toAbsolute: device.path)
    device.symlink("iommu_group", toAbsolute: dir.path)
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
  }
}
