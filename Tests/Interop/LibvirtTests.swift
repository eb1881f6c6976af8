import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// Debian's libvirtd (9.0) inside `apvirt exec`, with private /run, /etc/libvirt,
/// /var/lib/libvirt, /var/log/libvirt and /var/cache/libvirt, against a daemon that sends its uevents
/// (`--udev-events`) with the kernel documentation's masks; virsh drives it as on an LPAR.
final class LibvirtHost {
  let daemon: Daemon
  let libvirtd = Process()
  static let privates = [
    "--private", "/run", "--private", "/etc/libvirt", "--private", "/var/lib/libvirt", "--private",
    "/var/log/libvirt", "--private", "/var/cache/libvirt",
  ]
  var socket: String { daemon.state + "/private/run/libvirt/libvirt-sock" }
  var libvirtdLog: String {
    (try? String(contentsOfFile: daemon.root + "/libvirtd.log", encoding: .utf8)) ?? ""
  }

  /// With `domains`, the host lets the group libvirt-qemu use its control socket (libvirt runs
  /// the emulator as that user), qemu.conf has libvirt write the emulator's output to a file
  /// (there is no virtlogd here), and libvirtd runs with the MEMLOCK shim where root lacks
  /// CAP_SYS_RESOURCE (see `Scripts/memlock-shim.c`).
  init(domains: Bool = false) throws {
    // libvirtd refuses to start without its QEMU user, which libvirt-daemon-system creates and
    // .ci/run creates for the packages the tests install.
    #expect(getpwnam("libvirt-qemu") != nil, "the user libvirt-qemu (.ci/run creates it)")
    daemon = try Daemon(
      wrapper: ["/usr/bin/unshare", "--net"],
      options: ["--udev-events"] + (domains ? ["--group", "libvirt-qemu"] : []))
    var environment = ProcessInfo.processInfo.environment
    if domains {
      let etc = daemon.state + "/private/etc/libvirt"
      try FileManager.default.createDirectory(atPath: etc, withIntermediateDirectories: true)
      try "stdio_handler = \"file\"\n".write(toFile: etc + "/qemu.conf", atomically: true, encoding: .utf8)
      if let shim = try Self.memlockShim(in: daemon.root) {
        environment["LD_PRELOAD"] = shim
        print(
          "libvirtd runs with \(shim): root here lacks CAP_SYS_RESOURCE, so the shim lets libvirt's "
            + "RLIMIT_MEMLOCK raise for the VFIO hostdev pass (the product does nothing about it)")
      }
    }
    let masks = try daemon.bash(
      "echo -5,-6 > /sys/bus/ap/apmask && echo -4,-0x47,-0xab,-0xff > /sys/bus/ap/aqmask")
    #expect(masks.status == 0, "\(masks.stderr)")
    let argv = daemon.inItsNetwork(
      [apvirtBinary, "exec", "--mount", daemon.mount, "--state", daemon.state] + Self.privates + [
        "--", "/usr/sbin/libvirtd",
      ])
    libvirtd.executableURL = URL(fileURLWithPath: argv[0])
    libvirtd.arguments = Array(argv.dropFirst())
    libvirtd.environment = environment
    FileManager.default.createFile(atPath: daemon.root + "/libvirtd.log", contents: nil)
    let log = FileHandle(forWritingAtPath: daemon.root + "/libvirtd.log")
    libvirtd.standardOutput = log
    libvirtd.standardError = log
    try libvirtd.run()
    // Ready when virsh gets an answer.
    for _ in 0..<300 {
      if FileManager.default.fileExists(atPath: socket),
        (try? virsh(["nodedev-list", "--cap", "ap_matrix"]))?.stdout == "ap_matrix\n\n"
      {
        return
      }
      if !libvirtd.isRunning { break }
      usleep(100_000)
    }
    throw DaemonError(description: "libvirtd did not come up:\n\(libvirtdLog)")
  }

  /// Builds the test-only MEMLOCK shim when this machine needs it (root without
  /// CAP_SYS_RESOURCE, whose hard RLIMIT_MEMLOCK libvirt cannot raise); nil when it does not.
  static func memlockShim(in dir: String) throws -> String? {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let capEff = status.split(separator: "\n").first { $0.hasPrefix("CapEff:") }.flatMap {
      UInt64($0.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16)
    }
    guard let capEff, capEff & (1 << 24) == 0 else { return nil }
    let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(
      "Scripts/memlock-shim.c"
    ).path
    let shim = dir + "/memlock-shim.so"
    let built = try run("/usr/bin/gcc", ["-shared", "-fPIC", "-O2", "-o", shim, source, "-ldl"])
    guard built.status == 0 else { throw DaemonError(description: "building the shim: \(built.stderr)") }
    return shim
  }

