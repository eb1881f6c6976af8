import APModel
import Foundation
import Planning
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// `apvirt explain` and `apvirt map` against the emulated kernel: every prediction of
/// `MatrixRules` (the errno, the masks, the matrices, guest_matrix, the queues' drivers) is
/// compared with what the kernel does when the write is made (issue 13).
@Suite("Planning against the emulated kernel", .serialized)
struct PlanningOracleTests {
  let u1 = "62177883-f1bb-47f0-914d-32a22e3a8804"
  let u2 = "8a3ce2fb-0f4e-44b6-b7c2-1c3b0e7c8e9a"
  let u3 = "3f2d9c4e-5b6a-4c7d-8e9f-0a1b2c3d4e5f"
  let matrix = "/sys/devices/vfio_ap/matrix"

  /// The z15-like lab LPAR: adapters 01-05 and 0b (deconfigured), seven usage domains, Na = Nd = 84.
  func labHost() throws -> Daemon {
    try Daemon(options: ["--machine", examplesDirectory + "/z15-lab.yaml"])
  }

  /// The errno strerror's words in a shell's `write error: ...` name; nil for success.
  func errno(of r: CommandResult) -> Errno? {
    guard r.status != 0 else { return nil }
    let candidates: [Errno] = [
      .invalidArgument, .outOfRange, .noSuchDevice, .addressNotAvailable, .addressInUse, .resourceBusy,
      .noSuchFileOrDirectory, .ioError, .notPermitted, .permissionDenied,
    ]
    return candidates.first { r.stderr.contains(Explanation.strerror($0)) } ?? .notSupported
  }

  struct MdevView: Equatable, CustomStringConvertible {
    var uuid: String
    var matrix: APMatrix
    var guest: APMatrix?
    var description: String {
      "\(uuid): \(MatrixRules.matrixSummary(matrix)); guest \(guest.map { MatrixRules.matrixSummary($0) } ?? "-")"
    }
  }

