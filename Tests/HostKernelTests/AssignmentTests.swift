import APModel
import SystemPackage
import Testing

@testable import HostKernel

@Suite("vfio_ap: assignment rules of spec section 5")
struct AssignmentTests {
  @Test func numberParsingAndRange() {
    let k = bootWithFreedAdapters()
    makeMdev(k, uuid1)
    let p = mdevPath(uuid1)
    #expect(echo(k, "256", p + "/assign_adapter") == .noSuchDevice)
    #expect(echo(k, "99999999999999999999", p + "/assign_adapter") == .outOfRange)
    #expect(echo(k, "5 ", p + "/assign_adapter") == .invalidArgument)
    #expect(echo(k, "-5", p + "/assign_adapter") == .invalidArgument)
    #expect(echo(k, "08", p + "/assign_adapter") == .invalidArgument)
    #expect(echo(k, "five", p + "/assign_adapter") == .invalidArgument)
    #expect(echo(k, "+05\n", p + "/assign_adapter") == nil)
    #expect(echo(k, "0X6", p + "/assign_adapter") == nil)
    #expect(echo(k, "010", p + "/assign_domain") == nil)
    #expect(echo(k, "0xab", p + "/assign_domain") == nil)
    #expect(cat(k, p + "/matrix") == "05.0008\n05.00ab\n06.0008\n06.00ab\n")
    // Already assigned: success, nothing changes.
    #expect(echo(k, "5", p + "/assign_adapter") == nil)
    #expect(echo(k, "256", p + "/assign_domain") == .noSuchDevice)
    #expect(echo(k, "256", p + "/assign_control_domain") == .noSuchDevice)
    #expect(echo(k, "256", p + "/unassign_adapter") == .noSuchDevice)
    #expect(echo(k, "256", p + "/unassign_domain") == .noSuchDevice)
    #expect(echo(k, "256", p + "/unassign_control_domain") == .noSuchDevice)
    // Not assigned: success.
    #expect(echo(k, "7", p + "/unassign_adapter") == nil)
  }

  @Test func matrixFormats() {
    let k = bootWithFreedAdapters()
    makeMdev(k, uuid1)
    let p = mdevPath(uuid1)
    #expect(cat(k, p + "/matrix") == "")
    #expect(echo(k, "6", p + "/assign_adapter") == nil)
    #expect(echo(k, "5", p + "/assign_adapter") == nil)
    #expect(cat(k, p + "/matrix") == "05.\n06.\n")
    #expect(echo(k, "5", p + "/unassign_adapter") == nil)
    #expect(echo(k, "6", p + "/unassign_adapter") == nil)
    #expect(echo(k, "0x47", p + "/assign_domain") == nil)
    #expect(echo(k, "4", p + "/assign_domain") == nil)
    #expect(cat(k, p + "/matrix") == ".0004\n.0047\n")
    #expect(echo(k, "0xab", p + "/assign_control_domain") == nil)
    #expect(echo(k, "1", p + "/assign_control_domain") == nil)
    #expect(cat(k, p + "/control_domains") == "0001\n00ab\n")
    #expect(cat(k, p + "/matrix") == ".0004\n.0047\n")
  }

  @Test func reservedForHostIsAddressNotAvailable() {
    let k = bootWithFreedAdapters()
    makeMdev(k, uuid1, domains: [4])
    let p = mdevPath(uuid1)
    // Adapter 7 x domain 4 is reserved by apmask x aqmask.
    #expect(echo(k, "7", p + "/assign_adapter") == .addressNotAvailable)
    #expect(k.vfioAP.mdev(uuid1)!.matrix.apm.isEmpty)
    // With no domain assigned the product is empty: anything goes.
    makeMdev(k, uuid2, adapters: [7, 8])
    #expect(echo(k, "4", mdevPath(uuid2) + "/assign_domain") == .addressNotAvailable)
    #expect(cat(k, mdevPath(uuid2) + "/matrix") == "07.\n08.\n")
    // Only apmask/aqmask count, not existence: adapter 0x40 is not in the LPAR at all.
    #expect(echo(k, "0x40", p + "/assign_adapter") == .addressNotAvailable)
    #expect(echo(k, "-0x40", "/bus/ap/apmask") == nil)
    #expect(echo(k, "0x40", p + "/assign_adapter") == nil)
  }

