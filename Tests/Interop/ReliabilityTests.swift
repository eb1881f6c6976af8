import Foundation
import Testing
import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// A raw client of the daemon's control socket: one JSON text out, one line back, with a
/// time-out (no answer within it fails the test: the daemon hung).
final class RawControl {
  var client: JSONLineClient

  init(_ d: Daemon) throws {
    client = try JSONLineClient(path: d.runtime + "/control.sock")
  }

  func ask(_ text: String) -> String? {
    client.send(text + "\n")
    return client.line()
  }

  /// A well-formed request that must be answered after anything a client sent.
  func statusAnswers() -> Bool { ask(#"{"execute": "status"}"#)?.hasPrefix(#"{"return":"#) == true }
}

/// VMM's client with a time-out on connecting, sending and each line (no line within it is a
/// hang of the server, and fails the test).
final class JSONLineClient {
  var client: JSONStreamClient

  init(path: String, timeout: Int = 5) throws {
    do {
      client = try JSONStreamClient(path: path, timeout: Double(timeout))
    } catch {
      throw DaemonError(description: "\(error)")
    }
  }

  func send(_ text: String) { client.sendBytes(Array(text.utf8)) }
  func sendBytes(_ bytes: [UInt8]) { client.sendBytes(bytes) }

  /// The next line without its line end, or nil after the time-out or at the end.
  func line() -> String? { (try? client.receiveLine()).map { String(decoding: $0, as: UTF8.self) } }

  /// Closes once: a second close could hit a descriptor another test has been given since.
  func close() {
    guard !closed else { return }
    closed = true
    client.close()
  }

  private var closed = false
}

/// The reliability audit's findings 2 to 7 and 10 against a running daemon: what clients send
/// cannot crash it, take it over or reach what is not theirs.
@Suite("Interop: reliability and security of the daemon", .serialized)
struct ReliabilityTests {
  func qemu(_ d: Daemon, _ args: [String]) throws -> CommandResult {
    let env = ProcessInfo.processInfo.environment.merging(["APVIRT_MOUNT": d.mount]) { $1 }
    return try run(apvirtBinary, ["qemu"] + args, environment: env)
  }

  /// Finding 3: the control protocol is typed. Every case of the audit is refused with a clear
  /// error, changes nothing, and the daemon goes on answering.
  @Test func controlRequestsOfTheWrongTypeAreRefused() throws {
    let d = try Daemon()
    #expect(try qemu(d, ["-daemonize", "-name", "g", "-cpu", "host"]).status == 0)
    let c = try RawControl(d)
    let cases: [(String, String)] = [
      (
        #"{"execute": "guest-ap", "arguments": {"name": "g", "apqn": "05.0004", "psmid": -1}}"#,
        "Parameter 'psmid' is out of range"
      ),
      (
        #"{"execute": "hw-adapter-remove", "arguments": {"apid": true}}"#,
        "Invalid parameter type for 'apid', expected: integer"
      ),
      (
        #"{"execute": "hw-adapter-config", "arguments": {"apid": 5, "configured": 0}}"#,
        "Invalid parameter type for 'configured', expected: boolean"
      ),
      (
        #"{"execute": "guest-start", "arguments": {"argv": "x"}}"#,
        "Invalid parameter type for 'argv', expected: array"
      ),
      (#"{"execute": "guest-start", "arguments": {"argv": [], "version": "banana"}}"#, "not a QEMU version"),
      (
        #"{"execute": "hw-adapter-remove", "arguments": {"apid": 1, "force": true}}"#,
        "Parameter 'force' is unexpected"
      ),
      (#"{"execute": "hw-adapter-remove"}"#, "Parameter 'apid' is missing"),
      (
        #"{"execute": "hw-adapter-remove", "arguments": {"apid": 1.5}}"#,
        "Parameter 'apid' is out of range or not an integer"
      ),
      (
        #"{"execute": "hw-domain-add", "arguments": {"domain": 99999999999999999999}}"#,
        "Parameter 'domain' is out of range"
      ),
      (#"{"execute": "guest-ap", "arguments": {"name": "g", "apqn": "05.0004", "payload": "abc"}}"#, "hex"),
      (
        #"{"execute": "guest-ap", "arguments": {"name": "g", "apqn": "05.0004", "instruction": "pqap"}}"#,
        "instruction"
      ),
      (#"{"execute": 5}"#, "QMP input member 'execute' must be a string"),
      (#"{"arguments": {}}"#, "QMP input lacks member 'execute'"),
      (#"[1, 2]"#, "QMP input must be a JSON object"),
      (#"{"execute": "status", "arguments": []}"#, "QMP input member 'arguments' must be an object"),
      (#"{"execute": "no-such"}"#, "has not been found"),
    ]
    for (request, text) in cases {
      let reply = c.ask(request) ?? "<no answer>"
      #expect(reply.hasPrefix(#"{"error":"#) && reply.contains(text), "\(request) -> \(reply)")
      #expect(c.statusAnswers(), "no status after \(request)")
    }
    // Nothing changed: adapter 1 is there, adapter 5 configured, no guest but g.
    #expect(try d.bash("cat /sys/devices/ap/card01/online /sys/devices/ap/card05/config").stdout == "1\n1\n")
    #expect(c.ask(#"{"execute": "guest-list"}"#) == #"{"return":["g"]}"#)
    // The well-typed forms work.
    #expect(
      c.ask(#"{"execute": "guest-ap", "arguments": {"name": "g", "apqn": "05.0004", "psmid": 7}}"#) != nil)
    #expect(
      c.ask(#"{"execute": "hw-adapter-config", "arguments": {"apid": 5, "configured": false}}"#)?.hasPrefix(
        #"{"return":{"added":[],"changed":true,"#) == true)
    #expect(try d.bash("cat /sys/devices/ap/card05/config").stdout == "0\n")
  }

  /// A refused `hw add-domain` changes nothing (both parts are checked first).
  @Test func aRefusedHardwareOperationChangesNothing() throws {
    let d = try Daemon()
    var r = try d.apvirt(["hw", "remove-domain", "7", "--usage-only"])
    #expect(r.status == 0, "\(r.stderr)")
    // 7 is still a control domain: adding it as both fails, and must not re-add the usage domain.
    r = try d.apvirt(["hw", "add-domain", "7"])
    #expect(r.status != 0)
    #expect(r.stderr.contains("control domain 0x07 is already"), "\(r.stderr)")
    #expect(try d.bash("test -e /sys/devices/ap/card01/01.0007").status != 0)
    r = try d.apvirt(["hw", "remove-adapter", "zz"])
    #expect(r.status != 0 && r.stderr.contains("'zz' is not an adapter number"), "\(r.stderr)")
  }

  /// Finding 2: a typo in a guest's command line is QEMU's error, never the daemon's death.
  @Test func aGuestsCommandLineCannotCrashTheDaemon() throws {
    let d = try Daemon()
    var r = try qemu(d, ["-daemonize", "-name", "t", "-cpu", "host,,ap=on"])
    #expect(r.status == 0, "strtok skips the empty item: \(r.stderr)")
    r = try qemu(d, ["-daemonize", "-name", "t2", "-cpu", "host,ap"])
    #expect(r.status == 1)
    #expect(r.stderr == "qemu-system-s390x: Expected key=value format, found ap.\n")
    r = try qemu(d, ["-daemonize", "-name", "t3", "-cpu", "host,ap=maybe"])
    #expect(
      r.stderr.contains("can't apply global host-s390x-cpu.ap=maybe: Parameter 'ap' expects 'on' or 'off'"))
    // Seeded random command lines, sent to the daemon as they are (the client's own parse is
    // skipped: this is what any client of the control socket could send).
    var rng = SystemRandomNumberGenerator()
    let words = [
      "-name", "-cpu", "-device", "-qmp", "-smp", "-m", "-chardev", "-mon", "-machine", "-S", "", ",", ",,",
      "=",
      "host,", "host,,,", "z15,ap=on,,apqci", "vfio-ap,sysfsdev=", "vfio-ap,,", "{", "{\"driver\":", "unix:",
      "socket,id=,path=", "chardev=", "cpus=-1", "x=y=z", "\u{0}", "..", "/", "a/b", "-", "--",
    ]
    let c = try RawControl(d)
    for i in 0..<300 {
      let argv = (0..<Int.random(in: 1...6, using: &rng)).map { _ in words.randomElement(using: &rng)! }
      let json = try JSONSerialization.data(withJSONObject: [
        "execute": "guest-start", "arguments": ["argv": argv, "daemonize": true],
      ])
      let reply = c.ask(String(decoding: json, as: UTF8.self))
      #expect(reply != nil, "case \(i): \(argv) got no answer")
      guard reply != nil, c.statusAnswers() else {
        Issue.record("the daemon stopped answering after \(argv)")
        break
      }
    }
    #expect(d.process?.isRunning == true)
  }

  /// Finding 7: a guest's name is a file name; the traversal names are refused.
  @Test func guestNamesCannotBePaths() throws {
    let d = try Daemon()
    #expect(try qemu(d, ["-daemonize", "-name", "ok", "-cpu", "host"]).status == 0)
    for name in ["a/b", "", ".", "..", "../sys", "x\ny"] {
      let r = try qemu(d, ["-daemonize", "-name", name, "-cpu", "host"])
      #expect(r.status == 1, "-name \(name) was accepted")
      #expect(r.stderr.contains("apvirt cannot serve a guest"), "\(r.stderr)")
    }
    #expect(try run("/bin/ls", [d.runtime + "/guests"]).stdout == "ok\n")
    let r = try run(
      apvirtBinary, ["exec", "--mount", d.mount, "--state", d.state, "--guest", "../sys", "--", "true"])
    #expect(r.status != 0 && r.stderr.contains("--guest ../sys"), "\(r.stderr)")
  }

  /// Finding 10: `apvirt qemu` does not exit 0 when the host goes under its guest.
  @Test func theGuestsProcessExitsNonZeroWhenTheHostGoes() throws {
    for kill in [false, true] {
      let d = try Daemon()
      let g = try GuestProcess(d, ["-name", "g", "-cpu", "host"])
      for _ in 0..<100 where !((try? d.apvirt(["status"]))?.stdout.contains("guest g") ?? false) {
        usleep(50_000)
      }
      if kill { d.kill9() } else { d.stop() }
      let (exited, status, text) = g.finish()
      #expect(exited, "apvirt qemu outlived its host")
      #expect(status == 1)
      #expect(
        text.contains(kill ? "lost the apvirt host" : "the apvirt host at \(d.mount) stopped"), "\(text)")
    }
  }

  /// Finding 4: a failed accept (EMFILE) does not end the accept loop. The daemon runs with few
  /// descriptors; clients take them all; once they go, the daemon serves again.
  @Test func theControlSocketSurvivesEMFILE() throws {
    let d = try Daemon(wrapper: ["/usr/bin/prlimit", "--nofile=48:48", "--"])
    var held: [JSONLineClient] = []
    for _ in 0..<40 {
      guard let c = try? JSONLineClient(path: d.runtime + "/control.sock", timeout: 1) else { break }
      held.append(c)
    }
    // Some of these were never accepted: the daemon had no descriptor left.
    let first = held[held.count - 1]
    first.send(#"{"execute": "status"}"# + "\n")
    #expect(first.line() == nil, "expected the daemon to be out of descriptors")
    for c in held { c.close() }
    held = []
    usleep(300_000)
    let r = try d.apvirt(["status"])
    #expect(r.status == 0, "the control socket no longer serves after EMFILE: \(r.stderr)")
    #expect(try d.bash("cat /sys/bus/ap/bindings").status == 0)
  }

  /// Findings 5 and 6: under umask 000 the daemon's files are still its own; a second daemon on
  /// the same directories, under any name, is refused and harms nothing.
  @Test func anUnprivilegedUserReachesNothingAndASecondDaemonIsRefused() throws {
    let d = try Daemon(wrapper: ["/bin/sh", "-c", "umask 000; exec \"$0\" \"$@\""])
    func mode(_ p: String) -> mode_t {
      var st = stat()
      return lstat(p, &st) == 0 ? st.st_mode & 0o7777 : 0
    }
    #expect(mode(d.runtime) == 0o700)
    #expect(mode(d.runtime + "/control.sock") == 0o600)
    #expect(mode(d.runtime + "/dmesg") & 0o077 == 0, "the kernel log is readable by others")
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"]
    var r = try run("/usr/bin/setpriv", nobody + [apvirtBinary, "status", "--mount", d.mount])
    #expect(r.status != 0 && r.stderr.contains("permission denied"), "\(r.stderr)")
    r = try run("/usr/bin/setpriv", nobody + ["/bin/sh", "-c", "echo 5 > \(d.mount)/bus/ap/apmask"])
    #expect(r.status != 0)
    r = try run("/usr/bin/setpriv", nobody + ["/bin/ls", d.runtime])
    #expect(r.status != 0)
    // Nobody naming a root file as a guest's QMP socket cannot make the daemon delete it: nobody
    // cannot reach the daemon at all, and root's own request leaves a non-socket alone.
    let precious = d.root + "/../precious-\(UUID().uuidString.prefix(6))"
    FileManager.default.createFile(atPath: precious, contents: Data("keep".utf8))
    defer { unlink(precious) }
    r = try qemu(
      d, ["-daemonize", "-name", "q", "-cpu", "host", "-qmp", "unix:\(precious),server=on,wait=off"])
    #expect(r.status == 1 && r.stderr.contains("not a socket"), "\(r.stderr)")
    #expect((try? String(contentsOfFile: precious, encoding: .utf8)) == "keep")
    r = try qemu(
      d,
      [
        "-daemonize", "-name", "q", "-cpu", "host", "-qmp",
        "unix:\(d.runtime)/control.sock,server=on,wait=off",
      ])
    #expect(r.status == 1 && r.stderr.contains("Address already in use"), "\(r.stderr)")
    #expect(try d.apvirt(["status"]).status == 0)

    // A second daemon: same mount through //, a sibling mount in the same directory, a link.
    let link = d.root + "-link"
    try? FileManager.default.removeItem(atPath: link)
    try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: d.runtime)
    defer { unlink(link) }
    for mount in ["/" + d.mount, d.runtime + "//sys/", d.runtime + "/other", link + "/sys"] {
      r = try run(apvirtBinary, ["up", "--mount", mount, "--state", d.root + "/state2"])
      #expect(r.status != 0, "a second daemon started on \(mount)")
      #expect(r.stderr.contains("another apvirt up (pid \(d.process!.processIdentifier))"), "\(r.stderr)")
    }
    // The same state directory under another runtime directory.
    let other = "/tmp/apvirt-second-\(UUID().uuidString.prefix(6))"
    defer { try? FileManager.default.removeItem(atPath: other) }
    r = try run(apvirtBinary, ["up", "--mount", other + "/sys", "--state", d.state + "/."])
    #expect(r.status != 0 && r.stderr.contains("as its state directory"), "\(r.stderr)")
    // The first daemon is whole: its socket, its mount, its pid file.
    #expect(try d.apvirt(["status"]).status == 0)
    #expect(
      (try? String(contentsOfFile: d.runtime + "/apvirt.pid", encoding: .utf8))
        == "\(d.process!.processIdentifier)\n")
  }
}
