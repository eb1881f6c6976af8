import APModel
import SystemPackage
import Testing

@testable import HostKernel

/// Linux 6.19's `driver_override` of AP queues ("s390/ap: Restrict driver_override versus
/// apmask and aqmask use", and the generic driver_override infrastructure it moved to): the
/// masks and overrides exclude each other, and an overridden queue belongs to its driver
/// whatever the masks say. This is the path KubeVirt's DRA driver takes to hand a queue to a VM.
@Suite("HostKernel: driver_override (Linux 6.19)")
struct DriverOverrideTests {
  let q54 = "/devices/ap/card05/05.0004"

  @Test func readsAnEmptyLineWhenUnset() {
    let k = HostKernel()
    #expect(cat(k, q54 + "/driver_override") == "\n")
    #expect(echo(k, "vfio_ap", q54 + "/driver_override") == nil)
    #expect(cat(k, q54 + "/driver_override") == "vfio_ap\n")
    #expect(echo(k, "\n", q54 + "/driver_override") == nil)
    #expect(cat(k, q54 + "/driver_override") == "\n")
    #expect(k.apBus.driverOverrideCount == 0)
    // A name of a page or more is refused and changes nothing.
    #expect(echo(k, String(repeating: "x", count: 4095), q54 + "/driver_override") == .invalidArgument)
    #expect(cat(k, q54 + "/driver_override") == "\n")
  }

  @Test func masksAndOverridesExcludeEachOther() {
    let k = HostKernel()
    // A mask in use: no override may be written, on any queue.
    #expect(echo(k, "-5", "/bus/ap/apmask") == nil)
    #expect(echo(k, "vfio_ap", "/devices/ap/card06/06.0004/driver_override") == .invalidArgument)
    #expect(cat(k, "/devices/ap/card06/06.0004/driver_override") == "\n")
    // All ones again: overrides may be written; then neither mask may.
    #expect(echo(k, "+5", "/bus/ap/apmask") == nil)
    #expect(echo(k, "vfio_ap", q54 + "/driver_override") == nil)
    #expect(echo(k, "-6", "/bus/ap/apmask") == .invalidArgument)
    #expect(echo(k, "-0xab", "/bus/ap/aqmask") == .invalidArgument)
    #expect(cat(k, "/bus/ap/apmask") == APMask.all().hexString + "\n")
    #expect(cat(k, "/bus/ap/aqmask") == APMask.all().hexString + "\n")
    // Clearing the last override frees the masks.
    #expect(echo(k, "\n", q54 + "/driver_override") == nil)
    #expect(echo(k, "-6", "/bus/ap/apmask") == nil)
  }

  @Test func bindingABoundQueueIsBusyWhateverTheDriver() {
    let k = HostKernel()
    // dd.c: driver_probe_device refuses a device with a driver before the bus's probe runs.
    #expect(echo(k, "05.0004", "/bus/ap/drivers/vfio_ap/bind") == .resourceBusy)
    #expect(echo(k, "05.0004", "/bus/ap/drivers/cex4queue/bind") == .resourceBusy)
    #expect(echo(k, "05.0004", "/bus/ap/drivers/cex4queue/unbind") == nil)
    // Unbound and reserved: the AP bus's probe refuses vfio_ap.
    #expect(echo(k, "05.0004", "/bus/ap/drivers/vfio_ap/bind") == .noSuchDevice)
  }

  /// KubeVirt's sequence: override 05.0004 to vfio_ap with the masks all ones, reprobe it,
  /// and give it to an mdev, which a guest then uses.
  @Test func theKubeVirtSequence() throws {
    let k = HostKernel()
    #expect(echo(k, "vfio_ap", q54 + "/driver_override") == nil)
    #expect(echo(k, "05.0004", "/bus/ap/drivers/cex4queue/unbind") == nil)
    #expect(echo(k, "05.0004", "/bus/ap/drivers_probe") == nil)
    #expect(k.apBus.queue(APQN(5, 4))?.driver == .vfioAP)
    #expect(cat(k, "/bus/ap/apmask") == APMask.all().hexString + "\n")
    let m = makeMdev(k, uuid1, adapters: [5], domains: [4])
    #expect(cat(k, mdevPath(uuid1) + "/matrix") == "05.0004\n")
    // Its neighbours are still the host's: 05.0005 cannot follow without an override.
    #expect(echo(k, "5", mdevPath(uuid1) + "/assign_domain") == .addressNotAvailable)
    #expect(cat(k, mdevPath(uuid1) + "/matrix") == "05.0004\n")
    let vm = k.kvm.createVM(name: "vm1")
    try k.vfioAP.openDevice(m, kvm: vm)
    #expect(cat(k, mdevPath(uuid1) + "/guest_matrix") == "05.0004\n")
    #expect(vm.apcb.apqns.map(\.description) == ["05.0004"])
    // An override to the default driver keeps the queue the host's, masks aside.
    #expect(echo(k, "cex4queue", "/devices/ap/card06/06.0004/driver_override") == nil)
    makeMdev(k, uuid2)
    #expect(echo(k, "6", mdevPath(uuid2) + "/assign_adapter") == nil)
    #expect(echo(k, "4", mdevPath(uuid2) + "/assign_domain") == .addressNotAvailable)
  }

  @Test func aQueueThatGoesTakesItsOverrideWithIt() throws {
    let k = HostKernel()
    #expect(echo(k, "vfio_ap", q54 + "/driver_override") == nil)
    #expect(k.apBus.driverOverrideCount == 1)
    try k.machine.removeAdapter(5)
    k.notifyConfigurationChange()
    #expect(k.apBus.driverOverrideCount == 0)
    #expect(echo(k, "-6", "/bus/ap/apmask") == nil)
  }
}

/// `reset` of a queue the AP bus's state machine does not run for (ap_queue.c `reset_store`,
/// `ap_sm_event` on an uninitiated queue).
@Suite("HostKernel: a queue's reset when no default driver has it")
struct UninitiatedResetTests {
  @Test func aQueueMovedToVFIOAPReadsResetInProgressAfterAReset() {
    let k = HostKernel()
    let q = "/devices/ap/card05/05.0004"
    #expect(echo(k, "1", q + "/reset") == nil)
    #expect(cat(k, q + "/reset") == "No Reset Timer set.\n")
    // A mask change moves the queue to vfio_ap: uninitiated, so a reset request stays pending.
    #expect(echo(k, "-5", "/bus/ap/apmask") == nil)
    #expect(k.apBus.queue(APQN(5, 4))?.driver == .vfioAP)
    #expect(cat(k, q + "/reset") == "No Reset Timer set.\n")
    #expect(echo(k, "1", q + "/reset") == nil)
    #expect(cat(k, q + "/reset") == "Reset in progress.\n")
    // Back with zcrypt, the state machine starts over.
    #expect(echo(k, "+5", "/bus/ap/apmask") == nil)
    #expect(cat(k, q + "/reset") == "No Reset Timer set.\n")
  }
}
