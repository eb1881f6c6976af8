import Foundation
import Testing
import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// An emulator started as libvirt's capability probe starts it (`-machine none ... -daemonize`).
struct ProbedEmulator {
  let pid: Int32
  let socket: String
  let pidfile: String
  let status: CommandResult

  /// Runs `binary` with the probe's command line; returns once the parent returned.
  init(_ binary: String, dir: String, name: String, accel: String = "kvm:tcg") throws {
    socket = dir + "/\(name).monitor"
    pidfile = dir + "/\(name).pid"
    // No host anywhere: the probe needs none.
    status = try runDaemonizing(
      binary,
      [
        "-S", "-no-user-config", "-nodefaults", "-nographic", "-machine", "none,accel=\(accel)", "-qmp",
        "unix:\(socket),server=on,wait=off", "-pidfile", pidfile, "-daemonize",
      ], environment: ["PATH": "/usr/bin:/bin", "APVIRT_MOUNT": dir + "/no-host/sys"])
    pid =
      Int32(
        ((try? String(contentsOfFile: pidfile, encoding: .utf8)) ?? "").trimmingCharacters(
          in: .whitespacesAndNewlines)) ?? -1
  }

  /// The replies (events skipped) to each request, after the greeting and negotiation.
  func ask(_ requests: [String]) throws -> (greeting: String, replies: [String]) {
    var c = try JSONStreamClient(path: socket, timeout: 10)
    defer { c.close() }
    func reply() throws -> String {
      while true {
        let line = String(decoding: try c.receiveLine(), as: UTF8.self)
        if !line.contains(#""event""#) { return line }
      }
    }
    let greeting = try reply()
    var out: [String] = []
    for r in [#"{"execute": "qmp_capabilities"}"#] + requests {
      c.sendLine(Data(r.utf8))
      out.append(try reply())
    }
    return (greeting, Array(out.dropFirst()))
  }

  var isAlive: Bool { kill(pid, 0) == 0 && !(processState(pid) == "Z") }
}

/// Runs a command that daemonizes, with `posix_spawn` and `waitpid`: QEMU's daemon keeps what
/// it inherited, which a Foundation `Process` would take for its child still running (apvirt's
/// keeps only what its command line names). Output goes to files; the command gets 20 s to return.
func runDaemonizing(_ program: String, _ args: [String], environment: [String: String]) throws
  -> CommandResult
{
  let base = NSTemporaryDirectory() + "apvirt-daemonizing-\(UUID().uuidString.prefix(8))"
  defer {
    try? FileManager.default.removeItem(atPath: base + ".out")
    try? FileManager.default.removeItem(atPath: base + ".err")
  }
  var actions = posix_spawn_file_actions_t()
  posix_spawn_file_actions_init(&actions)
  defer { posix_spawn_file_actions_destroy(&actions) }
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
  posix_spawn_file_actions_addopen(&actions, 1, base + ".out", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
  posix_spawn_file_actions_addopen(&actions, 2, base + ".err", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
  let argv = ([program] + args).map { strdup($0) } + [nil]
  let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
  defer {
    for p in argv { free(p) }
    for p in envp { free(p) }
  }
  var pid: pid_t = 0
  let rc = posix_spawn(&pid, program, &actions, nil, argv, envp)
  guard rc == 0 else { throw DaemonError(description: "\(program): \(String(cString: strerror(rc)))") }
  var status: Int32 = 0
  var waited = false
  for _ in 0..<400 {
    if waitpid(pid, &status, WNOHANG) == pid {
      waited = true
      break
    }
    usleep(50_000)
  }
  if !waited {
    kill(pid, SIGKILL)
    waitpid(pid, &status, 0)
  }
  let exited = status & 0x7f == 0
  return CommandResult(
    status: exited ? (status >> 8) & 0xff : 128 + (status & 0x7f),
    stdout: (try? String(contentsOfFile: base + ".out", encoding: .utf8)) ?? "",
    stderr: (try? String(contentsOfFile: base + ".err", encoding: .utf8)) ?? "")
}

/// The state letter in /proc/PID/stat ("R", "S", "Z", ...), or nil.
func processState(_ pid: Int32) -> String? {
  guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
    let close = stat.lastIndex(of: ")")
  else { return nil }
  return stat[stat.index(close, offsetBy: 2)...].split(separator: " ").first.map(String.init)
}

/// The session id in /proc/PID/stat.
func sessionID(_ pid: Int32) -> Int32? {
  guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
    let close = stat.lastIndex(of: ")")
  else { return nil }
  let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
  return fields.count > 3 ? Int32(fields[3]) : nil
}

/// What a JSON value looks like without its contents: objects by their keys (each with the
/// shape of its value), arrays by the shape of their first element.
func shape(_ v: Any) -> String {
  switch v {
  case let d as [String: Any]:
    return "{" + d.keys.sorted().map { "\($0): \(shape(d[$0]!))" }.joined(separator: ", ") + "}"
  case let a as [Any]:
    return "[" + (a.first.map(shape) ?? "") + "]"
  case is String: return "string"
  case let n as NSNumber: return String(cString: n.objCType) == "c" ? "bool" : "number"
  default: return "null"
  }
}

func json(_ text: String) -> Any { (try? JSONSerialization.jsonObject(with: Data(text.utf8))) ?? NSNull() }

@Suite("Interop: the capability probe (-machine none), beside qemu-system-s390x", .serialized)
struct QEMUProbeTests {
  let dir: String = {
    let d = "/tmp/apvirt-probe-\(UUID().uuidString.prefix(8))"
    try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
  }()

  /// A link named qemu-system-s390x to apvirt: the emulator as libvirt would be given it.
  var link: String {
    let l = dir + "/bin/qemu-system-s390x"
    try? FileManager.default.createDirectory(atPath: dir + "/bin", withIntermediateDirectories: true)
    try? FileManager.default.createSymbolicLink(atPath: l, withDestinationPath: apvirtBinary)
    return l
  }

  @Test func daemonizeLeavesAnEmulatorThatLivesUntilQuitOrSIGTERM() throws {
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let e = try ProbedEmulator(link, dir: dir, name: "a")
    // The parent returned once the monitor was ready, with no host anywhere.
    #expect(e.status.status == 0, "\(e.status.stderr)")
    #expect(e.pid > 0 && e.isAlive)
    #expect(sessionID(e.pid) == e.pid, "the emulator leads a session of its own")
    var st = stat()
    #expect(stat(e.pidfile, &st) == 0 && st.st_mode & 0o777 == 0o600)
    let (greeting, replies) = try e.ask([#"{"execute": "query-target"}"#, #"{"execute": "quit"}"#])
    #expect(
      greeting.hasPrefix(#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 10}"#),
      "\(greeting)")
    #expect(replies == [#"{"return": {"arch": "s390x"}}"#, #"{"return": {}}"#])
    // `quit` ends it, and it takes its pid file and socket with it.
    for _ in 0..<100 where e.isAlive { usleep(20_000) }
    #expect(!e.isAlive)
    #expect(!FileManager.default.fileExists(atPath: e.pidfile))
    #expect(!FileManager.default.fileExists(atPath: e.socket))

    let f = try ProbedEmulator(link, dir: dir, name: "b")
    #expect(f.isAlive)
    kill(f.pid, SIGTERM)
    for _ in 0..<100 where f.isAlive { usleep(20_000) }
    #expect(!f.isAlive, "SIGTERM ends the emulator")

    // A monitor that cannot be made is the parent's error, and no emulator stays.
    let bad = try runDaemonizing(
      link, ["-machine", "none", "-qmp", "unix:\(dir)/missing/x.sock,server=on,wait=off", "-daemonize"],
      environment: ["PATH": "/usr/bin:/bin"])
    #expect(bad.status == 1)
    #expect(bad.stderr.hasPrefix("qemu-system-s390x: -qmp unix:\(dir)/missing/x.sock"), "\(bad.stderr)")
  }

  /// Every reply libvirt's probe reads has the shape real QEMU gives it (apvirt's may carry keys
  /// that QEMU versions after 7.2 added, such as a machine's `acpi`), and the same errors.
  @Test func repliesHaveTheShapesOfQEMUs() throws {
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let real = "/usr/bin/qemu-system-s390x"
    try #require(FileManager.default.isExecutableFile(atPath: real), ".ci/run installs qemu-system-misc")
    let requests = [
      #"{"execute": "query-version"}"#, #"{"execute": "query-target"}"#, #"{"execute": "query-kvm"}"#,
      #"{"execute": "query-machines"}"#, #"{"execute": "query-cpu-definitions"}"#,
      #"{"execute": "qom-list-types", "arguments": {"implements": "ap-device"}}"#,
      #"{"execute": "device-list-properties", "arguments": {"typename": "vfio-ap"}}"#,
      #"{"execute": "device-list-properties", "arguments": {"typename": "PIIX4_PM"}}"#,
      #"{"execute": "qom-list-properties", "arguments": {"typename": "memory-backend-file"}}"#,
      #"{"execute": "query-cpu-model-expansion", "arguments": {"type": "static", "model": {"name": "nosuch"}}}"#,
      #"{"execute": "query-cpu-model-expansion", "arguments": {"type": "full", "model": {"name": "z14"}}}"#,
      #"{"execute": "query-commands"}"#,
    ]
    let qemu = try ProbedEmulator(real, dir: dir, name: "qemu", accel: "tcg")
    let ours = try ProbedEmulator(link, dir: dir, name: "apvirt", accel: "tcg")
    defer {
      kill(qemu.pid, SIGKILL)
      kill(ours.pid, SIGKILL)
    }
    let q = try qemu.ask(requests).replies
    let a = try ours.ask(requests).replies
    #expect(shape(json(a[0])) == shape(json(q[0])))
    #expect(a[1] == q[1])
    #expect(shape(json(a[2])) == shape(json(q[2])))
    for i in [3, 4] {
      // A superset of QEMU 7.2's keys.
      func keys(_ s: String) -> Set<String> {
        Set((((json(s) as? [String: Any])?["return"] as? [[String: Any]])?.first ?? [:]).keys)
      }
      #expect(keys(a[i]).isSuperset(of: keys(q[i])), "\(keys(q[i]).subtracting(keys(a[i])))")
    }
    #expect(a[5] == q[5])
    #expect(a[6] == q[6])
    #expect(a[7] == q[7])
    #expect(shape(json(a[8])) == "{return: []}" && shape(json(q[8])).hasPrefix("{return: ["))
    #expect(a[9] == q[9])
    // A model's expansion: its name and properties, apvirt's being the AP features (`appv` and
    // `appvi` came after 7.2), which QEMU has among all its others, off under TCG as in QEMU.
    func model(_ s: String) -> [String: Any] {
      ((json(s) as? [String: Any])?["return"] as? [String: Any])?["model"] as? [String: Any] ?? [:]
    }
    #expect(model(a[10])["name"] is String && model(q[10])["name"] is String)
    let ourProps = model(a[10])["props"] as? [String: Bool] ?? [:]
    let qemuProps = model(q[10])["props"] as? [String: Bool] ?? [:]
    #expect(Set(ourProps.keys).subtracting(["appv", "appvi"]).isSubset(of: Set(qemuProps.keys)))
    for f in ["ap", "apqci", "apft", "apqi"] { #expect(ourProps[f] == qemuProps[f], "\(f)") }
    // Every command apvirt lists, QEMU has.
    func names(_ s: String) -> Set<String> {
      Set(
        ((json(s) as? [String: Any])?["return"] as? [[String: Any]] ?? []).compactMap {
          $0["name"] as? String
        })
    }
    #expect(names(a[11]).isSubset(of: names(q[11])), "\(names(a[11]).subtracting(names(q[11])))")
  }
}
