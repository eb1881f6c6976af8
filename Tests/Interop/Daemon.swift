import FUSE
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The `apvirt` executable next to the test bundle (`.build/debug/apvirt`).
let apvirtBinary: String = {
  let candidates = [
    URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(
      "apvirt"
    ).path,
    FileManager.default.currentDirectoryPath + "/.build/debug/apvirt",
  ]
  return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[0]
}()

struct CommandResult {
  var status: Int32
  var stdout: String
  var stderr: String
}

/// Runs a program and collects its output.
@discardableResult
func run(_ program: String, _ args: [String], stdin: String? = nil, environment: [String: String]? = nil)
  throws
  -> CommandResult
{
  let p = Process()
  p.executableURL = URL(fileURLWithPath: program)
  p.arguments = args
  if let environment { p.environment = environment }
  let out = Pipe()
  // stderr goes to a file so that the two streams cannot block each other.
  let errPath = NSTemporaryDirectory() + "apvirt-stderr-\(UUID().uuidString)"
  FileManager.default.createFile(atPath: errPath, contents: nil)
  defer { try? FileManager.default.removeItem(atPath: errPath) }
  let errHandle = FileHandle(forWritingAtPath: errPath)!
  p.standardOutput = out
  p.standardError = errHandle
  let input = Pipe()
  p.standardInput = input
  try p.run()
  if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
  try input.fileHandleForWriting.close()
  let outData = out.fileHandleForReading.readDataToEndOfFile()
  p.waitUntilExit()
  try errHandle.close()
  let errText = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
  return CommandResult(
    status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: errText)
}

/// A running `apvirt up` on private directories, stopped at the end of the test.
final class Daemon {
  let root: String
  let mount: String
  /// The daemon's runtime directory (its control socket, kernel log, guests' mount).
  let runtime: String
  let state: String
  var process: Process?
  /// A program and its arguments that run `apvirt up` (`prlimit --nofile=...`, a shell that sets
  /// a umask first); empty runs it directly.
  var wrapper: [String] = []
  var log: String { (try? String(contentsOfFile: root + "/up.log", encoding: .utf8)) ?? "" }

  /// The log once it holds `text`, or as it is after 5 s: a store's line comes a few
  /// milliseconds after its reply, as a journal's does.
  func log(waitingFor text: String) -> String {
    for _ in 0..<500 {
      let l = log
      if l.contains(text) { return l }
      usleep(10_000)
    }
    return log
  }

  /// More options for `apvirt up` (`--udev-events`).
  var options: [String] = []

  init(state: String? = nil, wrapper: [String] = [], options: [String] = []) throws {
    self.wrapper = wrapper
    self.options = options
    root = "/tmp/apvirt-test-\(UUID().uuidString.prefix(8))"
    // The runtime directory is the daemon's alone: the test's own files stay beside it.
    runtime = root + "/run"
    mount = runtime + "/sys"
    self.state = state ?? root + "/state"
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    try start()
  }

  /// Starts the daemon and waits until `bus/ap/apmask` can be read.
  func start() throws {
    let p = Process()
    let command = [apvirtBinary, "up", "--mount", mount, "--state", state] + options
    let argv = wrapper + command
    p.executableURL = URL(fileURLWithPath: argv[0])
    p.arguments = Array(argv.dropFirst())
    FileManager.default.createFile(atPath: root + "/up.log", contents: nil)
    let log = FileHandle(forWritingAtPath: root + "/up.log")!
    log.seekToEndOfFile()
    p.standardOutput = log
    p.standardError = log
    // Ready when the log says so: after boot, udev's mdevctl included (which runs against the
    // mount once it is up).
    let readyBefore = self.log.components(separatedBy: "; ready").count
    try p.run()
    process = p
    for _ in 0..<400 {
      if FileManager.default.isReadableFile(atPath: mount + "/bus/ap/apmask"),
        (try? String(contentsOfFile: mount + "/bus/ap/apmask", encoding: .utf8)) != nil,
        self.log.components(separatedBy: "; ready").count > readyBefore
      {
        return
      }
      if !p.isRunning { break }
      usleep(50_000)
    }
    throw DaemonError(description: "apvirt up did not become ready:\n\(self.log)")
  }

  /// Stops with `apvirt down` and waits for the process.
  func stop() {
    guard let p = process else { return }
    _ = try? run(apvirtBinary, ["down", "--mount", mount])
    for _ in 0..<100 where p.isRunning { usleep(50_000) }
    if p.isRunning {
      Issue.record("apvirt down did not stop the daemon within 5 s")
      p.terminate()
      for _ in 0..<100 where p.isRunning { usleep(50_000) }
      if p.isRunning { Glibc.kill(p.processIdentifier, SIGKILL) }
    }
    p.waitUntilExit()
    process = nil
    // The daemon must have stopped on its own, cleanly, and taken its mounts with it.
    if p.terminationReason == .uncaughtSignal {
      Issue.record("apvirt up died of signal \(p.terminationStatus):\n\(log)")
    }
    let mounts = FUSEMount.readProcFile("/proc/self/mountinfo") ?? ""
    for m in [mount, runtime + "/guests"] where mounts.contains(" \(m) ") {
      Issue.record("\(m) is still mounted after apvirt down")
      _ = umount2(m, Int32(MNT_DETACH))
    }
  }

