import Foundation
import Synchronization
import TestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// How hard the reliability suite pushes. CI runs the short, seeded form (well under a minute);
/// `APVIRT_RELIABILITY=long` runs the long one (many more cases, kills and flips: minutes);
/// `APVIRT_RELIABILITY_SEED=N` replays one seed.
///
///     APVIRT_RELIABILITY=long swift test --filter ReliabilitySuite
struct ReliabilityLevel {
  let long: Bool
  let seed: UInt64

  static let current: ReliabilityLevel = {
    let env = ProcessInfo.processInfo.environment
    return ReliabilityLevel(
      long: env["APVIRT_RELIABILITY"] == "long",
      seed: env["APVIRT_RELIABILITY_SEED"].flatMap { UInt64($0) } ?? 1)
  }()

  func count(short: Int, long l: Int) -> Int { long ? l : short }
}

/// The daemon's resident memory, from /proc.
func residentKB(_ pid: Int32) -> Int {
  guard let s = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return 0 }
  for line in s.split(separator: "\n") where line.hasPrefix("VmRSS:") {
    return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
  }
  return 0
}

/// The reliability suite of the audit, against a live daemon: fuzzed QMP (every command, every
/// argument of every JSON type, malformed and huge frames, vanishing and concurrent clients),
/// a soak (mask flips and assign cycles with the daemon's memory flat), and SIGKILL at random
/// points followed by `up` (stale mount cleared, definitions intact, auto-start mdevs running,
/// the guests' processes exiting non-zero with a message).
@Suite("Interop: ReliabilitySuite (seeded; APVIRT_RELIABILITY=long for the long run)", .serialized)
struct ReliabilitySuiteTests {
  let level = ReliabilityLevel.current
  let u1 = "62177883-f1bb-47f0-914d-32a22e3a8804"

  func qemu(_ d: Daemon, _ args: [String]) throws -> CommandResult {
    let env = ProcessInfo.processInfo.environment.merging(["APVIRT_MOUNT": d.mount]) { $1 }
    return try run(apvirtBinary, ["qemu"] + args, environment: env)
  }

