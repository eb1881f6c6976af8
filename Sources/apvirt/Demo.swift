import APModel
import ArgumentParser
import HostKernel
import Machine

/// `apvirt demo`: the kernel documentation's worked example on an emulated host.
struct Demo: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Walk the kernel documentation's vfio_ap example and print it as a shell session.",
    discussion: """
      Boots the machine (the embedded default unless --machine is given), then, as an \
      administrator would on a real LPAR: secures adapters 5 and 6 and domains 4, 0x47, 0xab and \
      0xff for vfio_ap, creates three mediated devices for three guests, starts a guest on the \
      first, hot plugs a domain into it, and shows the kernel refusing an assignment with \
      EADDRINUSE, one with EADDRNOTAVAIL, and a mask change with EBUSY. Every line of output is \
      what the kernel's sysfs would show.
      """)

  @Option(name: .long, help: "A machine definition (YAML) to boot instead of the embedded default.")
  var machine: String?

  func run() throws {
    let definition = try machine.map { try MachineDefinitionLoader.load(path: $0) } ?? .embeddedDefault
    let kernel = HostKernel(definition: definition)
    var t = Transcript(kernel: kernel)
    try DemoScript.run(&t)
    print(t.output, terminator: "")
  }
}

/// The demo's steps, apart from the command so that tests can check the transcript.
enum DemoScript {
  static let uuids = [
    "62177883-f1bb-47f0-914d-32a22e3a8804",
    "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3",
    "90c6c135-ad44-41d0-b1b7-bae47de48627",
  ]

  struct Failure: Error, CustomStringConvertible {
    var description: String
  }

  static func run(_ t: inout Transcript) throws {
    let k = t.kernel
    let m = k.machine.definition
    t.comment(
      "apvirt: machine '\(m.name)': \(m.adapters.count) adapters, \(m.usageDomains.count) usage domains, CRYCB format \(m.crycbFormat)"
    )
    t.comment("Every adapter and domain starts reserved for the host's zcrypt drivers.")
    t.cat("/sys/bus/ap/apmask")
    t.cat("/sys/bus/ap/bindings")
    t.blank()
    t.comment("Secure adapters 5 and 6 and domains 4, 0x47, 0xab, 0xff for guests.")
    t.echo("-5,-6", "/sys/bus/ap/apmask")
    t.echo("-4,-0x47,-0xab,-0xff", "/sys/bus/ap/aqmask")
    t.cat("/sys/bus/ap/apmask")
    t.cat("/sys/bus/ap/aqmask")
    for q in ["05.0004", "05.0047", "05.00ab", "05.00ff", "06.0004", "06.0047", "06.00ab", "06.00ff"] {
      t.readlink("/sys/bus/ap/devices/\(q)/driver")
    }
    t.blank()
    t.comment("Three mediated devices, one per guest.")
    let type = "/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough"
    for (i, u) in uuids.enumerated() { t.set("uuid\(i + 1)", u) }
    t.cat(type + "/available_instances")
    for i in 1...3 { t.echo("$uuid\(i)", type + "/create") }
    let dev = "/sys/devices/vfio_ap/matrix"
    t.comment("guest1: 05.0004 05.00ab 06.0004 06.00ab, control domain 0xab")
    t.echo("5", "\(dev)/$uuid1/assign_adapter")
    t.echo("6", "\(dev)/$uuid1/assign_adapter")
    t.echo("4", "\(dev)/$uuid1/assign_domain")
    t.echo("0xab", "\(dev)/$uuid1/assign_domain")
    t.echo("0xab", "\(dev)/$uuid1/assign_control_domain")
    t.comment("guest2: 05.0047 05.00ff")
    t.echo("5", "\(dev)/$uuid2/assign_adapter")
    t.echo("0x47", "\(dev)/$uuid2/assign_domain")
    t.echo("0xff", "\(dev)/$uuid2/assign_domain")
    t.comment("guest3: 06.0047 06.00ff")
    t.echo("6", "\(dev)/$uuid3/assign_adapter")
    t.echo("0x47", "\(dev)/$uuid3/assign_domain")
    t.echo("0xff", "\(dev)/$uuid3/assign_domain")
    for i in 1...3 { t.cat("\(dev)/$uuid\(i)/matrix") }
    t.cat("\(dev)/$uuid1/control_domains")
    t.cat("\(dev)/$uuid1/ap_config")
    t.blank()

    t.comment("guest1 starts: qemu-system-s390x -cpu host,ap=on,apqci=on,apft=on,apqi=on \\")
    t.comment("    -device vfio-ap,sysfsdev=/sys/bus/mdev/devices/$uuid1")
    guard let mdev1 = k.vfioAP.mdev(uuids[0]) else { throw Failure(description: "mdev 1 missing") }
    let vm = k.kvm.createVM(name: "guest1", vcpus: 2)
    try k.vfioAP.openDevice(mdev1, kvm: vm)
    t.cat("\(dev)/$uuid1/guest_matrix")
    t.cat("/sys/bus/ap/devices/05.0004/status")
    t.cat("/sys/bus/ap/devices/05.0047/status")
    t.comment(
      "guest1's APCB: \(vm.apcb.apqns.map(\.description).joined(separator: " ")) (updates so far: \(vm.apcbUpdateCount))"
    )
    t.blank()

    t.comment("Hot plug domain 0x10 into the running guest1: one APCB update.")
    t.echo("0x10", "\(dev)/$uuid1/assign_domain")
    t.cat("\(dev)/$uuid1/guest_matrix")
    t.comment(
      "guest1's APCB: \(vm.apcb.apqns.map(\.description).joined(separator: " ")) (updates so far: \(vm.apcbUpdateCount))"
    )
    t.blank()

    t.comment("Adapter 6 x domains 0x47, 0xff belong to guest3: EADDRINUSE.")
    t.echo("6", "\(dev)/$uuid2/assign_adapter")
    t.dmesgTail(2)
    t.comment("Adapter 7 x domain 0x10 is still reserved for the host: EADDRNOTAVAIL.")
    t.echo("7", "\(dev)/$uuid1/assign_adapter")
    t.comment("Giving adapter 5 back to the host would take 05.0010 from guest1: EBUSY.")
    t.echo("+5", "/sys/bus/ap/apmask")
    t.dmesgTail(1)
    t.cat("/sys/bus/ap/apmask")
    t.comment(
      "Nothing changed: guest1 still has \(vm.apcb.apqns.count) queues after \(vm.apcbUpdateCount) APCB updates."
    )
  }
}
