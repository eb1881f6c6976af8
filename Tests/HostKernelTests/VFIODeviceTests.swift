import APModel
import Foundation
import Machine
import Synchronization
import SystemPackage
import Testing

@testable import HostKernel

/// Counts eventfd signals from any thread.
final class SignalCounter: Sendable {
  let count = Mutex(0)
  var value: Int { count.withLock { $0 } }
  var trigger: @Sendable () -> Void { { [self] in count.withLock { $0 += 1 } } }
}

@Suite("vfio_ap: the vfio device side (spec section 9)")
struct VFIODeviceTests {
  @Test func openRules() throws {
    let k = bootWithFreedAdapters()
    let m1 = makeMdev(k, uuid1, adapters: [5], domains: [4])
    let m2 = makeMdev(k, uuid2, adapters: [6], domains: [4])
    #expect(throws: Errno.invalidArgument) { try k.vfioAP.openDevice(m1, kvm: nil) }
    let vm = k.kvm.createVM(name: "g")
    try k.vfioAP.openDevice(m1, kvm: vm)
    #expect(throws: Errno.notPermitted) { try k.vfioAP.openDevice(m2, kvm: vm) }
    #expect(throws: Errno.resourceBusy) { try k.vfioAP.openDevice(m1, kvm: k.kvm.createVM(name: "h")) }
    #expect(k.vfioAP.deviceInfo(m1) == VFIODeviceInfo(flags: 0x21, numRegions: 0, numIRQs: 2))
    #expect(try k.vfioAP.irqInfo(m1, index: 1) == 1)
    #expect(throws: Errno.invalidArgument) { try k.vfioAP.irqInfo(m1, index: 2) }
    #expect(throws: Errno.invalidArgument) { try k.vfioAP.setIRQ(m1, index: 2, trigger: nil) }
  }

