import Foundation
import Synchronization
import Testing

@Suite("Interop: concurrent writers and readers", .serialized)
struct ConcurrencyTests {
  /// A bash writer per mdev for four seconds, each assigning and unassigning random adapters and
  /// domains (its own seed), in the background.
  static func writers(_ uuids: [String]) -> String {
    var script = ""
    for (i, u) in uuids.enumerated() {
      script += """
        ( end=$((SECONDS+4)); m=/sys/devices/vfio_ap/matrix/\(u); RANDOM=\(i + 1)
          while [ $SECONDS -lt $end ]; do
            a=$((RANDOM % 14)); q=$((RANDOM % 20))
            case $((RANDOM % 4)) in
              0) echo $a > $m/assign_adapter ;; 1) echo $q > $m/assign_domain ;;
              2) echo $a > $m/unassign_adapter ;; 3) echo $q > $m/unassign_domain ;;
            esac 2>/dev/null
          done ) &

        """
    }
    return script
  }

  /// Also with the daemon on one CPU, where one of its threads reads requests at a time.
  @Test(arguments: [false, true])
  func eightWritersAndReadersKeepTheInvariants(oneCPU: Bool) throws {
    let d = try Daemon(wrapper: oneCPU ? ["/usr/bin/taskset", "-c", "0"] : [])
    let uuids = (1...8).map { String(format: "%08x-2222-4333-8444-%012x", $0, $0) }
    var setup = "echo -0-11 > /sys/bus/ap/apmask\n"
    for u in uuids {
      setup += "echo \(u) > /sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create\n"
    }
    #expect(try d.bash(setup).status == 0)
    // Eight writers assign and unassign random adapters and domains for a bounded time, two
    // readers read matrix and guest_matrix and check every line's shape (no torn reads).
    var script = Self.writers(uuids)
    for _ in 0..<2 {
      script += """
        ( end=$((SECONDS+4))
          while [ $SECONDS -lt $end ]; do
            cat /sys/devices/vfio_ap/matrix/*-*/matrix /sys/devices/vfio_ap/matrix/*-*/guest_matrix \
              | grep -vE '^([0-9a-f]{2}\\.([0-9a-f]{4})?|\\.[0-9a-f]{4})$' && echo TORN
          done ) &

        """
    }
    script += "wait\n"
    let r = try d.bash(script)
    #expect(!r.stdout.contains("TORN"), "\(r.stdout.prefix(500))")
    // The daemon still answers, and no APQN is in two mdevs.
    var owners: [String: String] = [:]
    for u in uuids {
      let matrix = try d.bash("cat /sys/devices/vfio_ap/matrix/\(u)/matrix").stdout
      for line in matrix.split(separator: "\n") where line.count == 7 {
        #expect(owners[String(line)] == nil, "\(line) in \(u) and \(owners[String(line)] ?? "")")
        owners[String(line)] = u
      }
    }
    #expect(try d.bash("cat /sys/bus/ap/bindings").stdout == "3072/3072 (complete)\n")
  }

