import APModel
import Foundation
import HostKernel
import Synchronization
import SystemPackage
import Testing

@testable import VMM

@Suite("VMM: the guest's view, the request and config-change IRQs", .serialized)
struct GuestTests {
  @Test func hostRemovalOfAnInUseMdevUnplugsItWithAnUnsolicitedEvent() throws {
    let host = try makeHost()
    let g = try guest(
      host, ["-cpu", "host", "-device", "vfio-ap,id=hostdev0,sysfsdev=/sys/bus/mdev/devices/\(uuid1)"])
    let events = Mutex<[String]>([])
    g.addSink(ObjectIdentifier(self as AnyObject)) { e in events.withLock { $0.append(e.json) } }
    // The remove blocks until the guest lets go; the guest does at once.
    try host.write("/devices/vfio_ap/matrix/\(uuid1)/remove", Array("1".utf8))
    #expect(host.withKernel { $0.vfioAP.mdev(uuid1) == nil })
    #expect(g.device == nil)
    #expect(events.withLock { $0 }.count == 1)
    #expect(
      events.withLock { $0 }.first?.hasPrefix(
        "{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"hostdev0\", \"path\": \"/machine/peripheral/hostdev0\"}"
      ) == true)
    #expect(
      host.withKernel {
        $0.log.messages.contains("vfio_ap_mdev \(uuid1): Relaying device request to user (#0)")
      })
  }

  @Test func hotPlugIsSeenByTheGuestAtOnceThroughTheCRW() throws {
    let host = try makeHost()
    let g = try guest(host, ["-cpu", "host", "-device", "vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(uuid1)"])
    // Cold plugged: the guest's kernel found the queues when it booted.
    #expect(g.guestQueues.map(\.description) == ["05.0004", "06.0004"])
    #expect(try g.guestRead("/devices/ap/card05/type") == "CEX8C\n")
    try host.write("/devices/vfio_ap/matrix/\(uuid1)/assign_domain", Array("0xab".utf8))
    #expect(g.guestQueues.map(\.description) == ["05.0004", "05.00ab", "06.0004", "06.00ab"])
    #expect(g.crwDelivered == 1)
    // Unplugging a domain: gone from the guest at once too.
    try host.write("/devices/vfio_ap/matrix/\(uuid1)/unassign_domain", Array("4".utf8))
    #expect(g.guestQueues.map(\.description) == ["05.00ab", "06.00ab"])
  }

  @Test func aDeviceHotPluggedIntoARunningGuestIsFoundAtItsNextScan() throws {
    // QEMU wires the IRQs after opening the device, and the kernel signals only registered
    // eventfds, so the plug itself raises no CRW: the running guest finds the queues at its next
    // periodic scan.
    let host = try makeHost()
    let g = try guest(host, ["-cpu", "host"])
    try g.deviceAdd([("driver", .string("vfio-ap")), ("sysfsdev", .string("/sys/bus/mdev/devices/\(uuid1)"))])
    #expect(g.apcb.apqns.count == 2)
    #expect(g.guestQueues.isEmpty)
    host.withKernel { $0.advance(by: 30_000_000_000) }
    #expect(g.guestQueues.map(\.description) == ["05.0004", "06.0004"])
  }

  @Test func withoutTheConfigChangeIRQTheGuestWaitsForItsPeriodicScan() throws {
    let host = try makeHost()
    let g = try guest(
      host, ["-cpu", "host", "-device", "vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(uuid1)"],
      version: QEMUVersion(9, 2, 0))
    #expect(g.device?.configChangeIRQ == false)
    #expect(g.guestQueues.map(\.description) == ["05.0004", "06.0004"])
    try host.write("/devices/vfio_ap/matrix/\(uuid1)/assign_domain", Array("0xab".utf8))
    #expect(g.guestQueues.count == 2)
    #expect(g.apcb.apqns.count == 4)
    host.withKernel { $0.advance(by: 30_000_000_000) }
    #expect(g.guestQueues.count == 4)
    #expect(g.crwDelivered == 0)
  }

  @Test func theMigrationProcedureOnOneHost() throws {
    // vfio-ap is not migratable: the device is unplugged, the mdev changed, and plugged again.
    let host = try makeHost()
    let g = try guest(
      host, ["-cpu", "host", "-device", "vfio-ap,id=hostdev0,sysfsdev=/sys/bus/mdev/devices/\(uuid1)"])
    #expect(g.guestQueues.map(\.description) == ["05.0004", "06.0004"])
    try g.deviceDel("hostdev0")
    #expect(g.apcb.isEmpty)
    host.withKernel { $0.advance(by: 30_000_000_000) }
    #expect(g.guestQueues.isEmpty)
    // "The target": the mdev now carries adapter 6 only, with domain 0x10.
    for (attr, v) in [("unassign_adapter", "5"), ("unassign_domain", "4"), ("assign_domain", "0x10")] {
      try host.write("/devices/vfio_ap/matrix/\(uuid1)/\(attr)", Array(v.utf8))
    }
    try g.deviceAdd([
      ("driver", .string("vfio-ap")), ("id", .string("hostdev0")),
      ("sysfsdev", .string("/sys/bus/mdev/devices/\(uuid1)")),
    ])
    #expect(g.apcb.apqns.map(\.description) == ["06.0010"])
    host.withKernel { $0.advance(by: 30_000_000_000) }
    #expect(g.guestQueues.map(\.description) == ["06.0010"])
    #expect(host.withKernel { $0.machine.leaks.isEmpty })
  }

  @Test func aQueueTakenFromTheGuestAnswersRC01AndIsZeroizedForTheNext() throws {
    let host = try makeHost()
    let g = try guest(host, ["-cpu", "host", "-device", "vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(uuid1)"])
    let vm = g.vmID
    let rc = host.withKernel { k in
      k.machine.nqap(APQN(5, 4), psmid: 1, payload: [1, 2], k.kvm.vms[vm]!.authority).responseCode
    }
    #expect(rc == .normal)
    try host.write("/devices/vfio_ap/matrix/\(uuid1)/unassign_adapter", Array("5".utf8))
    let after = host.withKernel { k in
      k.machine.nqap(APQN(5, 4), psmid: 2, payload: [1], k.kvm.vms[vm]!.authority).responseCode
    }
    #expect(after == .queueNotAvailable)
    #expect(host.withKernel { $0.machine.queueState(APQN(5, 4)).owner == nil })
  }

  @Test func cpuModelsAndCommandLines() throws {
    let d = try makeHost().withKernel { $0.machine.definition }
    let (m, w) = try CPUModel.parse("z15,apqci=on,apft=on", machine: d)
    #expect(!m.ap && m.apqci)
    #expect(w == ["warning: 'apqci' requires 'ap'.", "warning: 'apft' requires 'ap'."])
    #expect(throws: CPUModel.Failure(message: "unable to find CPU model 'z99'")) {
      _ = try CPUModel.parse("z99", machine: d)
    }
    var noQCI = d
    noQCI.facilities.qci = false
    #expect(
      throws: CPUModel.Failure(
        message:
          "Some features requested in the CPU model are not available in the current configuration: apqci")
    ) { _ = try CPUModel.parse("z15,ap=on,apqci=on", machine: noQCI) }
    #expect(try CPUModel.parse("host", machine: d).0.apqi)
    #expect(throws: QEMUCommandLine.Failure.self) { _ = try QEMUCommandLine.parse(["-bogus"]) }
    #expect((try? QEMUCommandLine.parse(["-bogus"])) == nil)
    do {
      _ = try QEMUCommandLine.parse(["-bogus"])
    } catch {
      #expect(error.description == "qemu-system-s390x: -bogus: invalid option")
    }
    let c = try QEMUCommandLine.parse([
      "-name", "guest=g7,debug-threads=on", "-machine", "s390-ccw-virtio,accel=kvm", "-smp", "2",
      "-nographic",
      "-chardev", "socket,id=charmonitor,path=/tmp/m.sock,server=on,wait=off", "-mon",
      "chardev=charmonitor,id=monitor,mode=control",
      "-device", #"{"driver":"vfio-ap","id":"hostdev0","sysfsdev":"/sys/bus/mdev/devices/x"}"#,
    ])
    #expect(c.name == "g7" && c.vcpus == 2 && c.qmpSockets == ["/tmp/m.sock"])
    #expect(c.devices.first?.map(\.0) == ["driver", "id", "sysfsdev"])
  }
}

@Suite("VMM: CRWs coalesce until the guest drains them")
struct CRWTests {
  @Test func oneCRWPerChangeAndNoneWhileOneIsPending() throws {
    let host = try makeHost()
    let g = try guest(host, ["-cpu", "host", "-device", "vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(uuid1)"])
    // A configuration change with ten domains in one ap_config write: up to three APCB updates,
    // each signalled, each one CRW delivered and drained before the next.
    let before = g.crwDelivered
    try host.write("/devices/vfio_ap/matrix/\(uuid1)/assign_domain", Array("0x10".utf8))
    #expect(g.crwDelivered == before + 1)
    // While a CRW is pending (the guest has not drained it), further signals add none.
    g.state.withLock { $0.crwPending = true }
    g.configChangeIRQ()
    g.configChangeIRQ()
    #expect(g.crwDelivered == before + 1)
    g.state.withLock { $0.crwPending = false }
    g.configChangeIRQ()
    #expect(g.crwDelivered == before + 2)
  }
}