  /// virsh as README's recipe runs it: `apvirt exec --private /run ... -- virsh ARGS`.
  @discardableResult
  func virsh(_ args: [String], stdin: String? = nil) throws -> CommandResult {
    try run(
      apvirtBinary,
      ["exec", "--mount", daemon.mount, "--state", daemon.state] + Self.privates + [
        "--", "/usr/bin/timeout", "60", "/usr/bin/virsh",
      ] + args, stdin: stdin)
  }

  /// The names `nodedev-list` prints, one a line.
  func nodes(_ args: [String]) throws -> [String] {
    try virsh(["nodedev-list"] + args).stdout.split(separator: "\n").map(String.init).filter { !$0.isEmpty }
  }

  /// What `nodedev-info` prints for `field` ("Active", "Autostart", ...).
  func info(_ node: String, _ field: String) throws -> String? {
    let out = try virsh(["nodedev-info", node]).stdout
    for line in out.split(separator: "\n") where line.hasPrefix(field + ":") {
      return line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces)
    }
    return nil
  }

  /// Polls `condition` until it holds or `seconds` pass: libvirt applies uevents and mdevctl's
  /// definitions asynchronously, as on an LPAR.
  func eventually(_ seconds: Double = 15, _ condition: () throws -> Bool) rethrows -> Bool {
    let end = Date().addingTimeInterval(seconds)
    repeat {
      if try condition() { return true }
      usleep(100_000)
    } while Date() < end
    return try condition()
  }

  deinit {
    if libvirtd.isRunning {
      libvirtd.terminate()
      if !waitForExit(libvirtd) { Glibc.kill(libvirtd.processIdentifier, SIGKILL) }
    }
    libvirtd.waitUntilExit()
  }
}

/// An mdev definition as libvirt takes it: parent `ap_matrix`, the vfio_ap type, attributes in
/// the order mdevctl writes them.
func mdevXML(_ uuid: String, adapter: String, domains: [String]) -> String {
  """
  <device>
    <parent>ap_matrix</parent>
    <capability type='mdev'>
      <type id='vfio_ap-passthrough'/>
      <uuid>\(uuid)</uuid>
      <attr name='assign_adapter' value='\(adapter)'/>
  \(domains.map { "    <attr name='assign_domain' value='\($0)'/>" }.joined(separator: "\n"))
    </capability>
  </device>

  """
}

func nodeName(_ uuid: String) -> String {
  "mdev_" + uuid.replacingOccurrences(of: "-", with: "_") + "_matrix"
}

@Suite(
  "Interop: libvirt (virsh nodedev-*, domcapabilities)", .serialized,
  .enabled(if: Requirement.libvirt && Requirement.mdevctl, Requirement.libvirtMissing))
struct LibvirtNodeDeviceTests {
  let u1 = "8a3ce2fb-0f4e-44b6-b7c2-1c3b0e7c8e9a"
  let u2 = "11111111-2222-4333-8444-555555555555"
  let u3 = "33333333-2222-4333-8444-555555555555"

  @Test func listsAndDescribesTheAPDevices() throws {
    let h = try LibvirtHost()
    #expect(try h.nodes(["--cap", "ap_card"]) == (0..<12).map { String(format: "ap_card%02x", $0) })
    // Every queue of the mount, by libvirt's name.
    let queues = try FileManager.default.contentsOfDirectory(atPath: h.daemon.mount + "/bus/ap/devices")
      .filter { $0.contains(".") }.map { "ap_" + $0.replacingOccurrences(of: ".", with: "_") }.sorted()
    #expect(queues.count == 3072)
    #expect(try h.nodes(["--cap", "ap_queue"]).sorted() == queues)
    #expect(try h.nodes(["--cap", "ap_matrix"]) == ["ap_matrix"])
    #expect(try h.nodes(["--cap", "mdev_types"]) == ["ap_matrix"])

    let queue = try h.virsh(["nodedev-dumpxml", "ap_05_0004"]).stdout
    #expect(queue.contains("<parent>ap_card05</parent>"), "\(queue)")
    #expect(queue.contains("<driver>\n    <name>vfio_ap</name>\n  </driver>"), "\(queue)")
    #expect(
      queue.contains("<ap-adapter>0x05</ap-adapter>") && queue.contains("<ap-domain>0x0004</ap-domain>"))
    let card = try h.virsh(["nodedev-dumpxml", "ap_card05"]).stdout
    #expect(card.contains("<name>cex4card</name>") && card.contains("<capability type='ap_card'>"), "\(card)")

