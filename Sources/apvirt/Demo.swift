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
      administrator would on a real LPAR: secures two adapters and four domains for vfio_ap \
      (the documentation's 5 and 6, 4, 0x47, 0xab and 0xff), creates three mediated devices for \
      three guests, starts a guest on the first, hot plugs a fifth domain (0x10) into it, and \
      shows the kernel refusing an assignment with EADDRINUSE, one with EADDRNOTAVAIL (a third \
      adapter, 7), and a mask change with EBUSY. On a machine without those adapters and domains \
      the demo takes the first three configured adapters and five usage domains it has, and says \
      so; a machine with fewer is refused. Every line of output is what the kernel's sysfs \
      would show.
      """)

  @Option(name: .long, help: "A machine definition (YAML) to boot instead of the embedded default.")
  var machine: String?

  func run() throws {
    let definition: MachineDefinition
    do {
      definition = try machine.map { try MachineDefinitionLoader.load(path: $0) } ?? .embeddedDefault
    } catch {
      throw RuntimeError("\(error)")
    }
    let kernel = HostKernel(definition: definition)
    var t = Transcript(kernel: kernel)
    do {
      try DemoScript.run(&t)
    } catch {
      throw RuntimeError("\(machine ?? "the embedded default"): \(error)")
    }
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

  /// The IDs the walk-through uses: two adapters for the guests and a third the host keeps;
  /// four domains for the guests and a fifth to hot plug; guest1's control domain.
  struct Cast: Equatable {
    var adapters: [APID]
    var domains: [APQI]
    var control: APQI

    /// The kernel documentation's: adapters 5, 6 (and 7), domains 4, 0x47, 0xab, 0xff (and 0x10).
    static let documentation = Cast(
      adapters: [5, 6, 7], domains: [4, 0x47, 0xab, 0xff, 0x10], control: 0xab)

    /// The documentation's IDs when the host has them all, else the first the host has; nil with
    /// what the machine lacks.
    static func choose(_ k: HostKernel) throws(Failure) -> Cast {
      let bus: APBus = k.apBus
      // Adapters whose card the host sees, configured and online; domains with a queue on each.
      let adapters = bus.cards.values.filter { $0.config && !$0.chkstop && $0.online }.map(\.apid).sorted()
      let domains = k.machine.usageDomains.filter { d in
        d <= bus.maxDomainID && adapters.prefix(3).allSatisfy { bus.queue(APQN($0, d)) != nil }
      }
      let doc = documentation
      let pickedAdapters =
        Set(doc.adapters).isSubset(of: adapters) ? doc.adapters : Array(adapters.prefix(3))
      let docDomainsPresent = doc.domains.allSatisfy { d in
        d <= bus.maxDomainID && pickedAdapters.allSatisfy { bus.queue(APQN($0, d)) != nil }
      }
      let pickedDomains = docDomainsPresent ? doc.domains : Array(domains.prefix(5))
      guard pickedAdapters.count == 3, pickedDomains.count == 5 else {
        let m = k.machine.definition
        let noAPFT =
          m.facilities.apft ? "" : " (without the APFT facility the host detects no CEX4 or later adapter)"
        throw Failure(
          description:
            "the host sees \(adapters.count) configured adapter\(adapters.count == 1 ? "" : "s") of the \(m.adapters.count) in machine '\(m.name)'\(noAPFT) and \(adapters.isEmpty ? "no queues" : "\(domains.count) usage domain\(domains.count == 1 ? "" : "s") with queues on them"); the demo needs 3 adapters (two for the guests, one the host keeps) and 5 usage domains (four for the guests, one to hot plug): add them to the machine file, or run the demo without --machine"
        )
      }
      let third = pickedDomains[2]
      let control =
        pickedDomains == doc.domains
        ? doc.control
        : (k.machine.controlDomains.contains(third)
          ? third : (k.machine.controlDomains.first(where: { _ in true }) ?? third))
      return Cast(adapters: pickedAdapters, domains: pickedDomains, control: control)
    }
  }

  /// An ID as an administrator types it: `5`, `0x47`.
  static func id(_ n: Int) -> String { n < 10 ? "\(n)" : "0x" + String(n, radix: 16) }

  static func list(_ ids: [Int]) -> String {
    ids.count <= 1
      ? ids.map(id).joined()
      : ids.dropLast().map(id).joined(separator: ", ") + " and " + id(ids.last!)
  }

  /// A step that must succeed: the demo never narrates success over an error.
  static func ok(_ result: Errno?, _ what: String) throws(Failure) {
    if let result { throw Failure(description: "\(what) failed: \(result.description)") }
  }

  /// A step the kernel must refuse with `errno`.
  static func refused(_ result: Errno?, _ errno: Errno, _ what: String) throws(Failure) {
    guard result == errno else {
      throw Failure(
        description:
          "\(what) should fail with \(errno.symbolicName) but \(result.map { "failed with \($0.symbolicName)" } ?? "succeeded")"
      )
    }
  }

  static func run(_ t: inout Transcript) throws {
    let k = t.kernel
    let m = k.machine.definition
    let cast = try Cast.choose(k)
    let (a1, a2, a3) = (cast.adapters[0], cast.adapters[1], cast.adapters[2])
    let d = cast.domains
    let guestDomains = Array(d.prefix(4))
    t.comment(
      "apvirt: machine '\(m.name)': \(m.adapters.count) adapters, \(m.usageDomains.count) usage domains, CRYCB format \(m.crycbFormat)"
    )
    if cast != .documentation {
      let doc = Cast.documentation
      t.comment(
        "The documentation's adapters \(list(doc.adapters)) and domains \(list(doc.domains)) are not all on this machine:"
      )
      t.comment(
        "this walk-through uses adapters \(list(cast.adapters)) and domains \(list(d)) in their places.")
    }
    t.comment("Every adapter and domain starts reserved for the host's zcrypt drivers.")
    t.cat("/sys/bus/ap/apmask")
    t.cat("/sys/bus/ap/bindings")
    t.blank()
    t.comment(
      "Secure adapters \(list([a1, a2])) and domains \(guestDomains.map(id).joined(separator: ", ")) for guests."
    )
    try ok(t.echo("-\(id(a1)),-\(id(a2))", "/sys/bus/ap/apmask"), "securing the adapters")
    try ok(
      t.echo(guestDomains.map { "-" + id($0) }.joined(separator: ","), "/sys/bus/ap/aqmask"),
      "securing the domains")
    t.cat("/sys/bus/ap/apmask")
    t.cat("/sys/bus/ap/aqmask")
    for a in [a1, a2] {
      for q in guestDomains { t.readlink("/sys/bus/ap/devices/\(APQN(a, q))/driver") }
    }
    t.blank()
    t.comment("Three mediated devices, one per guest.")
    let type = "/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough"
    for (i, u) in uuids.enumerated() { t.set("uuid\(i + 1)", u) }
    t.cat(type + "/available_instances")
    for i in 1...3 { try ok(t.echo("$uuid\(i)", type + "/create"), "creating mdev \(i)") }
    let dev = "/sys/devices/vfio_ap/matrix"
    func queues(_ adapters: [APID], _ domains: [APQI]) -> String {
      adapters.flatMap { a in domains.sorted().map { APQN(a, $0).description } }.joined(separator: " ")
    }
    let g1 = [d[0], d[2]]
    let g2 = [d[1], d[3]]
    t.comment("guest1: \(queues([a1, a2], g1)), control domain \(id(cast.control))")
    try ok(t.echo(id(a1), "\(dev)/$uuid1/assign_adapter"), "guest1's adapter")
    try ok(t.echo(id(a2), "\(dev)/$uuid1/assign_adapter"), "guest1's adapter")
    for q in g1 { try ok(t.echo(id(q), "\(dev)/$uuid1/assign_domain"), "guest1's domain") }
    try ok(t.echo(id(cast.control), "\(dev)/$uuid1/assign_control_domain"), "guest1's control domain")
    t.comment("guest2: \(queues([a1], g2))")
    try ok(t.echo(id(a1), "\(dev)/$uuid2/assign_adapter"), "guest2's adapter")
    for q in g2 { try ok(t.echo(id(q), "\(dev)/$uuid2/assign_domain"), "guest2's domain") }
    t.comment("guest3: \(queues([a2], g2))")
    try ok(t.echo(id(a2), "\(dev)/$uuid3/assign_adapter"), "guest3's adapter")
    for q in g2 { try ok(t.echo(id(q), "\(dev)/$uuid3/assign_domain"), "guest3's domain") }
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
    t.cat("/sys/bus/ap/devices/\(APQN(a1, d[0]))/status")
    t.cat("/sys/bus/ap/devices/\(APQN(a1, d[1]))/status")
    t.comment(
      "guest1's APCB: \(vm.apcb.apqns.map(\.description).joined(separator: " ")) (updates so far: \(vm.apcbUpdateCount))"
    )
    t.blank()

    let hot = d[4]
    t.comment("Hot plug domain \(id(hot)) into the running guest1: one APCB update.")
    try ok(t.echo(id(hot), "\(dev)/$uuid1/assign_domain"), "the hot plug")
    t.cat("\(dev)/$uuid1/guest_matrix")
    t.comment(
      "guest1's APCB: \(vm.apcb.apqns.map(\.description).joined(separator: " ")) (updates so far: \(vm.apcbUpdateCount))"
    )
    t.blank()

    t.comment(
      "Adapter \(id(a2)) x domains \(g2.map(id).joined(separator: ", ")) belong to guest3: EADDRINUSE.")
    try refused(t.echo(id(a2), "\(dev)/$uuid2/assign_adapter"), .addressInUse, "guest2's second adapter")
    t.dmesgTail(2)
    t.comment("Adapter \(id(a3)) x domain \(id(hot)) is still reserved for the host: EADDRNOTAVAIL.")
    try refused(
      t.echo(id(a3), "\(dev)/$uuid1/assign_adapter"), .addressNotAvailable, "guest1's third adapter")
    t.comment("Giving adapter \(id(a1)) back to the host would take \(APQN(a1, hot)) from guest1: EBUSY.")
    try refused(t.echo("+\(id(a1))", "/sys/bus/ap/apmask"), .resourceBusy, "giving the adapter back")
    t.dmesgTail(1)
    t.cat("/sys/bus/ap/apmask")
    t.comment(
      "Nothing changed: guest1 still has \(vm.apcb.apqns.count) queues after \(vm.apcbUpdateCount) APCB updates."
    )
  }
}
