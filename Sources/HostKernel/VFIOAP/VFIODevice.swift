import APModel
import Machine
import SystemPackage

/// What `VFIO_DEVICE_GET_INFO` answers for a vfio_ap device.
public struct VFIODeviceInfo: Hashable, Sendable {
  /// `VFIO_DEVICE_FLAGS_AP | VFIO_DEVICE_FLAGS_RESET`.
  public var flags: UInt32
  public var numRegions: Int
  public var numIRQs: Int

  public static let flagsReset: UInt32 = 1 << 0
  public static let flagsAP: UInt32 = 1 << 5
}

/// The vfio device side of an mdev, as a VMM uses it through its file descriptor: open with a
/// KVM, close, the ioctls, and the request callback the kernel runs when the mdev is removed
/// while open.
extension VFIOAPDriver {
  /// `VFIO_AP_REQ_IRQ_INDEX`
  public static let requestIRQIndex = 0
  /// `VFIO_AP_CFG_CHG_IRQ_INDEX`
  public static let configChangeIRQIndex = 1

  /// `open_device`: needs a KVM (EINVAL); one mdev per KVM (EPERM); a device is opened by one
  /// user at a time (EBUSY). Links the KVM and pushes the current guest APCB.
  public func openDevice(_ m: MediatedDevice, kvm vm: KVMVirtualMachine?) throws(Errno) {
    guard mdevs[m.uuid] === m, !m.removalPending else { throw .noSuchDevice }
    if m.isOpen { throw .resourceBusy }
    guard let vm else { throw .invalidArgument }
    if mdevs.values.contains(where: { $0 !== m && $0.kvm === vm }) { throw .notPermitted }
    m.isOpen = true
    m.requestCount = 0
    m.kvm = vm
    updateGuestAPCB(m)
  }

  /// `close_device`: clear the guest's masks (both APCBs), reset every linked queue, unlink the
  /// KVM. The VMM's eventfds go with its file descriptor. A `remove` that was waiting for the
  /// release goes through now.
  public func closeDevice(_ m: MediatedDevice) {
    guard m.isOpen else { return }
    if let vm = m.kvm {
      vm.clearMasks()
      resetQueues(m)
    }
    m.kvm = nil
    m.isOpen = false
    m.requestTrigger = nil
    m.configChangeTrigger = nil
    if m.removalPending { try? removeMdev(m) }
  }

  /// `VFIO_DEVICE_GET_INFO`.
  public func deviceInfo(_ m: MediatedDevice) -> VFIODeviceInfo {
    VFIODeviceInfo(flags: VFIODeviceInfo.flagsAP | VFIODeviceInfo.flagsReset, numRegions: 0, numIRQs: numIRQs)
  }

  /// `VFIO_AP_NUM_IRQS`: the request IRQ, and from Linux 6.15 the config-change IRQ.
  var numIRQs: Int { kernel.profile.hasConfigChangeIRQ ? 2 : 1 }

  /// Whether `index` is an IRQ this kernel's vfio_ap has.
  func hasIRQ(_ index: Int) -> Bool { index >= 0 && index < numIRQs }

  /// `VFIO_DEVICE_GET_IRQ_INFO`: one eventfd IRQ at each index the kernel has; others EINVAL.
  public func irqInfo(_ m: MediatedDevice, index: Int) throws(Errno) -> Int {
    guard hasIRQ(index) else { throw .invalidArgument }
    return 1
  }

  /// `VFIO_DEVICE_SET_IRQS` with `ACTION_TRIGGER | DATA_EVENTFD`: registers (or with nil, as
  /// fd -1, clears) the eventfd of an IRQ index.
  public func setIRQ(_ m: MediatedDevice, index: Int, trigger: (@Sendable () -> Void)?) throws(Errno) {
    guard m.isOpen, hasIRQ(index) else { throw .invalidArgument }
    switch index {
    case Self.requestIRQIndex: m.requestTrigger = trigger
    case Self.configChangeIRQIndex: m.configChangeTrigger = trigger
    default: throw .invalidArgument
    }
  }

  /// `VFIO_DEVICE_RESET`: reset every linked queue; EIO when any reset answered other than 00.
  public func resetDevice(_ m: MediatedDevice) throws(Errno) {
    guard m.isOpen else { throw .invalidArgument }
    if !resetQueues(m) { throw .ioError }
  }

  /// `vfio_ap_mdev_request`: the mdev is being removed while open. The guest loses its masks at
  /// once; the VMM is asked to release the device through the request eventfd.
  func request(_ m: MediatedDevice) {
    let count = m.requestCount
    m.requestCount += 1
    if let vm = m.kvm {
      vm.clearMasks()
      signalConfigChanged(m)
    }
    if let t = m.requestTrigger {
      if count % 10 == 0 { mdevLog(m, "Relaying device request to user (#\(count))") }
      kernel.signal(t)
    } else if count == 0 {
      mdevLog(m, "No device request registered, blocked until released by user")
    }
  }

  /// The PQAP(AQIC) a guest issues, which KVM hands to vfio_ap's hook: a queue not linked to the
  /// guest's mdev answers rc 01; enabling needs a notification address (rc 06).
  public func handlePQAPAQIC(vm: KVMVirtualMachine, apqn: APQN, enable: Bool, notificationAddress: UInt64)
    -> APQueueStatus
  {
    guard let m = mdevs.values.first(where: { $0.kvm === vm }), m.linkedQueue(apqn) != nil else {
      return .rc(.queueNotAvailable)
    }
    if enable && notificationAddress == 0 { return .rc(.invalidAddress) }
    return kernel.cpu.aqic(apqn, enable: enable, notificationAddress: notificationAddress)
  }
}
