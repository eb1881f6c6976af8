import APModel
import Sysfs
import SystemPackage

/// The sysfs attributes of vfio_ap: the matrix device, the mdev type, each mdev, and the
/// `status` of each queue bound to vfio_ap.
enum MdevAttributes {
  static let matrixGroup = SysfsAttributeGroup([
    .readOnly("features") { (_: VFIOAPDriver) in "guest_matrix hotplug ap_config\n" },
    .readWrite(
      "uevent", show: { (_: VFIOAPDriver) in HostKernel.ueventText(VFIOAPDriver.matrixUEventVariables) },
      store: { (d: VFIOAPDriver, b) throws(Errno) in
        try d.kernel.synthUEvent(
          .device(
            devpath: d.matrixDirectory.path, subsystem: "matrix",
            variables: VFIOAPDriver.matrixUEventVariables,
            logName: "matrix", logDriver: "vfio_ap"), b)
      }),
  ])

  /// `/sys/devices/vfio_ap`, a root device with neither bus nor class: the kset filters it, so
  /// its `uevent` reads empty and a write sends nothing.
  static let rootGroup = SysfsAttributeGroup([
    .readWrite(
      "uevent", show: { (_: VFIOAPDriver) in "" },
      store: { (d: VFIOAPDriver, b) throws(Errno) in
        try d.kernel.synthUEvent(
          .device(
            devpath: "/devices/vfio_ap", subsystem: "", variables: nil, logName: "vfio_ap", logDriver: ""), b)
      })
  ])

  /// `uevent` of the `matrix` and `mdev` buses and of their drivers.
  static func busGroup(_ path: String) -> SysfsAttributeGroup {
    SysfsAttributeGroup([
      .writeOnly("uevent") { (d: VFIOAPDriver, b) throws(Errno) in try d.kernel.synthUEvent(.bus(path), b) }
    ])
  }

  static func driverGroup(_ path: String) -> SysfsAttributeGroup {
    SysfsAttributeGroup([
      .writeOnly("uevent") { (d: VFIOAPDriver, b) throws(Errno) in try d.kernel.synthUEvent(.driver(path), b)
      }
    ])
  }

  static let typeGroup = SysfsAttributeGroup([
    .readOnly("name") { (_: VFIOAPDriver) in "VFIO AP Passthrough Device\n" },
    .readOnly("device_api") { (_: VFIOAPDriver) in "vfio-ap\n" },
    .readOnly("available_instances") { (d: VFIOAPDriver) in "\(d.availableInstances)\n" },
    .writeOnly("create") { (d: VFIOAPDriver, b) throws(Errno) in try d.createStore(b) },
  ])

  static let mdevGroup = SysfsAttributeGroup([
    .writeOnly("assign_adapter") { (m: MediatedDevice, b) throws(Errno) in
      try m.driver.assign(m, .adapter, try m.driver.parseID(b))
    },
    .writeOnly("unassign_adapter") { (m: MediatedDevice, b) throws(Errno) in
      try m.driver.unassign(m, .adapter, try m.driver.parseID(b))
    },
    .writeOnly("assign_domain") { (m: MediatedDevice, b) throws(Errno) in
      try m.driver.assign(m, .domain, try m.driver.parseID(b))
    },
    .writeOnly("unassign_domain") { (m: MediatedDevice, b) throws(Errno) in
      try m.driver.unassign(m, .domain, try m.driver.parseID(b))
    },
    .writeOnly("assign_control_domain") { (m: MediatedDevice, b) throws(Errno) in
      try m.driver.assign(m, .controlDomain, try m.driver.parseID(b))
    },
    .writeOnly("unassign_control_domain") { (m: MediatedDevice, b) throws(Errno) in
      try m.driver.unassign(m, .controlDomain, try m.driver.parseID(b))
    },
    .readOnly("control_domains") { (m: MediatedDevice) in
      m.matrix.adm.map { hex4($0) + "\n" }.joined()
    },
    .readOnly("matrix") { (m: MediatedDevice) in m.matrix.matrixText },
    .readOnly("guest_matrix") { (m: MediatedDevice) in m.shadowAPCB.matrixText },
    .readWrite(
      "ap_config", show: { (m: MediatedDevice) in m.matrix.apConfigText },
      store: { (m: MediatedDevice, b) throws(Errno) in try m.driver.storeAPConfig(m, b) }),
    .writeOnly("remove") { (m: MediatedDevice, b) throws(Errno) in try m.driver.removeStore(m, b) },
    .readWrite(
      "uevent", show: { (m: MediatedDevice) in HostKernel.ueventText(m.ueventVariables) },
      store: { (m: MediatedDevice, b) throws(Errno) in
        try m.driver.kernel.synthUEvent(
          .device(
            devpath: m.directory.path, subsystem: "mdev", variables: m.ueventVariables,
            logName: m.uuid, logDriver: VFIOAPDriver.mdevDriverName), b)
      }),
  ])

  /// `status` of a queue bound to vfio_ap.
  static let queueGroup = SysfsAttributeGroup([
    .readOnly("status") { (q: VFIOAPQueue) in
      guard let m = q.driver.owner(of: q.apqn) else { return "unassigned\n" }
      if m.kvm != nil && m.shadowAPCB.contains(q.apqn) { return "in use\n" }
      return "assigned\n"
    }
  ])
}