  @Test func closeClearsTheGuestAndZeroizesItsQueues() throws {
    let k = bootWithFreedAdapters()
    let m = makeMdev(k, uuid1, adapters: [5], domains: [4])
    let vm = k.kvm.createVM(name: "g")
    try k.vfioAP.openDevice(m, kvm: vm)
    // The guest reaches its queue and leaves state in it.
    #expect(k.machine.nqap(APQN(5, 4), psmid: 1, payload: [1, 2, 3], vm.authority).responseCode == .normal)
    #expect(k.machine.tapq(APQN(5, 5), vm.authority).0.responseCode == .queueNotAvailable)
    k.vfioAP.closeDevice(m)
    #expect(vm.apcb.isEmpty)
    #expect(vm.apcbUpdateCount == 2)
    #expect(k.machine.queueState(APQN(5, 4)).owner == nil)
    #expect(k.machine.queueState(APQN(5, 4)).replies.isEmpty)
    #expect(
      k.machine.nqap(APQN(5, 4), psmid: 1, payload: [1], vm.authority).responseCode == .queueNotAvailable)
    #expect(m.kvm == nil && !m.isOpen)
    // Another guest may now use it and sees nothing of the first.
    let vm2 = k.kvm.createVM(name: "h")
    try k.vfioAP.openDevice(m, kvm: vm2)
    #expect(k.machine.dqap(APQN(5, 4), vm2.authority).0.responseCode == .noPendingReply)
    #expect(k.machine.leaks.isEmpty)
  }

  @Test func configChangeSignal() throws {
    let k = bootWithFreedAdapters()
    let m = makeMdev(k, uuid1, adapters: [5], domains: [4])
    let vm = k.kvm.createVM(name: "g")
    try k.vfioAP.openDevice(m, kvm: vm)
    let signals = SignalCounter()
    try k.vfioAP.setIRQ(m, index: VFIOAPDriver.configChangeIRQIndex, trigger: signals.trigger)
    #expect(echo(k, "5", mdevPath(uuid1) + "/assign_domain") == nil)
    for s in k.takePendingSignals() ?? [] { s() }
    #expect(signals.value == 1)
    // No APCB change, no signal.
    #expect(echo(k, "5", mdevPath(uuid1) + "/assign_domain") == nil)
    #expect(k.takePendingSignals() == nil)
  }

  /// The spec's rule 5 (EIO for a last ZAPQ of 03) is older than the source: since Linux 6.6
  /// `vfio_ap_mdev_reset_queue` turns a ZAPQ's 03 into `reset_status` 00, so that the queue stays
  /// passable, and `vfio_ap_mdev_reset_queues` only fails on a status other than 00.
  @Test func deviceResetSucceedsForDeconfiguredQueues() throws {
    let k = bootWithFreedAdapters()
    let m = makeMdev(k, uuid1, adapters: [5, 6], domains: [4])
    let vm = k.kvm.createVM(name: "g")
    try k.vfioAP.openDevice(m, kvm: vm)
    try k.vfioAP.resetDevice(m)
    #expect(echo(k, "0", "/devices/ap/card06/config") == nil)
    try k.vfioAP.resetDevice(m)
    // The deconfigured adapter stays in the guest: rc 03 counts as a completed reset.
    #expect(vm.apcb.apm == APMask([5, 6]))
    #expect(k.machine.tapq(APQN(6, 4), vm.authority).0.responseCode == .deconfigured)
  }

  @Test func removeWhileOpenAsksTheVMM() throws {
    let k = bootWithFreedAdapters()
    let m = makeMdev(k, uuid1, adapters: [5], domains: [4])
    let vm = k.kvm.createVM(name: "g")
    try k.vfioAP.openDevice(m, kvm: vm)
    // No request IRQ registered: logged once, the guest loses its masks, the remove blocks.
    #expect(echo(k, "1", mdevPath(uuid1) + "/remove") == VFIOAPDriver.blockedUntilReleased)
    #expect(
      k.log.messages.last
        == "vfio_ap_mdev \(uuid1): No device request registered, blocked until released by user")
    #expect(vm.apcb.isEmpty)
    #expect(echo(k, "1", mdevPath(uuid1) + "/remove") == VFIOAPDriver.blockedUntilReleased)
    #expect(k.log.messages.filter { $0.contains("No device request") }.count == 1)
    // The release lets the waiting remove finish.
    k.vfioAP.closeDevice(m)
    #expect(k.vfioAP.mdev(uuid1) == nil)
    #expect((try? k.sysfs.info(mdevPath(uuid1))) == nil)
  }

  @Test func requestIsRelayedEveryTenthTime() throws {
    let k = bootWithFreedAdapters()
    let m = makeMdev(k, uuid1, adapters: [5], domains: [4])
    try k.vfioAP.openDevice(m, kvm: k.kvm.createVM(name: "g"))
    let requests = SignalCounter()
    try k.vfioAP.setIRQ(m, index: VFIOAPDriver.requestIRQIndex, trigger: requests.trigger)
    for _ in 0..<11 {
      #expect(echo(k, "1", mdevPath(uuid1) + "/remove") == VFIOAPDriver.blockedUntilReleased)
      for s in k.takePendingSignals() ?? [] { s() }
    }
    #expect(requests.value == 11)
    #expect(
      k.log.messages.filter { $0.contains("Relaying") } == [
        "vfio_ap_mdev \(uuid1): Relaying device request to user (#0)",
        "vfio_ap_mdev \(uuid1): Relaying device request to user (#10)",
      ])
  }

  @Test func blockedRemoveWaitsWithoutTheLockUntilTheVMMReleases() throws {
    let host = EmulatedHost(definition: .embeddedDefault)
    let vmID = try host.withKernel { (k) throws(Errno) -> Int in
      try k.write("/bus/ap/apmask", "-5")
      try k.write(createPath, uuid1)
      try k.write(mdevPath(uuid1) + "/assign_adapter", "5")
      try k.write(mdevPath(uuid1) + "/assign_domain", "4")
      let vm = k.kvm.createVM(name: "g")
      try k.vfioAP.openDevice(k.vfioAP.mdev(uuid1)!, kvm: vm)
      return vm.id
    }
    // The VMM's request handler unplugs the device from another thread, calling back in.
    let unplugged = SignalCounter()
    try host.withKernel { (k) throws(Errno) in
      try k.vfioAP.setIRQ(k.vfioAP.mdev(uuid1)!, index: 0) {
        Thread.detachNewThread {
          unplugged.trigger()
          host.closeDevice(uuid: uuid1)
        }
      }
    }
    try host.write(mdevPath(uuid1) + "/remove", Array("1".utf8))
    #expect(unplugged.value == 1)
    #expect(host.withKernel { $0.vfioAP.mdev(uuid1) == nil })
    #expect(host.withKernel { $0.kvm.vms[vmID]!.apcb.isEmpty })
  }

  @Test func aStoreByNodeSaysBeforeItWaitsForTheVMMAndOnlyThen() throws {
    let host = EmulatedHost(definition: .embeddedDefault)
    let (remove, assign) = try host.withKernel { (k) throws(Errno) in
      try k.write("/bus/ap/apmask", "-5")
      try k.write(createPath, uuid1)
      try k.write(mdevPath(uuid1) + "/assign_adapter", "5")
      try k.vfioAP.openDevice(k.vfioAP.mdev(uuid1)!, kvm: k.kvm.createVM(name: "g"))
      return (
        try k.sysfs.node(at: mdevPath(uuid1) + "/remove"),
        try k.sysfs.node(at: mdevPath(uuid1) + "/assign_domain")
      )
    }
    // A store that the kernel does not block, and one that fails: no wait, nothing said.
    var said = 0
    #expect(
      try host.write(assign, Array("4\n".utf8), beforeWaiting: { said += 1 }, then: { _ in }).get() == 2)
    #expect(
      host.write(assign, Array("x\n".utf8), beforeWaiting: { said += 1 }, then: { _ in })
        == .failure(.invalidArgument))
    #expect(said == 0)
    // No request IRQ: the remove waits until the VMM closes the device, and says so first.
    let closer = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
      closer.wait()
      host.closeDevice(uuid: uuid1)
    }
    let result = host.write(
      remove, Array("1\n".utf8),
      beforeWaiting: {
        said += 1
        closer.signal()
      }, then: { _ in })
    #expect(result == .success(2))
    #expect(said == 1)
    #expect(host.withKernel { $0.vfioAP.mdev(uuid1) == nil })
  }

  @Test func guestAQIC() throws {
    let k = bootWithFreedAdapters()
    let m = makeMdev(k, uuid1, adapters: [5], domains: [4])
    let vm = k.kvm.createVM(name: "g")
    try k.vfioAP.openDevice(m, kvm: vm)
    #expect(
      k.vfioAP.handlePQAPAQIC(vm: vm, apqn: APQN(5, 5), enable: true, notificationAddress: 0x1000)
        .responseCode == .queueNotAvailable)
    #expect(
      k.vfioAP.handlePQAPAQIC(vm: vm, apqn: APQN(5, 4), enable: true, notificationAddress: 0).responseCode
        == .invalidAddress)
    #expect(
      k.vfioAP.handlePQAPAQIC(vm: vm, apqn: APQN(5, 4), enable: true, notificationAddress: 0x1000).irqEnabled)
    #expect(k.machine.tapq(APQN(5, 4), vm.authority).0.irqEnabled)
  }
}