  /// A QMP client that negotiates, then sends one text and reads up to its reply (skipping
  /// events), with a time-out that fails the test.
  final class QMPClient {
    let c: JSONLineClient
    init(_ path: String) throws {
      c = try JSONLineClient(path: path, timeout: 5)
      _ = c.line()
      c.send(#"{"execute": "qmp_capabilities"}"# + "\n")
      _ = reply()
    }
    func reply() -> String? {
      while let l = c.line() {
        if !l.contains(#""event":"#) { return l }
      }
      return nil
    }
    func ask(_ text: String) -> String? {
      c.send(text + "\n")
      return reply()
    }
    var statusAnswers: Bool { ask(#"{"execute": "query-status"}"#)?.contains(#""status":"#) == true }
  }

  @Test func qmpFuzzOfEveryCommandAndArgument() throws {
    let d = try Daemon()
    let m = "/sys/devices/vfio_ap/matrix"
    #expect(
      try d.bash(
        "echo -5 > /sys/bus/ap/apmask && echo \(u1) > \(m)/mdev_supported_types/vfio_ap-passthrough/create && echo 5 > \(m)/\(u1)/assign_adapter && echo 4 > \(m)/\(u1)/assign_domain"
      ).status == 0)
    let sock = d.root + "/fuzz.qmp"
    let r = try qemu(
      d,
      [
        "-daemonize", "-name", "fuzz", "-cpu", "host", "-qmp", "unix:\(sock),server=on,wait=off", "-device",
        "vfio-ap,id=hostdev0,sysfsdev=/sys/bus/mdev/devices/\(u1)",
      ])
    #expect(r.status == 0, "\(r.stderr)")
    let commands: [(String, [String])] = [
      ("query-version", []), ("query-commands", []), ("query-status", []), ("stop", []), ("cont", []),
      ("system_reset", []), ("device_add", ["driver", "id", "sysfsdev", "bus"]), ("device_del", ["id"]),
      ("qom-list", ["path"]), ("qom-get", ["path", "property"]),
      ("human-monitor-command", ["command-line", "cpu-index"]),
    ]
    let values = [
      "1", "-1", "1.5", "1e400", "18446744073709551616", "\"s\"", "\"\"", "true", "null", "[]", "{}",
      "[[[[[[[[[[1]]]]]]]]]]", "\"vfio-ap\"", "\"hostdev0\"", "\"/sys/bus/mdev/devices/\(u1)\"",
      "\"info qtree\"", "\"device_del hostdev0\"",
      "\"device_add vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(u1)\"",
      "\"" + String(repeating: "x", count: 100_000) + "\"",
    ]
    var rng = SplitMix64(seed: level.seed)
    let client = try QMPClient(sock)
    var cases = 0
    // Every argument of every command with a value of every kind, and an unknown argument.
    for (name, args) in commands {
      for arg in args + ["bogus"] {
        for v in values {
          let reply = client.ask(
            #"{"execute": "\#(name)", "arguments": {"\#(arg)": \#(v)}, "id": \#(cases)}"#)
          #expect(reply != nil, "\(name) \(arg)=\(v.prefix(40)) got no answer")
          #expect(client.statusAnswers, "no query-status after \(name) \(arg)=\(v.prefix(40))")
          cases += 1
        }
      }
    }
    // Random combinations, then malformed frames.
    for _ in 0..<level.count(short: 200, long: 5000) {
      let (name, args) = commands.randomElement(using: &rng)!
      let members = (args + ["bogus"]).shuffled(using: &rng).prefix(Int.random(in: 0...3, using: &rng)).map {
        "\"\($0)\": \(values.randomElement(using: &rng)!)"
      }
      let text = #"{"execute": "\#(name)", "arguments": {\#(members.joined(separator: ", "))}}"#
      #expect(client.ask(text) != nil, "\(text.prefix(80)) got no answer")
      cases += 1
    }
    let frames = [
      "{", "}", "]", "[1,", "{\"execute\": }", "{\"execute\": \"query-status\",}", "\u{FEFF}{}", "'x'", "nul",
      "{\"exec-oob\": \"query-status\"}", "{\"execute\": \"query-status\", \"control\": 1}",
      String(repeating: "[", count: 2000) + String(repeating: "]", count: 2000),
    ]
    for f in frames {
      client.c.send(f + "\n")
      // Whatever the replies, a reset byte and a well-formed request are answered after them.
      // QEMU's lexer resets on a 0xFF byte (sent raw: a String would be UTF-8).
      client.c.sendBytes([0xFF])
      client.c.send("\n{\"execute\": \"query-status\", \"id\": \"sync\"}\n")
      var synced = false
      while let l = client.c.line() {
        if l.contains("\"sync\"") {
          synced = true
          break
        }
      }
      #expect(synced, "no answer after the frame \(f.prefix(40))")
    }
    // Vanishing clients: half a request, then gone; and clients in parallel.
    for _ in 0..<level.count(short: 20, long: 500) {
      let v = try JSONLineClient(path: sock, timeout: 5)
      v.send(#"{"execute": "qmp_capabilities"}{"execute": "query-st"#)
      v.close()
    }
    let failures = Atomic<Int>(0)
    let group = DispatchGroup()
    let rounds = level.count(short: 100, long: 2000)
    for _ in 0..<4 {
      group.enter()
      Thread.detachNewThread {
        defer { group.leave() }
        guard let c = try? QMPClient(sock) else {
          failures.add(1, ordering: .relaxed)
          return
        }
        for i in 0..<rounds {
          let text =
            i % 2 == 0
            ? #"{"execute": "stop"}"# : #"{"execute": "qom-list", "arguments": {"path": "/machine"}}"#
          if c.ask(text) == nil || !c.statusAnswers {
            failures.add(1, ordering: .relaxed)
            return
          }
        }
      }
    }
    #expect(group.wait(timeout: .now() + 120) == .success)
    #expect(failures.load(ordering: .relaxed) == 0)
    #expect(client.statusAnswers)
    #expect(d.process?.isRunning == true)
    print("ReliabilitySuite: \(cases) QMP cases, \(frames.count) malformed frames, seed \(level.seed)")
  }

  /// Bad input to every writable file of a configured host (every card and queue, the bus, the
  /// drivers, the matrix, both mdevs) and of a running guest's tree: every write fails (or is
  /// one that takes any text) and nothing a user can see changes.
  @Test func sysfsFuzzOfEveryWritableFile() throws {
    let d = try Daemon()
    let m = "/sys/devices/vfio_ap/matrix"
    let u2 = "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3"
    #expect(
      try d.bash(
        """
        set -e; echo -5,-6 > /sys/bus/ap/apmask
        for u in \(u1) \(u2); do echo $u > \(m)/mdev_supported_types/vfio_ap-passthrough/create; done
        echo 5 > \(m)/\(u1)/assign_adapter; echo 4 > \(m)/\(u1)/assign_domain
        echo 6 > \(m)/\(u2)/assign_adapter; echo 4 > \(m)/\(u2)/assign_domain
        """
      ).status == 0)
    #expect(
      try qemu(
        d,
        [
          "-daemonize", "-name", "g", "-cpu", "host", "-device",
          "vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(u1)",
        ]
      ).status == 0)
    let snapshot = """
      cd /sys/bus/ap && cat apmask aqmask ap_domain config_time poll_timeout poll_thread bindings ap_interrupts
      for m in \(m)/*-*; do echo $m; cat $m/matrix $m/guest_matrix $m/control_domains; done
      for c in /sys/devices/ap/card*; do echo $c $(cat $c/config $c/online); done
      find /sys/devices/ap -name driver -type l | xargs readlink | md5sum
      cat \(d.runtime)/guests/g/bus/ap/ap_usage_domain_mask; ls \(d.runtime)/guests/g/devices/ap/*
      """
    let before = try d.bash(snapshot).stdout
    // Files that take any text by design (their writes are made, not compared).
    let anyText = ["driver_override", "reset", "scans", "request_count", "remove", "create"]
    let files = try d.bash(
      "find /sys/bus/ap /sys/devices/ap /sys/devices/vfio_ap \(d.runtime)/guests/g -type f -perm /222"
    ).stdout.split(separator: "\n").map(String.init).filter { f in !anyText.contains { f.hasSuffix("/" + $0) }
    }
    #expect(files.count > 2500)
    let garbage: [[UInt8]] = [
      Array("zz".utf8), [0x7f, 1, 2, 0xff, 0xfe], Array("-".utf8), Array("+".utf8),
      Array(("x" + String(repeating: "f", count: 70)).utf8), Array("z5".utf8), Array("!@#$%\n".utf8),
      Array(String(repeating: "x", count: 5000).utf8),
    ]
    var rng = SplitMix64(seed: level.seed)
    var writes = 0
    var refused = 0
    var unopened: [String] = []
    let perFile = level.count(short: 2, long: garbage.count + 20)
    for file in files {
      let path = file.hasPrefix("/sys/") ? d.mount + file.dropFirst(4) : file
      for i in 0..<perFile {
        var input: [UInt8]
        if i < garbage.count && level.long {
          input = garbage[i]
        } else if i % 2 == 0 || level.long {
          input = garbage.randomElement(using: &rng)!
        } else {
          // Random bytes after a byte no parser of the kernel takes first.
          input =
            [1]
            + (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }
        let fd = open(path, O_WRONLY)
        guard fd >= 0 else {
          unopened.append("\(file): \(String(cString: strerror(errno)))")
          continue
        }
        let n = input.withUnsafeBytes {
          pwrite(fd, $0.baseAddress, $0.count, off_t(Int.random(in: 0...8, using: &rng)))
        }
        close(fd)
        writes += 1
        if n < 0 { refused += 1 }
      }
    }
    let after = try d.bash(snapshot).stdout
    #expect(after == before)
    if after != before {
      for (x, y) in zip(after.split(separator: "\n"), before.split(separator: "\n")) where x != y {
        Issue.record("changed: \(y) -> \(x)")
      }
    }
    #expect(refused == writes, "\(writes - refused) of \(writes) garbage writes were taken")
    #expect(unopened.isEmpty, "\(unopened.count) files could not be opened: \(unopened.prefix(5))")
    print("ReliabilitySuite: \(writes) bad writes to \(files.count) files, seed \(level.seed)")
  }

  @Test func controlSocketFuzzOfEveryCommandAndArgument() throws {
    let d = try Daemon()
    #expect(try qemu(d, ["-daemonize", "-name", "g", "-cpu", "host"]).status == 0)
    let commands: [(String, [String])] = [
      ("status", []), ("dmesg", []), ("hw-adapter-config", ["apid", "configured"]),
      ("hw-adapter-checkstop", ["apid", "checkstopped"]), ("hw-adapter-add", ["apid", "type", "mode"]),
      ("hw-adapter-remove", ["apid"]), ("hw-domain-add", ["domain", "usage", "control"]),
      ("hw-domain-remove", ["domain", "usage", "control"]),
      ("hw-adapter-latency", ["apid", "reset-ns", "irq-ns"]), ("hw-fault", ["target", "fault", "count"]),
      ("guest-start", ["argv", "version", "daemonize"]),
      ("guest-list", []), ("guest-ap", ["name", "instruction", "apqn", "payload", "psmid"]),
      ("guest-device", ["name"]), ("guest-device-add", ["name", "props"]),
      ("guest-device-del", ["name", "id"]),
    ]
    let values = [
      "1", "-1", "300", "1.5", "1e400", "18446744073709551616", "\"s\"", "\"\"", "true", "false", "null",
      "[]",
      "{}", "[\"-name\"]", "[\"-cpu\", \"host,,\"]", "{\"driver\": \"vfio-ap\"}", "\"g\"", "\"05.0004\"",
      "\"zz\"", "\"" + String(repeating: "x", count: 100_000) + "\"",
    ]
    let c = try RawControl(d)
    var cases = 0
    for (name, args) in commands {
      for arg in args + ["bogus"] {
        for v in values {
          let reply = c.ask(#"{"execute": "\#(name)", "arguments": {"\#(arg)": \#(v)}}"#)
          #expect(reply != nil, "\(name) \(arg)=\(v.prefix(40)) got no answer")
          #expect(c.statusAnswers(), "no status after \(name) \(arg)=\(v.prefix(40))")
          cases += 1
        }
      }
    }
    var rng = SplitMix64(seed: level.seed)
    for _ in 0..<level.count(short: 300, long: 10_000) {
      let (name, args) = commands.filter { $0.0 != "hw-adapter-remove" }.randomElement(using: &rng)!
      let members = args.shuffled(using: &rng).prefix(Int.random(in: 0...3, using: &rng)).map {
        "\"\($0)\": \(values.randomElement(using: &rng)!)"
      }
      let text = #"{"execute": "\#(name)", "arguments": {\#(members.joined(separator: ", "))}}"#
      #expect(c.ask(text) != nil, "\(text.prefix(80)) got no answer")
      cases += 1
    }
    #expect(c.statusAnswers())
    #expect(d.process?.isRunning == true)
    print("ReliabilitySuite: \(cases) control-socket cases, seed \(level.seed)")
  }

  @Test func soakKeepsTheDaemonsMemoryFlat() throws {
    let d = try Daemon()
    let m = "/sys/devices/vfio_ap/matrix"
    let pid = d.process!.processIdentifier
    #expect(
      try d.bash(
        "echo -5 > /sys/bus/ap/apmask && echo \(u1) > \(m)/mdev_supported_types/vfio_ap-passthrough/create && echo 5 > \(m)/\(u1)/assign_adapter"
      ).status == 0)
    let n = level.count(short: 1700, long: 5000)
    let flips = "for i in $(seq \(n)); do echo -0 > /sys/bus/ap/apmask; echo +0 > /sys/bus/ap/apmask; done"
    let cycles =
      "for i in $(seq \(n)); do echo 7 > \(m)/\(u1)/assign_domain; echo 7 > \(m)/\(u1)/unassign_domain; done"
    // Warm-up: one round of each, then the measured rounds.
    #expect(try d.bash(flips + "; " + cycles).status == 0)
    let warm = residentKB(pid)
    var samples: [Int] = []
    for _ in 0..<level.count(short: 2, long: 5) {
      #expect(try d.bash(flips + "; " + cycles).status == 0)
      samples.append(residentKB(pid))
    }
    let peak = samples.max() ?? warm
    print(
      "ReliabilitySuite soak: \(2 * n) flips and \(2 * n) cycles a round; RSS \(warm) kB warm, then \(samples) kB"
    )
    #expect(Double(peak) <= Double(warm) * 1.10, "RSS grew from \(warm) to \(peak) kB")
    #expect(try d.bash("cat \(m)/\(u1)/matrix").stdout == "05.\n")
  }

  @Test(.enabled(if: Requirement.mdevctl, Requirement.mdevctlMissing))
  func sigkillAtRandomPointsThenUp() throws {
    let state = "/tmp/apvirt-killstate-\(UUID().uuidString.prefix(8))"
    defer { try? FileManager.default.removeItem(atPath: state) }
    let d = try Daemon(state: state)
    // An auto-start definition (domain 4 of adapter 5 after the masks free it... the defaults
    // reserve every adapter for the host, so the definition holds only a control domain) and a
    // manual one.
    let auto =
      #"{"mdev_type": "vfio_ap-passthrough", "start": "auto", "attrs": [{"assign_control_domain": "3"}]}"#
    let manual = "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3"
    let dir = state + "/etc/mdevctl.d/matrix"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try auto.write(toFile: dir + "/" + u1, atomically: true, encoding: .utf8)
    #expect(
      try d.exec(
        ["mdevctl", "define", "-u", manual, "-p", "matrix", "-t", "vfio_ap-passthrough"]
      ).status == 0)
    let before = try FileManager.default.contentsOfDirectory(atPath: dir).sorted().map {
      ($0, try Data(contentsOf: URL(fileURLWithPath: dir + "/" + $0)))
    }
    var rng = SplitMix64(seed: level.seed)
    for round in 0..<level.count(short: 3, long: 40) {
      // Load: a guest's QEMU process, and a writer on the mount.
      let q = try GuestProcess(d, ["-name", "k\(round)", "-cpu", "host"])
      let writer = Process()
      writer.executableURL = URL(fileURLWithPath: apvirtBinary)
      writer.arguments = [
        "exec", "--mount", d.mount, "--state", d.state, "--", "/bin/bash", "-c",
        "for i in $(seq 100000); do echo -1 > /sys/bus/ap/apmask; echo +1 > /sys/bus/ap/apmask; done 2>/dev/null",
      ]
      writer.standardError = FileHandle.nullDevice
      try writer.run()
      usleep(UInt32.random(in: 100_000...600_000, using: &rng))
      d.kill9()
      let (exited, status, text) = q.finish()
      #expect(exited, "round \(round): apvirt qemu outlived the killed host")
      #expect(status == 1 && text.contains("lost the apvirt host"), "round \(round): \(text)")
      writer.terminate()
      writer.waitUntilExit()
      try d.start()
      #expect(d.log.contains("cleared a stale mount"), "round \(round)")
      #expect(
        try d.bash("test -e /sys/bus/mdev/devices/\(u1)").status == 0,
        "round \(round): auto-start mdev not running")
      #expect(try d.exec(["mdevctl", "list", "-d"]).status == 0)
      let after = try FileManager.default.contentsOfDirectory(atPath: dir).sorted().map {
        ($0, try Data(contentsOf: URL(fileURLWithPath: dir + "/" + $0)))
      }
      #expect(
        after.map(\.0) == before.map(\.0) && after.map(\.1) == before.map(\.1),
        "round \(round): definitions changed")
    }
  }
}
