import APModel
import Machine
import SystemPackage
import Testing

@testable import HostKernel

@Suite("AP bus: /sys/bus/ap and the devices")
struct APBusTests {
  @Test func bootCreatesAndBindsEveryDevice() {
    let k = HostKernel()
    #expect(k.apBus.cards.count == 12)
    #expect(k.apBus.queues.count == 12 * 256)
    #expect(cat(k, "/bus/ap/bindings") == "3072/3072 (complete)\n")
    #expect(cat(k, "/bus/ap/scans") == "1\n")
    #expect(cat(k, "/bus/ap/ap_max_domain_id") == "255\n")
    #expect(cat(k, "/bus/ap/ap_max_adapter_id") == "255\n")
    #expect(cat(k, "/bus/ap/features") == "APSC APXA QACT RC8A\n")
    #expect(cat(k, "/bus/ap/ap_domain") == "0\n")
    #expect(cat(k, "/bus/ap/ap_interrupts") == "1\n")
    #expect(cat(k, "/bus/ap/config_time") == "30\n")
    #expect(cat(k, "/bus/ap/poll_timeout") == "250000\n")
    #expect(cat(k, "/bus/ap/apmask") == "0x" + String(repeating: "f", count: 64) + "\n")
    #expect(cat(k, "/bus/ap/ap_adapter_mask") == "0xfff0" + String(repeating: "0", count: 60) + "\n")
    #expect(cat(k, "/bus/ap/ap_usage_domain_mask") == "0x" + String(repeating: "f", count: 64) + "\n")
    #expect(
      try! k.sysfs.readlink("/devices/ap/card05/05.0004/driver") == "../../../../bus/ap/drivers/cex4queue")
    #expect(try! k.sysfs.readlink("/devices/ap/card05/driver") == "../../../bus/ap/drivers/cex4card")
    #expect(try! k.sysfs.readlink("/bus/ap/devices/05.0004") == "../../../devices/ap/card05/05.0004")
    #expect(try! k.sysfs.readlink("/bus/ap/devices/card05") == "../../../devices/ap/card05")
    #expect(k.uevents.contains(UEvent(.change, "/devices/ap", ["INITSCAN=done"])))
  }

  @Test func cardAndQueueAttributes() {
    let k = HostKernel()
    #expect(cat(k, "/devices/ap/card00/type") == "CEX8C\n")
    #expect(cat(k, "/devices/ap/card06/type") == "CEX8P\n")
    #expect(cat(k, "/devices/ap/card0a/type") == "CEX8A\n")
    #expect(cat(k, "/devices/ap/card05/hwtype") == "14\n")
    #expect(cat(k, "/devices/ap/card05/raw_hwtype") == "14\n")
    #expect(cat(k, "/devices/ap/card05/modalias") == "ap:t0E\n")
    #expect(cat(k, "/devices/ap/card05/ap_functions") == "0x92000000\n")
    #expect(cat(k, "/devices/ap/card05/max_msg_size") == "12288\n")
    #expect(cat(k, "/devices/ap/card05/online") == "1\n")
    #expect(cat(k, "/devices/ap/card05/config") == "1\n")
    #expect(cat(k, "/devices/ap/card05/chkstop") == "0\n")
    #expect(cat(k, "/devices/ap/card05/05.0004/online") == "1\n")
    #expect(cat(k, "/devices/ap/card05/05.0004/request_count") == "0\n")
    #expect(cat(k, "/devices/ap/card05/05.0004/reset") == "No Reset Timer set.\n")
    #expect(cat(k, "/devices/ap/card05/05.0004/interrupt") == "Interrupts enabled.\n")
    #expect(cat(k, "/devices/ap/card05/05.0004/driver_override") == "\n")
    #expect(try! k.sysfs.info("/devices/ap/card05/config").mode == 0o644)
    #expect(try! k.sysfs.info("/devices/ap/card05/hwtype").mode == 0o444)
  }

  @Test func busAttributeStores() {
    let k = HostKernel()
    #expect(echo(k, "4", "/bus/ap/config_time") == .invalidArgument)
    #expect(echo(k, "121", "/bus/ap/config_time") == .invalidArgument)
    #expect(echo(k, "abc", "/bus/ap/config_time") == .invalidArgument)
    #expect(echo(k, "60\n", "/bus/ap/config_time") == nil)
    #expect(cat(k, "/bus/ap/config_time") == "60\n")
    #expect(echo(k, "120000000001", "/bus/ap/poll_timeout") == .invalidArgument)
    #expect(echo(k, "99999999999999999999", "/bus/ap/poll_timeout") == .outOfRange)
    #expect(echo(k, "0x10", "/bus/ap/poll_timeout") == nil)
    #expect(cat(k, "/bus/ap/poll_timeout") == "16\n")
    #expect(echo(k, "256", "/bus/ap/ap_domain") == .invalidArgument)
    #expect(echo(k, "-1", "/bus/ap/ap_domain") == .invalidArgument)
    #expect(echo(k, "0x1f", "/bus/ap/ap_domain") == nil)
    #expect(cat(k, "/bus/ap/ap_domain") == "31\n")
    #expect(echo(k, "-31", "/bus/ap/aqmask") == nil)
    #expect(echo(k, "31", "/bus/ap/ap_domain") == .invalidArgument)
    // With interrupts (ap_interrupts 1) ap_poll_thread_start starts nothing: still 0.
    #expect(cat(k, "/bus/ap/ap_interrupts") == "1\n")
    #expect(echo(k, "y", "/bus/ap/poll_thread") == nil)
    #expect(cat(k, "/bus/ap/poll_thread") == "0\n")
    var noIRQ = MachineDefinition.embeddedDefault
    noIRQ.facilities.aqic = false
    let polled = HostKernel(definition: noIRQ)
    #expect(cat(polled, "/bus/ap/ap_interrupts") == "0\n")
    #expect(echo(polled, "y", "/bus/ap/poll_thread") == nil)
    #expect(cat(polled, "/bus/ap/poll_thread") == "1\n")
    #expect(echo(polled, "0", "/bus/ap/poll_thread") == nil)
    #expect(cat(polled, "/bus/ap/poll_thread") == "0\n")
    #expect(echo(k, "maybe", "/bus/ap/poll_thread") == .invalidArgument)
    #expect(echo(k, "1", "/bus/ap/bindings") == .permissionDenied)
    #expect(echo(k, "1", "/bus/ap/scans") == nil)
    #expect(cat(k, "/bus/ap/scans") == "2\n")
  }

  @Test func periodicScanFollowsConfigTime() {
    let k = HostKernel()
    k.advance(by: 29_000_000_000)
    #expect(k.apBus.scanCount == 1)
    k.advance(by: 1_000_000_000)
    #expect(k.apBus.scanCount == 2)
    #expect(echo(k, "5", "/bus/ap/config_time") == nil)
    k.advance(by: 20_000_000_000)
    #expect(k.apBus.scanCount == 6)
  }

  @Test func apmaskFreesQueuesForVFIOAP() {
    let k = HostKernel()
    #expect(echo(k, "-5,-6", "/bus/ap/apmask") == nil)
    #expect(cat(k, "/bus/ap/apmask") == "0xf9" + String(repeating: "f", count: 62) + "\n")
    #expect(k.apBus.queue(APQN(5, 4))?.driver == .vfioAP)
    #expect(k.apBus.queue(APQN(6, 0xff))?.driver == .vfioAP)
    #expect(k.apBus.queue(APQN(7, 4))?.driver == .cex4queue)
    #expect(
      try! k.sysfs.readlink("/devices/ap/card05/05.0004/driver") == "../../../../bus/ap/drivers/vfio_ap")
    #expect(cat(k, "/devices/ap/card05/05.0004/status") == "unassigned\n")
    #expect(cat(k, "/devices/ap/card05/05.0004/request_count") == "-\n")
    #expect((try? k.read("/devices/ap/card05/05.0004/online")) == nil)
    #expect((try? k.read("/devices/ap/card07/07.0004/status")) == nil)
    #expect(try! k.sysfs.list("/bus/ap/drivers/vfio_ap").filter { $0.kind == .symlink }.count == 512)
    #expect(cat(k, "/bus/ap/bindings") == "3072/3072 (complete)\n")
    #expect(
      k.uevents.last
        == UEvent(.change, "/devices/ap", ["APMASK=0xf9" + String(repeating: "f", count: 62) + "\n"]))
    // Every unbind ends with a ZAPQ.
    #expect(k.machine.queueState(APQN(5, 4)).zeroizeCount == 1)
    // An unchanged mask does nothing at all.
    let events = k.uevents.lastSeqnum
    #expect(echo(k, "-5", "/bus/ap/apmask") == nil)
    #expect(k.uevents.lastSeqnum == events)
    // Back to the host.
    #expect(echo(k, "+5", "/bus/ap/apmask") == nil)
    #expect(k.apBus.queue(APQN(5, 4))?.driver == .cex4queue)
    #expect(cat(k, "/devices/ap/card05/05.0004/request_count") == "0\n")
  }

  @Test func documentationMaskExamples() {
    let k = HostKernel()
    // Absolute: adapters 0 and 6 to vfio_ap.
    #expect(
      echo(k, "0x7dffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", "/bus/ap/apmask") == nil)
    #expect(k.apBus.queue(APQN(0, 0))?.driver == .vfioAP)
    #expect(k.apBus.queue(APQN(6, 0))?.driver == .vfioAP)
    #expect(k.apBus.queue(APQN(1, 0))?.driver == .cex4queue)
    // A short string is left-aligned: only bit 0 stays reserved.
    #expect(echo(k, "0x8000", "/bus/ap/apmask") == nil)
    #expect(cat(k, "/bus/ap/apmask") == "0x8" + String(repeating: "0", count: 63) + "\n")
    #expect(k.apBus.queue(APQN(0, 0))?.driver == .cex4queue)
    #expect(k.apBus.queue(APQN(1, 0))?.driver == .vfioAP)
    // Relative forms from the documentation.
    #expect(echo(k, "+0-15,+32,-128,-0xFF", "/bus/ap/aqmask") == nil)
    let aq = k.apBus.aqmask
    #expect(aq.contains(0) && aq.contains(15) && aq.contains(32) && !aq.contains(128) && !aq.contains(255))
    #expect(echo(k, "+1,+2,+3,+4,-5,-7-10", "/bus/ap/apmask") == nil)
    #expect(Array(k.apBus.apmask) == [0, 1, 2, 3, 4])
    // 0x128 is 296, beyond the 256 bits: the whole write fails and nothing changes.
    #expect(echo(k, "-0-255,+1-16,+0x128", "/bus/ap/aqmask") == .invalidArgument)
    #expect(k.apBus.aqmask == aq)
    // "\n" alone clears the mask.
    #expect(echo(k, "\n", "/bus/ap/apmask") == nil)
    #expect(k.apBus.apmask.isEmpty)
    #expect(k.apBus.queue(APQN(0, 0))?.driver == .vfioAP)
  }

  @Test func maskChangeRefusedWhileAssigned() {
    let k = bootWithFreedAdapters()
    makeMdev(k, uuid1, adapters: [5], domains: [0x54, 0x55])
    #expect(echo(k, "+5", "/bus/ap/apmask") == .resourceBusy)
    #expect(!k.apBus.apmask.contains(5))
    #expect(k.apBus.queue(APQN(5, 0x54))?.driver == .vfioAP)
    #expect(
      k.log.messages.suffix(2) == [
        "vfio_ap_mdev \(uuid1): Can not reserve queue 05.0054 for host driver: in use by mdev",
        "vfio_ap_mdev \(uuid1): Can not reserve queue 05.0055 for host driver: in use by mdev",
      ])
    // Clearing is never refused; bits not assigned anywhere may be reserved again.
    #expect(echo(k, "+6", "/bus/ap/apmask") == nil)
  }

  @Test func maskInUseLogsOnlyTheFirstMdevNewestFirst() {
    let k = bootWithFreedAdapters()
    makeMdev(k, uuid1, adapters: [5], domains: [1])
    makeMdev(k, uuid2, adapters: [6], domains: [2])
    let before = k.log.nextSeq
    #expect(echo(k, "+5,+6", "/bus/ap/apmask") == .resourceBusy)
    let lines = k.log.messages(from: before)
    #expect(
      Array(lines) == ["vfio_ap_mdev \(uuid2): Can not reserve queue 06.0002 for host driver: in use by mdev"]
    )
  }

  @Test func driverBindUnbindAndOverride() {
    let k = HostKernel()
    #expect(echo(k, "05.0004", "/bus/ap/drivers/vfio_ap/unbind") == .noSuchDevice)
    #expect(echo(k, "05.0004\n", "/bus/ap/drivers/cex4queue/unbind") == nil)
    #expect(k.apBus.queue(APQN(5, 4))?.driver == nil)
    #expect(cat(k, "/bus/ap/bindings") == "3071/3072\n")
    // vfio_ap may not take a reserved queue.
    #expect(echo(k, "05.0004", "/bus/ap/drivers/vfio_ap/bind") == .noSuchDevice)
    #expect(echo(k, "05.0004", "/bus/ap/drivers/cex4queue/bind") == nil)
    #expect(echo(k, "05.0004", "/bus/ap/drivers/cex4queue/bind") == .resourceBusy)
    #expect(echo(k, "99.0004", "/bus/ap/drivers/cex4queue/bind") == .noSuchDevice)
    // driver_override picks the driver, masks aside.
    #expect(echo(k, "vfio_ap\n", "/devices/ap/card05/05.0004/driver_override") == nil)
    #expect(cat(k, "/devices/ap/card05/05.0004/driver_override") == "vfio_ap\n")
    #expect(echo(k, "05.0004", "/bus/ap/drivers/cex4queue/unbind") == nil)
    #expect(echo(k, "05.0004", "/bus/ap/drivers_probe") == nil)
    #expect(k.apBus.queue(APQN(5, 4))?.driver == .vfioAP)
    #expect(echo(k, "nosuch", "/bus/ap/drivers_probe") == .noSuchDevice)
    #expect(echo(k, "\n", "/devices/ap/card05/05.0004/driver_override") == nil)
    #expect(cat(k, "/devices/ap/card05/05.0004/driver_override") == "\n")
  }

  @Test func cardConfigAndOnline() {
    let k = HostKernel()
    #expect(echo(k, "2", "/devices/ap/card05/config") == .invalidArgument)
    #expect(echo(k, "0", "/devices/ap/card05/config") == nil)
    #expect(cat(k, "/devices/ap/card05/config") == "0\n")
    #expect(cat(k, "/devices/ap/card05/online") == "0\n")
    #expect(cat(k, "/devices/ap/card05/05.0004/config") == "0\n")
    #expect(echo(k, "1", "/devices/ap/card05/online") == .noSuchDevice)
    #expect(echo(k, "1", "/devices/ap/card05/05.0004/online") == .noSuchDevice)
    #expect(echo(k, "1", "/devices/ap/card05/config") == nil)
    #expect(cat(k, "/devices/ap/card05/online") == "1\n")
    #expect(echo(k, "0", "/devices/ap/card05/online") == nil)
    #expect(echo(k, "1", "/devices/ap/card05/05.0004/online") == .invalidArgument)
  }

  @Test func lparChangesReachTheBusThroughItsScan() throws {
    let k = HostKernel()
    try k.machine.addAdapter(.init(apid: 0x20, type: .cex7, mode: .ep11))
    #expect(k.apBus.cards[0x20] == nil)
    k.notifyConfigurationChange()
    #expect(cat(k, "/devices/ap/card20/type") == "CEX7P\n")
    #expect(k.apBus.queues(of: k.apBus.cards[0x20]!).count == 256)
    try k.machine.removeUsageDomain(7)
    k.advance(by: 30_000_000_000)
    #expect(k.apBus.queue(APQN(0x20, 7)) == nil)
    #expect(cat(k, "/bus/ap/ap_usage_domain_mask").hasPrefix("0xfe"))
    try k.machine.removeAdapter(0x20)
    k.notifyConfigurationChange()
    #expect((try? k.read("/devices/ap/card20/type")) == nil)
    #expect((try? k.sysfs.readlink("/bus/ap/devices/card20")) == nil)
  }

  @Test func machineWithoutQCI() throws {
    var d = machine(adapters: [1, 2], domains: 0...15, apxa: false, format: 0)
    d.facilities = APFacilities(qci: false, apft: true, aqic: false)
    let k = HostKernel(definition: d)
    #expect(cat(k, "/bus/ap/features") == "-\n")
    #expect(cat(k, "/bus/ap/ap_usage_domain_mask") == "not supported\n")
    #expect(cat(k, "/bus/ap/ap_max_domain_id") == "15\n")
    #expect(cat(k, "/bus/ap/ap_interrupts") == "0\n")
    #expect(k.apBus.queues.count == 32)
  }
}