  /// Kills the daemon without letting it clean up.
  func kill9() {
    guard let p = process else { return }
    Glibc.kill(p.processIdentifier, SIGKILL)
    p.waitUntilExit()
    process = nil
  }

  /// `apvirt exec --mount ... --state ... -- args`
  @discardableResult
  func exec(_ args: [String], stdin: String? = nil) throws -> CommandResult {
    try run(apvirtBinary, ["exec", "--mount", mount, "--state", state, "--"] + args, stdin: stdin)
  }

  /// A bash script inside the emulated host's view.
  @discardableResult
  func bash(_ script: String) throws -> CommandResult {
    try exec(["/bin/bash", "-c", script])
  }

  /// A daemon that sends its uevents (`--udev-events`) in a network namespace of its own, so that
  /// only the listeners a test starts in it (``inItsNetwork(_:)``) receive them: the messages
  /// reach every libudev listener in the sender's network namespace, and tests run side by side.
  static func sendingUEvents() throws -> Daemon {
    try Daemon(wrapper: ["/usr/bin/unshare", "--net"], options: ["--udev-events"])
  }

  /// `argv` run in the daemon's network namespace (`unshare --net` execs `apvirt up`, so the
  /// process is the daemon).
  func inItsNetwork(_ argv: [String]) -> [String] {
    guard let pid = process?.processIdentifier else { return argv }
    return ["/usr/bin/nsenter", "--net=/proc/\(pid)/ns/net", "--"] + argv
  }

  func apvirt(_ args: [String]) throws -> CommandResult {
    try run(apvirtBinary, args + ["--mount", mount])
  }

  deinit {
    stop()
    // A daemon killed without cleaning up (``kill9()``) and not started again leaves its mounts,
    // dead: they go too, or the test's directory would stay behind with them.
    let mounts = FUSEMount.readProcFile("/proc/self/mountinfo") ?? ""
    for m in [mount, runtime + "/guests"] where mounts.contains(" \(m) ") {
      _ = umount2(m, Int32(MNT_DETACH))
    }
    try? FileManager.default.removeItem(atPath: root)
  }
}

/// A guest's QEMU process, `apvirt qemu ARGS` in the foreground against `d`.
final class GuestProcess {
  let process = Process()
  let stderr = Pipe()

  init(_ d: Daemon, _ args: [String]) throws {
    process.executableURL = URL(fileURLWithPath: apvirtBinary)
    process.arguments = ["qemu"] + args
    process.environment = ProcessInfo.processInfo.environment.merging(["APVIRT_MOUNT": d.mount]) { $1 }
    process.standardError = stderr
    try process.run()
  }

  /// Waits (at most 10 s, then kills it) and returns its exit status and what it printed.
  func finish() -> (exited: Bool, status: Int32, stderr: String) {
    let exited = waitForExit(process)
    if process.isRunning { process.terminate() }
    process.waitUntilExit()
    let text = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return (exited, process.terminationStatus, text)
  }
}

/// Waits at most `seconds` for a process to exit; true if it did. One that did not is killed
/// (SIGKILL) and reaped, so that a failed test leaves no process behind and its status can be
/// read without Foundation trapping on a running process.
func waitForExit(_ p: Process, seconds: Double = 10) -> Bool {
  for _ in 0..<Int(seconds * 20) where p.isRunning { usleep(50_000) }
  if p.isRunning {
    Glibc.kill(p.processIdentifier, SIGKILL)
    p.waitUntilExit()
    return false
  }
  p.waitUntilExit()
  return true
}

/// A program the interop tests drive, and the Debian or PyPI package that brings it. A test of
/// it is skipped where it is missing, with the package named; the `...IsInstalled` tests fail
/// there instead, so that CI, which installs them all, cannot skip them silently.
enum Requirement {
  static let mdevctl = FileManager.default.isExecutableFile(atPath: "/usr/bin/mdevctl")
  static let mdevctlMissing: Comment = "needs mdevctl (Debian package mdevctl: apt-get install mdevctl)"

  static let qemuQMP: Bool = {
    (try? run("/usr/bin/env", ["python3", "-c", "import qemu.qmp"]).status) == 0
  }()
  static let qemuQMPMissing: Comment = "needs the Python package qemu.qmp (pip install qemu.qmp)"

  static let libvirt =
    FileManager.default.isExecutableFile(atPath: "/usr/sbin/libvirtd")
    && FileManager.default.isExecutableFile(atPath: "/usr/bin/virsh")
  static let libvirtMissing: Comment =
    "needs libvirt (Debian packages libvirt-daemon, libvirt-daemon-driver-qemu, libvirt-clients)"
}

struct DaemonError: Error, CustomStringConvertible {
  var description: String
}
