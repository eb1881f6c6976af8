import APModel
import SystemPackage
import Testing

@testable import HostKernel

@Suite("uevent files: what uevent_show prints and what a write sends")
struct UEventFileTests {
  @Test func deviceFilesReadWhatDevUeventAdds() throws {
    let k = HostKernel()
    #expect(cat(k, "/devices/ap/uevent") == "")
    #expect(
      cat(k, "/devices/ap/card05/uevent")
        == "DEVTYPE=ap_card\nDRIVER=cex4card\nDEV_TYPE=000E\nMODALIAS=ap:t0E\nMODE=cca\n")
    #expect(
      cat(k, "/devices/ap/card07/uevent")
        == "DEVTYPE=ap_card\nDRIVER=cex4card\nDEV_TYPE=000E\nMODALIAS=ap:t0E\nMODE=ep11\n")
    #expect(cat(k, "/devices/ap/card0a/0a.0004/uevent") == "DEVTYPE=ap_queue\nDRIVER=cex4queue\nMODE=accel\n")
    #expect(cat(k, "/devices/ap/card05/05.0004/uevent") == "DEVTYPE=ap_queue\nDRIVER=cex4queue\nMODE=cca\n")
    #expect(cat(k, "/devices/vfio_ap/uevent") == "")
    #expect(cat(k, "/devices/vfio_ap/matrix/uevent") == "DRIVER=vfio_ap\n")
    for p in [
      "/devices/ap/uevent", "/devices/ap/card05/uevent", "/devices/ap/card05/05.0004/uevent",
      "/devices/vfio_ap/uevent", "/devices/vfio_ap/matrix/uevent",
    ] {
      #expect(try k.sysfs.info(p).mode == 0o644, "\(p)")
    }
    for p in [
      "/bus/ap/uevent", "/bus/ap/drivers/cex4card/uevent", "/bus/ap/drivers/cex4queue/uevent",
      "/bus/ap/drivers/vfio_ap/uevent", "/bus/matrix/uevent", "/bus/matrix/drivers/vfio_ap/uevent",
      "/bus/mdev/uevent", "/bus/mdev/drivers/\(VFIOAPDriver.mdevDriverName)/uevent",
    ] {
      #expect(try k.sysfs.info(p).mode == 0o200, "\(p)")
      #expect(throws: Errno.self) { try k.read(p) }
    }
  }

  @Test func contentsFollowBinding() throws {
    let k = bootWithFreedAdapters()
    // Queues of adapter 5 are vfio_ap's now.
    #expect(cat(k, "/devices/ap/card05/05.0004/uevent") == "DEVTYPE=ap_queue\nDRIVER=vfio_ap\nMODE=cca\n")
    #expect(echo(k, "05.0004", "/bus/ap/drivers/vfio_ap/unbind") == nil)
    #expect(cat(k, "/devices/ap/card05/05.0004/uevent") == "DEVTYPE=ap_queue\nMODE=cca\n")
    #expect(echo(k, "card05", "/bus/ap/drivers/cex4card/unbind") == nil)
    #expect(
      cat(k, "/devices/ap/card05/uevent") == "DEVTYPE=ap_card\nDEV_TYPE=000E\nMODALIAS=ap:t0E\nMODE=cca\n")
    makeMdev(k, uuid1)
    #expect(cat(k, mdevPath(uuid1) + "/uevent") == "DRIVER=\(VFIOAPDriver.mdevDriverName)\n")
    #expect(try k.sysfs.info(mdevPath(uuid1) + "/uevent").mode == 0o644)
  }

  @Test func writesSendSyntheticEvents() throws {
    let k = HostKernel()
    let card = "/devices/ap/card05"
    let vars = ["DEVTYPE=ap_card", "DRIVER=cex4card", "DEV_TYPE=000E", "MODALIAS=ap:t0E", "MODE=cca"]
    for action in ["add", "remove", "change", "move", "online", "offline", "bind", "unbind"] {
      #expect(echo(k, action + "\n", card + "/uevent") == nil)
      #expect(k.uevents.last == UEvent(UEvent.Action(rawValue: action)!, card, ["SYNTH_UUID=0"] + vars))
    }
    let u = "62177883-F1BB-47f0-914d-32a22e3a8804"
    #expect(echo(k, "change \(u)", card + "/uevent") == nil)
    #expect(k.uevents.last == UEvent(.change, card, ["SYNTH_UUID=\(u)"] + vars))
    #expect(echo(k, "add \(u) A=1 LONG_KEY=x=y\n", card + "/05.0004/uevent") == nil)
    #expect(
      k.uevents.last
        == UEvent(
          .add, card + "/05.0004",
          [
            "SYNTH_UUID=\(u)", "SYNTH_ARG_A=1", "SYNTH_ARG_LONG_KEY=x=y", "DEVTYPE=ap_queue",
            "DRIVER=cex4queue",
            "MODE=cca",
          ]))
    // A second space starts the key: the kernel takes it as part of the name.
    #expect(echo(k, "change \(u)  A=1", "/bus/ap/uevent") == nil)
    #expect(k.uevents.last == UEvent(.change, "/bus/ap", ["SYNTH_UUID=\(u)", "SYNTH_ARG_ A=1"]))
    #expect(echo(k, "change", "/devices/ap/uevent") == nil)
    #expect(k.uevents.last == UEvent(.change, "/devices/ap", ["SYNTH_UUID=0"]))
    #expect(echo(k, "change", "/devices/vfio_ap/matrix/uevent") == nil)
    #expect(k.uevents.last == UEvent(.change, "/devices/vfio_ap/matrix", ["SYNTH_UUID=0", "DRIVER=vfio_ap"]))
    #expect(echo(k, "add", "/bus/ap/uevent") == nil)
    #expect(k.uevents.last == UEvent(.add, "/bus/ap", ["SYNTH_UUID=0"]))
    #expect(echo(k, "add", "/bus/ap/drivers/cex4card/uevent") == nil)
    #expect(k.uevents.last == UEvent(.add, "/bus/ap/drivers/cex4card", ["SYNTH_UUID=0"]))
    #expect(echo(k, "change \(u) K=v", "/bus/mdev/uevent") == nil)
    #expect(k.uevents.last == UEvent(.change, "/bus/mdev", ["SYNTH_UUID=\(u)", "SYNTH_ARG_K=v"]))
    makeMdev(k, uuid1)
    #expect(echo(k, "change", mdevPath(uuid1) + "/uevent") == nil)
    #expect(
      k.uevents.last
        == UEvent(.change, mdevPath(uuid1), ["SYNTH_UUID=0", "DRIVER=\(VFIOAPDriver.mdevDriverName)"]))
    // The vfio_ap root device has neither bus nor class: the write succeeds, nothing is sent.
    let before = k.uevents.lastSeqnum
    #expect(echo(k, "change", "/devices/vfio_ap/uevent") == nil)
    #expect(k.uevents.lastSeqnum == before)
  }

  @Test func badWritesAreInvalidAndSendNothing() throws {
    let k = HostKernel()
    let card = "/devices/ap/card05/uevent"
    let u = "62177883-f1bb-47f0-914d-32a22e3a8804"
    let before = k.uevents.lastSeqnum
    for bad in [
      "\n", "ad", "adds", "Add", " add", "add ", "add \n", "add x", "add \(u.dropLast())", "add \(u)x",
      "add \(u) ", "add \(u) A", "add \(u) =1", "add \(u) A=", "add \(u) A=1 ",
      "change\n\n", "add\t\(u)",
    ] {
      #expect(echo(k, bad, card) == .invalidArgument, "\(bad.debugDescription)")
      #expect(echo(k, bad, "/bus/ap/uevent") == .invalidArgument, "\(bad.debugDescription)")
      #expect(echo(k, bad, "/devices/vfio_ap/uevent") == .invalidArgument, "\(bad.debugDescription)")
    }
    #expect(k.uevents.lastSeqnum == before)
    #expect(k.log.messages.contains("synth uevent: /devices/ap/card05: unknown uevent action string"))
    #expect(k.log.messages.contains("synth uevent: /devices/ap/card05: incorrect uevent action arguments"))
    #expect(k.log.messages.contains("cex4card card05: uevent: failed to send synthetic uevent: -22"))
    // More variables than an event holds: ENOMEM.
    let many = (0..<64).map { "K\($0)=v" }.joined(separator: " ")
    #expect(echo(k, "add \(u) \(many)", card) == .noMemory)
    #expect(k.uevents.lastSeqnum == before)
  }
}