  /// Compares what the kernel shows with what the rules predicted.
  func compare(_ predicted: SysfsSnapshot, _ actual: SysfsSnapshot, _ what: String) {
    #expect(predicted.apmask == actual.apmask, "apmask after \(what)")
    #expect(predicted.aqmask == actual.aqmask, "aqmask after \(what)")
    let p = predicted.mdevs.map { MdevView(uuid: $0.uuid, matrix: $0.matrix, guest: $0.guestMatrix) }
    let a = actual.mdevs.map { MdevView(uuid: $0.uuid, matrix: $0.matrix, guest: $0.guestMatrix) }
    #expect(p == a, "mdevs after \(what)")
    #expect(
      predicted.queues.mapValues(\.driver) == actual.queues.mapValues(\.driver), "drivers after \(what)")
  }

  /// Predicts `line` from the mount, runs it in the host's shell, and compares errno and state.
  @discardableResult
  func check(
    _ d: Daemon, _ line: String, _ expected: Errno?, sourceLocation: SourceLocation = #_sourceLocation
  )
    throws -> WritePrediction
  {
    let w = try SysfsWrite.parse(shell: line)
    let before = try SysfsSnapshot.read(root: d.mount)
    let p = MatrixRules.predict(w, in: before)
    #expect(
      p.errno == expected, "\(line): predicted \(p.errno?.symbolicName ?? "success")",
      sourceLocation: sourceLocation)
    let r = try d.bash("cd /sys && " + w.description)
    #expect(
      errno(of: r) == p.errno,
      "\(line): predicted \(p.errno?.symbolicName ?? "success"), the kernel: \(r.stderr)",
      sourceLocation: sourceLocation)
    compare(p.after, try SysfsSnapshot.read(root: d.mount), line)
    return p
  }

  func explain(_ d: Daemon, _ subject: String) throws -> CommandResult {
    try run(apvirtBinary, ["explain", "--sysfs", d.mount, subject])
  }

  @Test("every errno of the assignment rules, predicted and then returned by the kernel")
  func everyErrno() throws {
    let d = try labHost()
    let m = matrix
    var r = try d.bash(
      """
      set -e
      echo -1,-2,-3,-12 > /sys/bus/ap/apmask
      echo -0x47 > /sys/bus/ap/aqmask
      for u in \(u1) \(u2) \(u3); do echo $u > \(m)/mdev_supported_types/vfio_ap-passthrough/create; done
      """)
    #expect(r.status == 0, "\(r.stderr)")
    try check(d, "echo 1 > \(m)/\(u1)/assign_adapter", nil)
    try check(d, "echo 4 > \(m)/\(u1)/assign_domain", nil)
    r = try run(
      apvirtBinary,
      ["qemu", "-daemonize", "-name", "g1", "-cpu", "host", "-device", "vfio-ap,sysfsdev=\(m)/\(u1)"],
      environment: ProcessInfo.processInfo.environment.merging(["APVIRT_MOUNT": d.mount]) { $1 })
    #expect(r.status == 0, "\(r.stderr)")
    #expect(try SysfsSnapshot.read(root: d.mount).mdev(u1)?.inUse == true)

    // EADDRNOTAVAIL: 04.0004 is the host's.
    let na = try check(d, "echo 4 > \(m)/\(u1)/assign_adapter", .addressNotAvailable)
    #expect(
      na.conflicts.map(\.description) == ["04.0004 is reserved for the host by apmask bit 4 and aqmask bit 4"]
    )
    // ENODEV beyond Na = 84, EINVAL, ERANGE.
    try check(d, "echo 0x55 > \(m)/\(u1)/assign_adapter", .noSuchDevice)
    try check(d, "echo 85 > \(m)/\(u1)/assign_domain", .noSuchDevice)
    try check(d, "echo 0x55 > \(m)/\(u1)/assign_control_domain", .noSuchDevice)
    try check(d, "echo zz > \(m)/\(u1)/assign_adapter", .invalidArgument)
    try check(d, "echo '5 ' > \(m)/\(u1)/unassign_domain", .invalidArgument)
    try check(d, "echo 0x10000000000000000 > \(m)/\(u1)/assign_domain", .outOfRange)
    // EADDRINUSE: u1 holds 01.0004 and its guest uses it.
    try check(d, "echo 1 > \(m)/\(u2)/assign_adapter", nil)
    let inUse = try check(d, "echo 4 > \(m)/\(u2)/assign_domain", .addressInUse)
    #expect(inUse.conflicts == [.heldByMdev(APQN(1, 4), uuid: u1, inUse: true)])
    try check(d, "echo 6 > \(m)/\(u2)/assign_domain", nil)
    // Control domains may be shared.
    try check(d, "echo 0x50 > \(m)/\(u1)/assign_control_domain", nil)
    try check(d, "echo 0x50 > \(m)/\(u2)/assign_control_domain", nil)
    // EBUSY: reserving adapter 01 again would take u1's and u2's queues.
    let busy = try check(d, "echo +1 > /sys/bus/ap/apmask", .resourceBusy)
    #expect(busy.conflicts.first == .takenFromMdev(APQN(1, 4), uuid: u1, inUse: true))
    try check(d, "echo 5 > \(m)/\(u3)/assign_adapter", nil)
    try check(d, "echo 0x47 > \(m)/\(u3)/assign_domain", nil)
    try check(d, "echo +0x47 > /sys/bus/ap/aqmask", .resourceBusy)
    try check(d, "echo 0xfg > /sys/bus/ap/aqmask", .invalidArgument)
    // ap_config: all or nothing; the reservation and sharing checks before the range check.
    let bit85 = "0x" + String(repeating: "0", count: 21) + "4"
    try check(d, "echo 0x08,\(bit85),0 > \(m)/\(u3)/ap_config", .addressNotAvailable)
    // 01.0004 is u1's: EADDRINUSE, though domain 85 is beyond aqm_max too.
    try check(d, "echo 0x40,\(APMask([4, 85]).hexString),0 > \(m)/\(u3)/ap_config", .addressInUse)
    try check(d, "echo 0x20,\(bit85),0 > \(m)/\(u3)/ap_config", .noSuchDevice)
    try check(d, "echo 0x20 > \(m)/\(u3)/ap_config", .invalidArgument)
    let config = APMatrix(apm: APMask([2, 5]), aqm: APMask([0x47]), adm: APMask([0x50])).apConfigText
      .dropLast()
    try check(d, "echo \(config) > \(m)/\(u3)/ap_config", nil)
    try check(d, "echo 1 > \(m)/00000000-0000-4000-8000-000000000000/assign_adapter", .noSuchFileOrDirectory)
    // The clearing of mask bits is never refused; queues move to vfio_ap and join their mdevs.
    try check(d, "echo -4 > /sys/bus/ap/apmask", nil)
    try check(d, "echo +4 > /sys/bus/ap/apmask", nil)

    // explain says the same through the command line, with exit status 2 for a refused write.
    r = try explain(d, "echo 4 > .../\(u2)/assign_domain")
    #expect(r.status == 2)
    #expect(r.stdout.contains("fails with EADDRINUSE (Address already in use):"))
    #expect(r.stdout.contains("01.0004 is held by mdev \(u1), used by its guest"))
    r = try explain(d, "01.0004")
    #expect(r.status == 0)
    #expect(
      r.stdout.hasPrefix("01.0004: held by mdev \(u1), used by its guest; bound to vfio_ap\n"), "\(r.stdout)")
    #expect(r.stdout.contains("status \"in use\""))
    r = try explain(d, "04.0004")
    #expect(r.stdout.hasPrefix("04.0004: host: bound to cex4queue\n"), "\(r.stdout)")
    r = try explain(d, "echo 0x55 > .../\(u1)/assign_adapter")
    #expect(r.stdout.contains("adapter 85 (0x55) is beyond apm_max 84 (0x54, bus/ap/ap_max_adapter_id)"))
  }

  @Test("a filtered adapter and an over-provisioned one: guest_matrix as predicted, and explained")
  func filteredAndOverProvisioned() throws {
    let d = try labHost()
    let m = matrix
    let r0 = try d.bash(
      """
      set -e
      echo -1,-2,-12 > /sys/bus/ap/apmask
      echo \(u1) > \(m)/mdev_supported_types/vfio_ap-passthrough/create
      """)
    #expect(r0.status == 0, "\(r0.stderr)")
    try check(d, "echo 2 > \(m)/\(u1)/assign_adapter", nil)
    try check(d, "echo 4 > \(m)/\(u1)/assign_domain", nil)
    // Over-provisioned: adapter 0c is not in the LPAR's configuration yet.
    let over = try check(d, "echo 0x0c > \(m)/\(u1)/assign_adapter", nil)
    #expect(over.effects.contains { $0.contains("over-provisioned") })
    #expect(over.after.mdev(u1)?.guestMatrix == APMatrix(apm: APMask([2]), aqm: APMask([4])))
    var r = try explain(d, u1)
    #expect(
      r.stdout.contains("  adapter 0c is not in guest_matrix: not in the host's AP configuration\n"),
      "\(r.stdout)")
    #expect(r.stdout.contains("over-provisioned"))

    // Filtered: 02.0006 leaves vfio_ap; assigning domain 6 drops adapter 02 from guest_matrix.
    r = try d.bash("echo 02.0006 > /sys/bus/ap/drivers/vfio_ap/unbind")
    #expect(r.status == 0, "\(r.stderr)")
    let filtered = try check(d, "echo 6 > \(m)/\(u1)/assign_domain", nil)
    #expect(filtered.after.mdev(u1)?.guestMatrix == APMatrix(apm: APMask(), aqm: APMask([4, 6])))
    #expect(
      filtered.effects.contains(
        "adapter 02 stays out of guest_matrix: queue 02.0006 is unbound, not to vfio_ap"))
    r = try explain(d, u1)
    #expect(
      r.stdout.contains("  adapter 02 is not in guest_matrix: queue 02.0006 is unbound, not to vfio_ap\n"),
      "\(r.stdout)")
    r = try explain(d, "02.0004")
    #expect(
      r.stdout.contains(
        "not in its guest_matrix: adapter 02 is filtered out: queue 02.0006 is unbound, not to vfio_ap"))
    // unassign_domain does not re-filter: adapter 02 stays out although 02.0004 is fine.
    let quirk = try check(d, "echo 6 > \(m)/\(u1)/unassign_domain", nil)
    #expect(quirk.after.mdev(u1)?.guestMatrix == APMatrix(apm: APMask(), aqm: APMask([4])))
    r = try explain(d, u1)
    #expect(
      r.stdout.contains("adapter 02 is not in guest_matrix, though every queue is bound to vfio_ap"),
      "\(r.stdout)")

    // The adapter comes: the kernel plugs 0c in as filter() predicts from the new state.
    r = try d.apvirt(["hw", "add-adapter", "0x0c", "--type", "CEX7", "--mode", "cca"])
    #expect(r.status == 0, "\(r.stderr)")
    r = try d.bash("echo 02.0006 > /sys/bus/ap/drivers/vfio_ap/bind; echo 1 > /sys/bus/ap/scans")
    let s = try SysfsSnapshot.read(root: d.mount)
    let mdev = try #require(s.mdev(u1))
    #expect(s.hostConfiguration.apm.contains(0x0c))
    #expect(mdev.guestMatrix?.apm.contains(0x0c) == true, "\(mdev)")
  }

  @Test("random writes: the kernel never contradicts a prediction")
  func randomWrites() throws {
    let d = try labHost()
    var rng = SplitMix64(
      seed: ProcessInfo.processInfo.environment["APVIRT_PLANNING_SEED"].flatMap { UInt64($0) } ?? 13)
    let uuids = [u1, u2, u3]
    for u in uuids {
      let fd = open(
        d.mount + "/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create", O_WRONLY)
      _ = write(fd, u, u.utf8.count)
      close(fd)
    }
    let adapters = [1, 2, 3, 4, 5, 0x0b, 0x0c, 0x54, 0x55]
    let domains = [4, 6, 0x10, 0x13, 0x47, 0x50, 0x54, 0x55]
    func pick<T>(_ a: [T]) -> T { a[Int(rng.next() % UInt64(a.count))] }
    var outcomes: [String: Int] = [:]
    for step in 0..<160 {
      let w: SysfsWrite
      switch rng.next() % 10 {
      case 0: w = SysfsWrite(.apmask, echo: "\(pick(["+", "-", "-"]))\(pick(adapters))")
      case 1: w = SysfsWrite(.aqmask, echo: "\(pick(["+", "-", "-"]))\(pick(domains))")
      case 2:
        let a = APMask((0..<2).map { _ in pick(adapters) })
        let q = APMask((0..<2).map { _ in pick(domains) })
        w = SysfsWrite(
          .mdev(pick(uuids), .apConfig),
          echo: "\(a.hexString),\(q.hexString),\(APMask([pick(domains)]).hexString)")
      default:
        let attribute = pick(SysfsWrite.MdevAttribute.allCases.filter { $0 != .apConfig })
        let isAdapter = attribute == .assignAdapter || attribute == .unassignAdapter
        let id = isAdapter ? pick(adapters) : pick(domains)
        w = SysfsWrite(
          .mdev(pick(uuids), attribute), echo: pick(["\(id)", "0x\(String(id, radix: 16))", "x\(id)"]))
      }
      let before = try SysfsSnapshot.read(root: d.mount)
      let p = MatrixRules.predict(w, in: before)
      let fd = open(d.mount + "/" + w.path, O_WRONLY)
      #expect(fd >= 0, "\(w.path)")
      let n = w.bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
      let actual: Errno? = n < 0 ? Errno(rawValue: Glibc.errno) : nil
      close(fd)
      #expect(
        actual == p.errno,
        "step \(step): \(w): predicted \(p.errno?.symbolicName ?? "success"), the kernel \(actual?.symbolicName ?? "success")"
      )
      compare(p.after, try SysfsSnapshot.read(root: d.mount), "step \(step): \(w)")
      outcomes[p.errno?.symbolicName ?? "ok", default: 0] += 1
    }
    // The run reaches the interesting answers, not only EINVAL.
    for e in ["ok", "EINVAL", "ENODEV", "EADDRNOTAVAIL"] {
      #expect(outcomes[e, default: 0] > 0, "\(outcomes)")
    }
  }

  @Test("a plain cp -r copy of the mount reads as the mount: same snapshot, map and explanations")
  func directoryCopy() throws {
    let d = try labHost()
    let m = matrix
    let r0 = try d.bash(
      """
      set -e
      echo -1,-2 > /sys/bus/ap/apmask
      echo \(u1) > \(m)/mdev_supported_types/vfio_ap-passthrough/create
      echo 1 > \(m)/\(u1)/assign_adapter; echo 4 > \(m)/\(u1)/assign_domain; echo 0x50 > \(m)/\(u1)/assign_control_domain
      echo 0x0c > \(m)/\(u1)/assign_adapter || true
      """)
    #expect(r0.status == 0, "\(r0.stderr)")
    let copy = d.root + "/copy"
    // cp complains about the write-only files and exits 1; what it copies is the point.
    _ = try run("/bin/cp", ["-r", d.mount, copy])
    var live = try SysfsSnapshot.read(root: d.mount)
    let copied = try SysfsSnapshot.read(root: copy)
    live.root = copy
    #expect(live == copied)
    #expect(copied.mdevs.count == 1 && copied.queues.count == 42 && copied.cards.count == 6)
    let a = try run(apvirtBinary, ["map", "--sysfs", d.mount])
    let b = try run(apvirtBinary, ["map", "--sysfs", copy])
    #expect(a.status == 0 && b.status == 0, "\(a.stderr)\(b.stderr)")
    #expect(a.stdout.replacingOccurrences(of: d.mount, with: copy) == b.stdout)
    #expect(b.stdout.contains("\n01  a......\n"), "\(b.stdout)")
    for subject in ["01.0004", "03.0004", u1, "echo 3 > .../\(u1)/assign_adapter", "echo +1 > bus/ap/apmask"]
    {
      let x = try run(apvirtBinary, ["explain", "--sysfs", d.mount, subject])
      let y = try run(apvirtBinary, ["explain", "--sysfs", copy, subject])
      #expect(x.stdout.replacingOccurrences(of: d.mount, with: copy) == y.stdout, "\(subject)")
      #expect(x.status == y.status)
    }
    let html = d.root + "/map.html"
    let h = try run(apvirtBinary, ["map", "--sysfs", copy, "--html", html, "--json"])
    #expect(h.status == 0, "\(h.stderr)")
    let doc = try JSONDecoder().decode(MatrixMapDocument.self, from: Data(h.stdout.utf8))
    #expect(doc.apqns.first { $0.apqn == "01.0004" }?.mdev == u1)
    let page = try String(contentsOfFile: html, encoding: .utf8)
    #expect(page.contains("<table class=\"grid\""))
    // A root that is not a sysfs names the file it misses.
    let bad = try run(apvirtBinary, ["map", "--sysfs", d.root + "/state"])
    #expect(bad.status == 1)
    #expect(bad.stderr.contains("\(d.root)/state/bus/ap/apmask: No such file or directory"), "\(bad.stderr)")
  }
}
