import APModel
import SystemPackage
import Testing

@testable import HostKernel

/// Each difference between the modelled kernels, under each of them (see ``KernelProfile``).
@Suite("HostKernel: kernel profiles 6.1, 6.6, 6.12, 6.16, 6.19")
struct KernelProfileTests {
  static let all = KernelProfile.known

  func exists(_ k: HostKernel, _ path: String) -> Bool { (try? k.sysfs.info(path)) != nil }

  @Test func versionsAreParsedAndOthersRefused() {
    #expect(KernelProfile("6.12") == .v6_12)
    #expect(KernelProfile("6.12.7") == .v6_12)
    #expect(KernelProfile("v6.1") == .v6_1)
    #expect(KernelProfile("6.19") == .newest)
    for bad in ["5.4", "6.2", "6", "6.12.x", "", "6..1", "7.0", "6.19.1.1"] {
      #expect(KernelProfile(bad) == nil, "\(bad)")
    }
    #expect(KernelProfile.known.map(\.description) == ["6.1", "6.6", "6.12", "6.16", "6.19"])
  }

  @Test(arguments: all) func busFeaturesAndQueueFunctionsFrom6_4(_ p: KernelProfile) {
    let k = HostKernel(profile: p)
    let newer = p >= .v6_6
    #expect(exists(k, "/bus/ap/features") == newer)
    #expect(exists(k, "/devices/ap/card05/05.0004/ap_functions") == newer)
    // The card's ap_functions is older than the queue's.
    #expect(exists(k, "/devices/ap/card05/ap_functions"))
    if newer { #expect(cat(k, "/bus/ap/features").hasSuffix("\n")) }
  }

  @Test(arguments: all) func apConfigFrom6_10(_ p: KernelProfile) {
    let k = bootWith(p)
    makeMdev(k, uuid1, adapters: [5], domains: [4])
    #expect(exists(k, mdevPath(uuid1) + "/ap_config") == (p >= .v6_12))
    let config = echo(k, "0x0,0x0,0x0", mdevPath(uuid1) + "/ap_config")
    #expect(config == (p >= .v6_12 ? nil : .noSuchFileOrDirectory))
  }

  @Test(arguments: all) func matrixFeaturesFrom6_12(_ p: KernelProfile) {
    let k = HostKernel(profile: p)
    #expect(exists(k, "/devices/vfio_ap/matrix/features") == (p >= .v6_12))
    if p >= .v6_12 {
      #expect(cat(k, "/devices/vfio_ap/matrix/features") == "guest_matrix hotplug ap_config\n")
    }
  }

  @Test(arguments: all) func theSharingConflictsLogTextChangedIn6_15(_ p: KernelProfile) {
    let k = bootWith(p)
    makeMdev(k, uuid1, adapters: [5], domains: [4])
    #expect(echo(k, uuid2, createPath) == nil)
    #expect(echo(k, "5", mdevPath(uuid2) + "/assign_adapter") == nil)
    #expect(echo(k, "4", mdevPath(uuid2) + "/assign_domain") == .addressInUse)
    #expect(echo(k, "+5", "/bus/ap/apmask") == .resourceBusy)
    let log = k.log.dmesgText
    if p >= .v6_16 {
      #expect(
        log.contains(
          "vfio_ap_mdev \(uuid2): Userspace may not assign queue 05.0004 to mdev: already assigned to \(uuid1)"
        ))
      #expect(
        log.contains("vfio_ap_mdev \(uuid1): Can not reserve queue 05.0004 for host driver: in use by mdev"))
      #expect(!log.contains("re-assign"))
    } else {
      #expect(
        log.contains(
          "vfio_ap_mdev \(uuid2): Userspace may not re-assign queue 05.0004 already assigned to \(uuid1)"))
      #expect(
        log.contains(
          "vfio_ap_mdev \(uuid1): Userspace may not re-assign queue 05.0004 already assigned to \(uuid1)"))
      #expect(!log.contains("Can not reserve"))
    }
  }

  @Test(arguments: all) func theConfigChangeIRQFrom6_15(_ p: KernelProfile) throws {
    let k = bootWith(p)
    let m = makeMdev(k, uuid1, adapters: [5], domains: [4])
    let vm = k.kvm.createVM(name: "g")
    try k.vfioAP.openDevice(m, kvm: vm)
    let newer = p >= .v6_16
    #expect(k.vfioAP.deviceInfo(m).numIRQs == (newer ? 2 : 1))
    #expect((try? k.vfioAP.irqInfo(m, index: 0)) == 1)
    #expect((try? k.vfioAP.irqInfo(m, index: 1)) == (newer ? 1 : nil))
    if newer {
      try k.vfioAP.setIRQ(m, index: 1, trigger: {})
    } else {
      #expect(throws: Errno.invalidArgument) { try k.vfioAP.setIRQ(m, index: 1, trigger: {}) }
    }
  }

  @Test(arguments: all) func driverOverrideAndTheCompletionCounterFrom6_19(_ p: KernelProfile) {
    let k = HostKernel(profile: p)
    let has = p >= .v6_19
    #expect(exists(k, "/devices/ap/card05/05.0004/driver_override") == has)
    #expect(exists(k, "/bus/ap/bindings_complete_count") == has)
    if has {
      #expect(cat(k, "/bus/ap/bindings_complete_count") == "1\n")
      #expect(echo(k, "vfio_ap", "/devices/ap/card05/05.0004/driver_override") == nil)
      #expect(echo(k, "-5", "/bus/ap/apmask") == .invalidArgument)
    } else {
      // Without overrides, masks are free to change, and an mdev takes what they free.
      #expect(echo(k, "-5", "/bus/ap/apmask") == nil)
      makeMdev(k, uuid1, adapters: [5], domains: [4])
    }
  }

  /// A kernel under `p` with adapters 5 and 6 freed for vfio_ap.
  func bootWith(_ p: KernelProfile) -> HostKernel {
    let k = HostKernel(profile: p)
    #expect(echo(k, "-5,-6", "/bus/ap/apmask") == nil)
    return k
  }
}