    let matrix = try h.virsh(["nodedev-dumpxml", "ap_matrix"]).stdout
    for line in [
      "<path>/sys/devices/vfio_ap/matrix</path>", "<name>vfio_ap</name>", "<capability type='ap_matrix'>",
      "<capability type='mdev_types'>", "<type id='vfio_ap-passthrough'>",
      "<name>VFIO AP Passthrough Device</name>", "<deviceAPI>vfio-ap</deviceAPI>",
      "<availableInstances>65536</availableInstances>",
    ] {
      #expect(matrix.contains(line), "\(line) in\n\(matrix)")
    }
  }

  @Test func definesStartsAutostartsStopsAndUndefinesAnMdev() throws {
    let h = try LibvirtHost()
    let xml = h.daemon.root + "/mdev.xml"
    try mdevXML(u1, adapter: "0x05", domains: ["0x0004", "0x0047"]).write(
      toFile: xml, atomically: true, encoding: .utf8)
    let node = nodeName(u1)
    let defined = try h.virsh(["nodedev-define", xml])
    #expect(defined.status == 0, "\(defined.stderr)")
    #expect(defined.stdout.contains("Node device '\(node)' defined from"), "\(defined.stdout)")
    #expect(try h.info(node, "Active") == "no")
    #expect(try h.info(node, "Persistent") == "yes")

    let started = try h.virsh(["nodedev-start", node])
    #expect(started.status == 0, "\(started.stderr)")
    #expect(try h.eventually { try h.info(node, "Active") == "yes" })
    let dir = h.daemon.mount + "/devices/vfio_ap/matrix/" + u1
    #expect((try? String(contentsOfFile: dir + "/matrix", encoding: .utf8)) == "05.0004\n05.0047\n")
    // libvirt resolves the mdev's IOMMU group, and the namespace has its vfio nodes.
    let group =
      try FileManager.default.destinationOfSymbolicLink(atPath: dir + "/iommu_group")
      .split(separator: "/").last.map(String.init) ?? "?"
    let dump = try h.virsh(["nodedev-dumpxml", node]).stdout
    #expect(dump.contains("<iommuGroup number='\(group)'/>"), "\(dump)")
    #expect(dump.contains("<driver>\n    <name>vfio_ap_mdev</name>"), "\(dump)")
    let nodes = try h.daemon.exec([
      "/usr/bin/stat", "-c", "%n %F %T %a", "/dev/vfio/vfio", "/dev/vfio/" + group,
    ])
    #expect(
      nodes.stdout
        == "/dev/vfio/vfio character special file c4 666\n/dev/vfio/\(group) character special file 3 600\n",
      "\(nodes.stdout)\(nodes.stderr)")
    // The group node opens (libvirt opens and locks it before it labels it for a guest).
    let open = try h.daemon.exec(["/bin/sh", "-c", "exec 3<>/dev/vfio/\(group) && echo opened"])
    #expect(open.stdout == "opened\n", "\(open.stderr)")

    let auto = try h.virsh(["nodedev-autostart", node])
    #expect(auto.status == 0, "\(auto.stderr)")
    #expect(try h.info(node, "Autostart") == "yes")
    let definition = try String(
      contentsOfFile: h.daemon.state + "/etc/mdevctl.d/matrix/" + u1, encoding: .utf8)
    #expect(definition.contains("\"start\": \"auto\""), "\(definition)")

    let destroyed = try h.virsh(["nodedev-destroy", node])
    #expect(destroyed.status == 0, "\(destroyed.stderr)")
    #expect(try h.eventually { try h.info(node, "Active") == "no" })
    #expect(!FileManager.default.fileExists(atPath: dir))
    // The group's node went with it.
    #expect(try h.daemon.exec(["/usr/bin/test", "-e", "/dev/vfio/" + group]).status == 1)

    let undefined = try h.virsh(["nodedev-undefine", node])
    #expect(undefined.status == 0, "\(undefined.stderr)")
    #expect(try h.eventually { try !h.nodes(["--cap", "mdev", "--all"]).contains(node) })
    #expect(!FileManager.default.fileExists(atPath: h.daemon.state + "/etc/mdevctl.d/matrix/" + u1))
  }

  @Test func createsATransientMdevAndRefusesOneThatCollides() throws {
    let h = try LibvirtHost()
    let first = h.daemon.root + "/first.xml"
    let second = h.daemon.root + "/second.xml"
    try mdevXML(u3, adapter: "0x06", domains: ["0x0047"]).write(
      toFile: first, atomically: true, encoding: .utf8)
    try mdevXML(u2, adapter: "0x06", domains: ["0x0047"]).write(
      toFile: second, atomically: true, encoding: .utf8)
    // libvirt waits for the mdev's uevent (60 s without one) before it answers.
    let t0 = Date()
    let created = try h.virsh(["nodedev-create", first])
    let seconds = Date().timeIntervalSince(t0)
    #expect(created.status == 0, "\(created.stderr)")
    #expect(seconds < 10, "nodedev-create took \(seconds) s")
    #expect(created.stdout.contains("Node device \(nodeName(u3)) created from"), "\(created.stdout)")
    #expect(try h.info(nodeName(u3), "Active") == "yes")
    #expect(try h.info(nodeName(u3), "Persistent") == "no")

    // 06.0047 is the first mdev's: the kernel refuses it, and mdevctl removes what it created.
    let refused = try h.virsh(["nodedev-create", second])
    #expect(refused.status != 0)
    #expect(refused.stderr.contains("Failed to write 0x0047 to attribute assign_domain"), "\(refused.stderr)")
    #expect(refused.stderr.contains("Address already in use"), "\(refused.stderr)")
    let matrix = h.daemon.mount + "/devices/vfio_ap/matrix/"
    #expect(!FileManager.default.fileExists(atPath: matrix + u2))
    #expect(try h.nodes(["--cap", "mdev", "--all"]) == [nodeName(u3)])
    #expect(!(try h.daemon.exec(["mdevctl", "list"]).stdout.contains(u2)))

    let destroyed = try h.virsh(["nodedev-destroy", nodeName(u3)])
    #expect(destroyed.status == 0, "\(destroyed.stderr)")
    #expect(try h.eventually { try h.nodes(["--cap", "mdev", "--all"]).isEmpty })
    #expect(!FileManager.default.fileExists(atPath: matrix + u3))
  }

  @Test func devicesTheHostAddsAndRemovesComeAndGoLive() throws {
    let h = try LibvirtHost()
    #expect(!(try h.nodes(["--cap", "ap_card"]).contains("ap_card20")))
    let added = try h.daemon.apvirt(["hw", "add-adapter", "0x20"])
    #expect(added.status == 0, "\(added.stderr)")
    #expect(try h.eventually { try h.nodes(["--cap", "ap_card"]).contains("ap_card20") })
    #expect(try h.eventually { try h.nodes(["--cap", "ap_queue"]).contains("ap_20_0004") })
    let card = try h.virsh(["nodedev-dumpxml", "ap_card20"]).stdout
    #expect(card.contains("<ap-adapter>0x20</ap-adapter>"), "\(card)")

    let removed = try h.daemon.apvirt(["hw", "remove-adapter", "0x20"])
    #expect(removed.status == 0, "\(removed.stderr)")
    #expect(try h.eventually { try !h.nodes(["--cap", "ap_card"]).contains("ap_card20") })
    #expect(try h.eventually { try !h.nodes(["--cap", "ap_queue"]).contains { $0.hasPrefix("ap_20_") } })
    #expect(h.libvirtd.isRunning)
  }

  /// libvirt probes apvirt's qemu-system-s390x (`-machine none`, run as libvirt-qemu, with no
  /// host variable) and describes what a domain can have: the machine type, the CPU models with
  /// their AP features, KVM.
  @Test func domcapabilitiesOfApvirtsEmulator() throws {
    let h = try LibvirtHost()
    let link = h.daemon.root + "/bin/qemu-system-s390x"
    try FileManager.default.createDirectory(atPath: h.daemon.root + "/bin", withIntermediateDirectories: true)
    try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: apvirtBinary)
    for virttype in ["kvm", "qemu"] {
      let caps = try h.virsh([
        "domcapabilities", "--emulatorbin", link, "--arch", "s390x", "--virttype", virttype,
      ])
      #expect(caps.status == 0, "\(caps.stderr)")
      let xml = caps.stdout
      for line in [
        "<path>\(link)</path>", "<domain>\(virttype)</domain>", "<machine>s390-ccw-virtio-10.2</machine>",
        "<arch>s390x</arch>", "<vcpu max='248'/>", "<model usable='yes' vendor='unknown'>z15</model>",
        "<model usable='yes' vendor='unknown'>z16</model>",
      ] {
        #expect(xml.contains(line), "\(line) in\n\(xml.prefix(1500))")
      }
    }
    // The emulator answered and went: no probe process is left.
    let left = try run("/usr/bin/pgrep", ["-f", link + " .*machine none"])
    #expect(left.stdout.isEmpty, "\(left.stdout)")
  }
}