  @Test func sharingIsAddressInUseAndLogged() {
    let k = bootWithFreedAdapters()
    makeMdev(k, uuid1, adapters: [5], domains: [4, 0x47])
    makeMdev(k, uuid2, domains: [0x47, 0xff])
    let before = k.log.nextSeq
    #expect(echo(k, "5", mdevPath(uuid2) + "/assign_adapter") == .addressInUse)
    #expect(
      k.log.messages(from: before) == [
        "vfio_ap_mdev \(uuid2): Userspace may not assign queue 05.0047 to mdev: already assigned to \(uuid1)"
      ])
    #expect(cat(k, mdevPath(uuid2) + "/matrix") == ".0047\n.00ff\n")
    // Control domains may be shared.
    #expect(echo(k, "3", mdevPath(uuid1) + "/assign_control_domain") == nil)
    #expect(echo(k, "3", mdevPath(uuid2) + "/assign_control_domain") == nil)
  }

  @Test func guestMatrixIsFiltered() throws {
    let k = bootWithFreedAdapters("-5,-6,-0x20")
    let m = makeMdev(k, uuid1, adapters: [5, 6, 0x20], domains: [4, 0x47], controls: [4, 0x100 - 1])
    // Adapter 0x20 is not in the host's configuration.
    #expect(cat(k, mdevPath(uuid1) + "/guest_matrix") == "05.0004\n05.0047\n06.0004\n06.0047\n")
    #expect(cat(k, mdevPath(uuid1) + "/matrix").contains("20.0047"))
    // One queue unbound from vfio_ap drops its whole adapter.
    #expect(echo(k, "06.0047", "/bus/ap/drivers/vfio_ap/unbind") == nil)
    #expect(cat(k, mdevPath(uuid1) + "/guest_matrix") == "05.0004\n05.0047\n")
    #expect(m.shadowAPCB.adm == APMask([4, 255]))
    // It comes back when the queue does.
    #expect(echo(k, "06.0047", "/bus/ap/drivers_probe") == nil)
    #expect(cat(k, mdevPath(uuid1) + "/guest_matrix") == "05.0004\n05.0047\n06.0004\n06.0047\n")
  }

  @Test func statusOfQueues() throws {
    let k = bootWithFreedAdapters()
    let m = makeMdev(k, uuid1, adapters: [5], domains: [4])
    #expect(cat(k, "/devices/ap/card05/05.0004/status") == "assigned\n")
    #expect(cat(k, "/devices/ap/card05/05.0005/status") == "unassigned\n")
    let vm = k.kvm.createVM(name: "guest1")
    try k.vfioAP.openDevice(m, kvm: vm)
    #expect(cat(k, "/devices/ap/card05/05.0004/status") == "in use\n")
  }

  @Test func apConfigReadAndWrite() throws {
    let k = bootWithFreedAdapters()
    makeMdev(k, uuid1, adapters: [5], domains: [4], controls: [4])
    let p = mdevPath(uuid1) + "/ap_config"
    let text = cat(k, p)
    #expect(text.utf8.count == 201)
    #expect(
      text
        == "0x\("04" + String(repeating: "0", count: 62)),0x\("08" + String(repeating: "0", count: 62)),0x\("08" + String(repeating: "0", count: 62))\n"
    )
    // Write it back: nothing changes.
    #expect(echo(k, text, p) == nil)
    #expect(cat(k, p) == text)
    // Missing piece, bad hex, 0X prefix.
    #expect(echo(k, "0x04,0x08", p) == .invalidArgument)
    #expect(echo(k, "0x04,0x0g,0x08", p) == .invalidArgument)
    #expect(echo(k, "0X04,0x08,0x08", p) == .invalidArgument)
    #expect(cat(k, p) == text)
    // Empty pieces clear; text after the third mask is ignored.
    #expect(echo(k, ",,\ngarbage that is ignored", p) == nil)
    #expect(cat(k, mdevPath(uuid1) + "/matrix") == "")
    // Short masks are left-aligned: 0x06 = adapters 5 and 6.
    #expect(echo(k, "0x06,0x0c,0x8", p) == nil)
    #expect(cat(k, mdevPath(uuid1) + "/matrix") == "05.0004\n05.0005\n06.0004\n06.0005\n")
    #expect(cat(k, mdevPath(uuid1) + "/control_domains") == "0000\n")
  }

  @Test func apConfigValidatesBeforeRangeAndIsAllOrNothing() throws {
    var d = machine(adapters: Array(0...11), domains: 0...84, na: 84, nd: 84)
    d.name = "z15"
    let k = HostKernel(definition: d)
    #expect(echo(k, "-5,-6", "/bus/ap/apmask") == nil)
    makeMdev(k, uuid1, adapters: [5], domains: [4])
    makeMdev(k, uuid2, adapters: [6], domains: [7])
    let p = mdevPath(uuid2) + "/ap_config"
    let old = cat(k, p)
    // Adapter 5 x domain 4 belongs to uuid1 (EADDRINUSE), and domain 0x80 is above Nd: the
    // validation comes first.
    let all = String(repeating: "f", count: 64)
    #expect(echo(k, "0x06,\(APMask([4, 0x80]).hexString),0x\(all)", p) == .addressInUse)
    #expect(cat(k, p) == old)
    // Reserved for the host (adapter 7, domain 7): EADDRNOTAVAIL.
    #expect(echo(k, "0x03,0x01,0x", p) == .addressNotAvailable)
    // Valid but beyond Na: ENODEV, nothing changes.
    #expect(echo(k, "0x02,0x01,0x00000000000000000000001", p) == .noSuchDevice)
    #expect(cat(k, p) == old)
  }

  @Test func apConfigUsesOnlyThe201FirstBytes() {
    let k = bootWithFreedAdapters()
    makeMdev(k, uuid1)
    let zero = "0x" + String(repeating: "0", count: 64)
    // 201 bytes exactly, then junk: the junk is cut off before parsing.
    let text = "0x06" + String(repeating: "0", count: 62) + "," + zero + "," + zero + "\n"
    #expect(text.utf8.count == 201)
    #expect(echo(k, text + "0xff,junk", mdevPath(uuid1) + "/ap_config") == nil)
    #expect(cat(k, mdevPath(uuid1) + "/matrix") == "05.\n06.\n")
    // A third mask that runs past byte 201 is cut there: its 65th digit makes it invalid.
    let long = zero + "," + zero + "," + zero + "ffff"
    #expect(echo(k, long, mdevPath(uuid1) + "/ap_config") == .invalidArgument)
    #expect(cat(k, mdevPath(uuid1) + "/matrix") == "05.\n06.\n")
  }
}
