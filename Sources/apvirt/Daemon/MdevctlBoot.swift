import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// What udev runs on a real host when the matrix parent registers (`MDEV_STATE=registered`):
/// mdevctl's own `start-parent-mdevs matrix`, with whatever callouts
/// (`/etc/mdevctl.d/scripts.d/callouts`, s390-tools' ap-check among them) are installed, here
/// inside `apvirt exec` so that it sees the emulated host as `/sys` and the state's mdevctl
/// definitions as `/etc/mdevctl.d`.
///
/// It needs root (exec builds a mount namespace) and Debian's mdevctl; without either the
/// daemon replays the definitions itself (``MdevctlDefinitions``), as before.
struct MdevctlBoot {
  let paths: RuntimePaths
  /// Where distributions install it (Debian: /usr/bin; udev's rule calls /usr/sbin elsewhere).
  static let mdevctl = ["/usr/sbin/mdevctl", "/usr/bin/mdevctl"].first {
    FileManager.default.isExecutableFile(atPath: $0)
  }

  /// Whether the real mdevctl can run for this daemon.
  static var available: Bool { geteuid() == 0 && mdevctl != nil }

  /// Runs `mdevctl start-parent-mdevs matrix` and says, per auto-start definition, whether its
  /// mdev runs now, with what mdevctl printed about it.
  func run(timeout: Duration = .seconds(60)) -> [(text: String, failed: Bool)] {
    let (status, output) = Self.spawn(
      [
        Self.selfExecutable, "exec", "--mount", paths.mount, "--state", paths.state, "--",
        Self.mdevctl ?? "mdevctl",
        "start-parent-mdevs", "matrix",
      ], timeout: timeout)
    let (defs, problems) = MdevctlDefinitions(directory: paths.mdevctlDirectory).definitions()
    var lines: [(String, Bool)] = problems.map { ($0, true) }
    if !problems.isEmpty {
      lines.append(("no mdev of parent matrix started: mdevctl fails on the definition(s) above", true))
    }
    let said = output.split(separator: "\n").map(String.init)
    for d in defs where d.autoStart {
      if FileManager.default.fileExists(atPath: paths.mount + "/devices/vfio_ap/matrix/" + d.uuid) {
        lines.append(("\(d.uuid): started", false))
      } else {
        let about = said.filter { $0.lowercased().contains(d.uuid) }
        let why = (about.isEmpty ? said.suffix(2) : about[...]).joined(separator: "; ")
        lines.append(("\(d.uuid): not started\(why.isEmpty ? "" : ", mdevctl: " + why)", true))
      }
    }
    if status != 0 && lines.allSatisfy({ !$0.1 }) {
      lines.append(
        ("mdevctl start-parent-mdevs exited \(status): \(said.suffix(2).joined(separator: "; "))", true))
    }
    return lines
  }

  /// This program, to run `apvirt exec` with.
  static var selfExecutable: String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
  }

  /// Runs `argv` with stdin from /dev/null and stdout and stderr into one pipe; returns its exit
  /// status (-1 on a timeout, after SIGKILL) and what it printed. posix_spawn and waitpid, not
  /// Foundation's Process, whose waiting would also wait for descriptors inherited by children.
  static func spawn(_ argv: [String], timeout: Duration) -> (Int32, String) {
    var fds: [Int32] = [0, 0]
    guard pipe(&fds) == 0 else { return (-1, "pipe: \(String(cString: strerror(errno)))") }
    _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
    _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
    var pid: pid_t = 0
    var cargs = argv.map { strdup($0) } + [nil]
    defer { for a in cargs { free(a) } }
    let rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
    close(fds[1])
    guard rc == 0 else {
      close(fds[0])
      return (-1, "\(argv[0]): \(String(cString: strerror(rc)))")
    }
    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    let deadline = ContinuousClock.now + timeout
    var pfd = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
    while ContinuousClock.now < deadline {
      if poll(&pfd, 1, 100) > 0 {
        let n = buffer.withUnsafeMutableBytes { read(fds[0], $0.baseAddress, $0.count) }
        if n <= 0 { break }
        output += buffer[..<n]
      }
    }
    close(fds[0])
    var status: Int32 = 0
    var reaped = waitpid(pid, &status, WNOHANG)
    while reaped == 0 && ContinuousClock.now < deadline {
      usleep(10_000)
      reaped = waitpid(pid, &status, WNOHANG)
    }
    if reaped == 0 {
      kill(pid, SIGKILL)
      waitpid(pid, &status, 0)
      return (-1, String(decoding: output, as: UTF8.self) + "\n(timed out)")
    }
    let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return (exit, String(decoding: output, as: UTF8.self))
  }
}