  /// Writers, guests hot plugging through QMP and hardware changes at once, with the invariants
  /// checked while it runs: from `status` (one snapshot under the host's lock) no APQN in two
  /// mdevs, each guest_matrix inside its matrix, each VM's APCB its mdev's guest_matrix; from
  /// sysfs, no torn line. Also with the daemon on one CPU.
  @Test(arguments: [false, true])
  func writersGuestsAndHardwareWithLiveInvariants(oneCPU: Bool) throws {
    let d = try Daemon(wrapper: oneCPU ? ["/usr/bin/taskset", "-c", "0"] : [])
    let uuids = (1...4).map { String(format: "%08x-3333-4444-8555-%012x", $0, $0) }
    let m = "/sys/devices/vfio_ap/matrix"
    var setup = "set -e; echo -0-11 > /sys/bus/ap/apmask; echo -0-0x3f > /sys/bus/ap/aqmask\n"
    for u in uuids { setup += "echo \(u) > \(m)/mdev_supported_types/vfio_ap-passthrough/create\n" }
    #expect(try d.bash(setup).status == 0)
    let env = ProcessInfo.processInfo.environment.merging(["APVIRT_MOUNT": d.mount]) { $1 }
    for g in ["g1", "g2"] {
      let r = try run(
        apvirtBinary,
        [
          "qemu", "-daemonize", "-name", g, "-cpu", "host", "-qmp",
          "unix:\(d.root)/\(g).qmp,server=on,wait=off",
        ],
        environment: env)
      #expect(r.status == 0, "\(r.stderr)")
    }
    let stop = Atomic<Bool>(false)
    let violations = Mutex<[String]>([])
    let snapshots = Atomic<Int>(0)
    let group = DispatchGroup()
    // The checker.
    group.enter()
    let control = d.runtime + "/control.sock"
    Thread.detachNewThread {
      defer { group.leave() }
      guard let c = try? JSONLineClient(path: control) else {
        violations.withLock { $0.append("checker could not connect") }
        return
      }
      while !stop.load(ordering: .relaxed) {
        c.send(#"{"execute": "status"}"# + "\n")
        guard let line = c.line(),
          let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
          let st = obj["return"] as? [String: Any]
        else {
          violations.withLock { $0.append("status not answered") }
          return
        }
        var owner: [String: String] = [:]
        var guestMatrix: [String: Set<String>] = [:]
        for mdev in st["mdevs"] as? [[String: Any]] ?? [] {
          let u = mdev["uuid"] as? String ?? ""
          let matrix = Set(mdev["matrix"] as? [String] ?? [])
          let gm = Set(mdev["guest_matrix"] as? [String] ?? [])
          for q in matrix {
            if let o = owner[q] { violations.withLock { $0.append("\(q) in \(o) and \(u)") } }
            owner[q] = u
          }
          if !gm.isSubset(of: matrix) {
            violations.withLock { $0.append("\(u): guest_matrix outside matrix") }
          }
          if let vm = mdev["vm"] as? String { guestMatrix[vm] = gm }
        }
        for vm in st["vms"] as? [[String: Any]] ?? [] {
          let name = vm["name"] as? String ?? ""
          let apcb = Set(vm["apcb"] as? [String] ?? [])
          if apcb != (guestMatrix[name] ?? []) {
            violations.withLock { $0.append("VM \(name): APCB is not its mdev's guest_matrix") }
          }
        }
        snapshots.add(1, ordering: .relaxed)
        usleep(20_000)
      }
    }
    // Hot plug and unplug through QMP, each guest its own mdev.
    for (i, g) in ["g1", "g2"].enumerated() {
      group.enter()
      let sock = d.root + "/\(g).qmp"
      let u = uuids[i]
      Thread.detachNewThread {
        defer { group.leave() }
        guard let c = try? JSONLineClient(path: sock) else { return }
        _ = c.line()
        c.send(#"{"execute": "qmp_capabilities"}"# + "\n")
        _ = c.line()
        while !stop.load(ordering: .relaxed) {
          c.send(
            #"{"execute": "device_add", "arguments": {"driver": "vfio-ap", "id": "hostdev0", "sysfsdev": "/sys/bus/mdev/devices/\#(u)"}}"#
              + "\n")
          c.send(#"{"execute": "device_del", "arguments": {"id": "hostdev0"}}"# + "\n")
          // Replies and events, until the device_del's reply.
          var replies = 0
          while replies < 2, let l = c.line() { if !l.contains(#""event":"#) { replies += 1 } }
          if replies < 2 {
            violations.withLock { $0.append("\(g): QMP stopped answering") }
            return
          }
        }
      }
    }
    // Writers and the hardware, for a bounded time.
    var script = Self.writers(uuids)
    script += "wait\n"
    group.enter()
    let mount = d.mount
    Thread.detachNewThread {
      defer { group.leave() }
      while !stop.load(ordering: .relaxed) {
        for args in [
          ["configure", "3", "off"], ["configure", "3", "on"], ["remove-domain", "5", "--usage-only"],
          ["add-domain", "5", "--usage-only"],
        ] {
          _ = try? run(apvirtBinary, ["hw"] + args + ["--mount", mount])
        }
      }
    }
    let r = try d.bash(script)
    #expect(r.status == 0)
    stop.store(true, ordering: .relaxed)
    #expect(group.wait(timeout: .now() + 30) == .success, "a load thread hung")
    let found = violations.withLock { $0 }
    #expect(found.isEmpty, "\(found.prefix(10))")
    let checked = snapshots.load(ordering: .relaxed)
    #expect(checked > 20, "only \(checked) snapshots checked")
    #expect(try d.apvirt(["status"]).status == 0)
  }
}
