import APModel

/// The emulated kernel as the shared rules (``VFIOAPRules``) see it: each question is answered
/// from vfio_ap's and the AP bus's own tables (the ownership index, the queue devices, the
/// masks) at the moment it is asked, so that a store copies nothing and costs its lookups.
struct VFIOAPKernelState: VFIOAPRulesState {
  typealias Mdev = MediatedDevice

  let driver: VFIOAPDriver
  /// Taken once when the rules are asked (the bus through the kernel's unowned reference, which
  /// costs a reference-count check each time), as a store asks for them several times.
  let bus: APBus
  let features: VFIOAPRuleFeatures
  let limits: VFIOAPLimits

  init(driver: VFIOAPDriver) {
    self.driver = driver
    bus = driver.bus
    features = driver.ruleFeatures
    limits = driver.ruleLimits
  }

  var apmask: APMask { bus.apmask }
  var aqmask: APMask { bus.aqmask }
  var hasDriverOverrides: Bool { bus.driverOverrideCount > 0 }

  func driverOverride(of apqn: APQN) -> APQueueOverride? {
    guard let q = bus.queue(apqn), let name = q.driverOverride else { return nil }
    return APQueueOverride(
      name: name, boundDriver: q.boundDriver?.driver.name,
      boundDriverIsDefault: q.boundDriver?.isDefault ?? false)
  }

  func mdev(holding apqn: APQN) -> MediatedDevice? { driver.owners[apqn.rawValue] }
  func matrix(of mdev: MediatedDevice) -> APMatrix { mdev.matrix }
  /// `mdev_list` has the newest at its head.
  func precedes(_ a: MediatedDevice, _ b: MediatedDevice) -> Bool { a.sequence > b.sequence }
}

extension MediatedDevice: Equatable {
  /// Two handles are the same mdev when they are the same object: the kernel has one
  /// `ap_matrix_mdev` per device.
  public static func == (a: MediatedDevice, b: MediatedDevice) -> Bool { a === b }
}

extension KernelProfile {
  /// The differences that change a rule's answer (``VFIOAPRuleFeatures``).
  var ruleFeatures: VFIOAPRuleFeatures { hasDriverOverride ? .driverOverride : [] }
}

extension VFIOAPDriver {
  /// The shared rules over this kernel's tables.
  var rules: VFIOAPRules<VFIOAPKernelState> { VFIOAPRules(VFIOAPKernelState(driver: self)) }
}
