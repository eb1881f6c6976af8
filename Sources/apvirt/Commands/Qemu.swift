import ArgumentParser
import Foundation
import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// `apvirt qemu ARGS...`, also reachable as `qemu-system-s390x ARGS...` (a link to apvirt).
struct Qemu: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Start a guest on the running host, as qemu-system-s390x would.",
    discussion: """
      Takes QEMU's command line: -name, -machine s390-ccw-virtio, -cpu host|z13|z14|z15|z16 with \
      ap=on|off,apqci=...,apft=...,apqi=..., -smp, -m, -device vfio-ap,sysfsdev=PATH[,id=ID] (or \
      libvirt's JSON form), -qmp unix:PATH,server=on,wait=off, -chardev socket,id=X,path=PATH, \
      server=on,wait=off with -mon chardev=X,mode=control, -nographic, -daemonize, -pidfile PATH, \
      -no-user-config, -accel, -S, -no-shutdown, and libvirt's command line: -chardev socket with \
      fd=N (the monitor socket the caller passed, which this process hands to the daemon), \
      -chardev pty, -uuid, -object, -overcommit, -rtc, -boot, -audiodev, -sandbox, -msg, -blockdev \
      (these last change nothing apvirt emulates), and the devices of an ordinary domain, inert: \
      virtio-balloon-ccw, sclpconsole, virtio-blk-ccw.

      -version, -machine help, -cpu help, -device help and -device vfio-ap,help print what QEMU \
      prints for the emulated version (the machines, CPU models, AP features and devices apvirt \
      takes) and exit 0, needing no host.

      A guest's name (-name NAME or guest=NAME,...) becomes the directory RUNTIME/guests/NAME \
      that apvirt exec --guest NAME enters: it must be a file name (no '/', not empty, not \
      starting with '.', no control characters). sysfsdev may name the mdev under /sys or under \
      the host's mount (/run/apvirt/sys/bus/mdev/devices/$UUID).

      -machine none starts no guest and needs no host: the monitor answers what the binary can \
      do (versions, machine types, CPU models and their AP features, the vfio-ap device type), \
      which is how libvirt probes an emulator's capabilities.

      -daemonize leaves the emulator process in the background (a session of its own, its pid in \
      -pidfile) once its monitor is ready, and returns; that process lives as long as its guest, \
      and SIGTERM or SIGKILL to it ends the guest, as with QEMU.

      The guest runs in the daemon (`apvirt up`) next to the host kernel; this command stays in \
      the foreground until the guest quits (QMP `quit`), like QEMU. Killing it kills the guest; \
      SIGTERM, SIGINT and SIGHUP print QEMU's "terminating on signal N from pid P (COMMAND)" and \
      exit 0. When the host stops (apvirt down) or dies under the guest, it says so and exits 1. \
      A link named qemu-system-s390x to apvirt runs this command directly, for libvirt and \
      scripts. APVIRT_MOUNT names the daemon's mount; APVIRT_QEMU_VERSION (default 10.2.0) the \
      QEMU version emulated, 3.1 to 10.2, which decides the QMP greeting and version-dependent \
      behaviour (the config-change IRQ from 10.1, the ap-bus-full message from 10.2).

        apvirt qemu -name guest1 -cpu host \\
          -qmp unix:/tmp/guest1.qmp,server=on,wait=off \\
          -device vfio-ap,id=hostdev0,sysfsdev=/sys/bus/mdev/devices/$UUID
      """)

  @Argument(parsing: .captureForPassthrough, help: "QEMU's arguments.")
  var arguments: [String] = []

  func run() throws {
    var argv = arguments
    // QEMU prints its help for -h and --help alone; this prints its manual.
    if argv == ["--help"] || argv == ["-h"] || argv == ["-help"] { throw CleanExit.helpRequest(self) }
    if argv.first == "--" { argv.removeFirst() }
    let env = ProcessInfo.processInfo.environment
    let paths = RuntimePaths(mount: RuntimePaths.environmentMount)
    let version = env["APVIRT_QEMU_VERSION"] ?? QEMUVersion.current.description
    let prog = QEMUCommandLine.programName
    if let problem = QEMUVersion.problem(version) {
      FileHandle.standardError.write(Data("\(prog): APVIRT_QEMU_VERSION=\(version): \(problem)\n".utf8))
      throw ExitCode(1)
    }
    // QEMU's own errors come before any host is involved.
    let config: GuestConfiguration
    do {
      config = try QEMUCommandLine.parse(argv, version: QEMUVersion(version)!)
    } catch {
      FileHandle.standardError.write(Data("\(error)\n".utf8))
      throw ExitCode(1)
    }
    // -version, -machine help, -cpu help, -device help: printed, and nothing starts.
    if let text = config.information {
      FileHandle.standardOutput.write(Data(text.utf8))
      if let e = config.informationError { FileHandle.standardError.write(Data("\(prog): \(e)\n".utf8)) }
      return
    }
    let daemonized = config.daemonize && env[Self.daemonizedVariable] != nil
    if config.daemonize && !daemonized {
      throw ExitCode(Self.daemonize(argv, keeping: Set(config.monitorDescriptors)))
    }
    // SIGTERM, SIGINT and SIGHUP end this process as they end QEMU: it says so, and its guest
    // ends with its connection to the host.
    Self.terminateOnSignals(
      removing: (daemonized ? config.pidfile.map { [$0] } ?? [] : [])
        + (config.isMachineNone ? config.qmpSockets : []))
    if config.isMachineNone {
      try Self.serveMachineNone(config, version: QEMUVersion(version)!, daemonized: daemonized)
      return
    }
    let control = ControlClient(paths: paths)
    func fail(_ message: String) -> ExitCode {
      FileHandle.standardError.write(Data("\(prog): \(message)\n".utf8))
      return ExitCode(1)
    }
    var client: JSONStreamClient
    do {
      client = try control.connect(timeout: 30)
    } catch {
      throw fail("\(error)")
    }
    // The monitor sockets the caller gave this process go to the daemon, which serves them.
    let passed = client.sendLine(
      ControlWire.encode(ControlCommands.GuestStart(argv: argv, version: version, daemonize: false)),
      descriptors: config.monitorDescriptors)
    if !passed {
      throw fail("cannot pass the monitor sockets (fd=\(config.monitorDescriptors)) to the apvirt host")
    }
    // This process keeps its own copies until the answer: on a refusal the monitor must stay
    // open until QEMU's message is written, which is what the caller (libvirt) reads when it sees
    // the monitor close.
    let started: ControlCommands.GuestStart.Reply
    do {
      started = try ControlClient.reply(ControlCommands.GuestStart.self, &client, paths)
    } catch {
      // QEMU's own message (it carries the program name already).
      FileHandle.standardError.write(Data("\(error)\n".utf8))
      throw ExitCode(1)
    }
    for fd in config.monitorDescriptors { close(fd) }
    for w in started.warnings { FileHandle.standardError.write(Data("\(prog): \(w)\n".utf8)) }
    if daemonized { Self.detach(pidfile: config.pidfile) }
    // The guest lives as long as this process and this connection: wait for it without a
    // time-out. A daemon that stops or dies under the guest is not a clean shutdown: say so and
    // exit non-zero, so that whoever started QEMU (libvirt, a script) sees the guest crashed.
    client.clearTimeout()
    client.sendLine(ControlWire.encode(ControlCommands.GuestWait()))
    defer { if daemonized, let p = config.pidfile { unlink(p) } }
    let ended: ControlCommands.GuestWait.Reply
    do {
      ended = try ControlClient.reply(ControlCommands.GuestWait.self, &client, paths)
    } catch {
      // The connection closed without an answer: the daemon was killed or crashed.
      let why = "\(error)".contains("closed the connection") ? "apvirt up died or was killed" : "\(error)"
      throw fail(
        "terminating: lost the apvirt host at \(paths.mount) (\(why)); guest '\(started.name)' is gone")
    }
    if ended.reason == "host-stopped" {
      throw fail(
        "terminating: the apvirt host at \(paths.mount) stopped (apvirt down, or a signal to apvirt up); guest '\(started.name)' was stopped with it"
      )
    }
  }

  /// The pipe the signal handler writes to: the signal and its sender's pid.
  nonisolated(unsafe) static var signalPipe: [Int32] = [-1, -1]

  /// Installs QEMU's handlers for SIGTERM, SIGINT and SIGHUP (`termsig_handler`): the signal
  /// ends the process with status 0 after `qemu_kill_report`'s line, `terminating on signal N
  /// from pid P (COMMAND)` (`terminating on signal N` when the kernel sent it, as for ^C at the
  /// terminal). `files` are removed first (the pid file, the monitor sockets this process made).
  static func terminateOnSignals(removing files: [String]) {
    guard pipe(&signalPipe) == 0 else { return }
    for fd in signalPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    let reader = signalPipe[0]
    Thread.detachNewThread {
      var message: (Int32, Int32) = (0, 0)
      let n = withUnsafeMutableBytes(of: &message) { buffer in
        var got = 0
        while got < buffer.count {
          let r = read(reader, buffer.baseAddress! + got, buffer.count - got)
          if r < 0 && errno == EINTR { continue }
          if r <= 0 { break }
          got += r
        }
        return got
      }
      guard n == MemoryLayout<(Int32, Int32)>.size else { return }
      let (signal, sender) = message
      var line = "\(QEMUCommandLine.programName): terminating on signal \(signal)"
      if sender != 0 { line += " from pid \(sender) (\(commandName(sender) ?? "<unknown process>"))" }
      FileHandle.standardError.write(Data((line + "\n").utf8))
      for f in files { unlink(f) }
      Glibc.exit(0)
    }
    var action = sigaction()
    action.__sigaction_handler.sa_sigaction = { signal, info, _ in
      var message: (Int32, Int32) = (signal, info?.pointee._sifields._kill.si_pid ?? 0)
      _ = withUnsafeBytes(of: &message) { write(Qemu.signalPipe[1], $0.baseAddress, $0.count) }
    }
    action.sa_flags = SA_SIGINFO | SA_RESTART
    sigemptyset(&action.sa_mask)
    for s in [SIGTERM, SIGINT, SIGHUP] { sigaction(s, &action, nil) }
  }

  /// What QEMU's `qemu_get_pid_name` gives: the process's first argument, from
  /// `/proc/PID/cmdline`; nil when it is gone.
  static func commandName(_ pid: Int32) -> String? {
    guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"), !data.isEmpty else {
      return nil
    }
    return String(decoding: data.prefix { $0 != 0 }, as: UTF8.self)
  }

  /// Set in the emulator process that `-daemonize` starts: it signals its parent once ready.
  static let daemonizedVariable = "APVIRT_QEMU_DAEMONIZED"

  /// `-daemonize`: starts this command again as the emulator process, in a session of its own
  /// (`posix_spawn` with `POSIX_SPAWN_SETSID`: the child of a Foundation `Process` leads a
  /// process group and could not call setsid), and waits until it says its monitor is ready (a
  /// line on its standard output) or fails (its errors reach our standard error). Returns the
  /// exit status for the parent: 0 once the emulator is ready, the emulator's status if it
  /// ended first.
  static func daemonize(_ argv: [String], keeping descriptors: Set<Int32>) -> Int32 {
    let prog = QEMUCommandLine.programName
    var ready: [Int32] = [0, 0]
    guard pipe(&ready) == 0 else {
      FileHandle.standardError.write(
        Data("\(prog): cannot daemonize: \(String(cString: strerror(errno)))\n".utf8))
      return 1
    }
    _ = fcntl(ready[0], F_SETFD, FD_CLOEXEC)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_adddup2(&actions, ready[1], 1)
    posix_spawn_file_actions_addclose(&actions, ready[1])
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    let setsid: Int16 = 0x80  // POSIX_SPAWN_SETSID, which Glibc's module does not export
    posix_spawnattr_setflags(&attributes, setsid)
    // Named as QEMU, the child runs as this command (and its process shows QEMU's command line).
    let arguments = [prog] + argv
    var environment = ProcessInfo.processInfo.environment
    environment[daemonizedVariable] = "1"
    let cArguments = arguments.map { strdup($0) } + [nil]
    let cEnvironment = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
      for p in cArguments { free(p) }
      for p in cEnvironment { free(p) }
    }
    keepOnly(descriptors)
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, "/proc/self/exe", &actions, &attributes, cArguments, cEnvironment)
    close(ready[1])
    defer { close(ready[0]) }
    guard rc == 0 else {
      FileHandle.standardError.write(
        Data("\(prog): cannot daemonize: \(String(cString: strerror(rc)))\n".utf8))
      return 1
    }
    var line: [UInt8] = []
    var byte: UInt8 = 0
    while line.count < 6, read(ready[0], &byte, 1) == 1 { line.append(byte) }
    if line == Array("ready\n".utf8) { return 0 }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    // Exited with a status (WIFEXITED): that status, and 1 for any other end.
    let exited = status & 0x7f == 0
    let code = (status >> 8) & 0xff
    return exited && code != 0 ? code : 1
  }

  /// Lets the emulator inherit only the standard streams and the descriptors its command line
  /// passes on (the monitor sockets of `-chardev socket,fd=N`, as libvirt gives them): every other
  /// descriptor of this process is marked close-on-exec. QEMU keeps whatever it inherited; the
  /// caller's pipes and sockets would then stay open as long as the guest, and a caller that
  /// waits for them to close (Foundation's `Process` does, to see its child end) would wait that
  /// long.
  static func keepOnly(_ named: Set<Int32>) {
    guard let dir = opendir("/proc/self/fd") else { return }
    defer { closedir(dir) }
    var fds: [Int32] = []
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) {
        String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
      }
      if let fd = Int32(name), fd > 2, !named.contains(fd) { fds.append(fd) }
    }
    for fd in fds where fd != dirfd(dir) { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
  }

  /// The emulator process, ready: writes its pid file, tells the parent, and puts its standard
  /// streams on /dev/null, as QEMU's `os_daemonize` and `os_setup_post` do.
  static func detach(pidfile: String?) {
    if let pidfile { RuntimePaths.writeFile(pidfile, "\(getpid())\n", mode: 0o600) }
    FileHandle.standardOutput.write(Data("ready\n".utf8))
    let null = open("/dev/null", O_RDWR)
    if null >= 0 {
      for fd: Int32 in [0, 1, 2] { dup2(null, fd) }
      if null > 2 { close(null) }
    }
  }

  /// `-machine none`: serves the monitor sockets in this process until `quit` (or a signal).
  static func serveMachineNone(_ config: GuestConfiguration, version: QEMUVersion, daemonized: Bool) throws {
    let prog = QEMUCommandLine.programName
    let target = MachineNone(version: version, kvm: MachineNone.usesKVM(accelerators: config.accelerators))
    let pidfile = config.pidfile
    let sockets = config.qmpSockets
    // After `quit` the reply goes out, the connection closes, and the process ends; QEMU
    // removes its pid file when it ends.
    let serve: @Sendable (JSONStreamServer.Connection) -> Void = { c in
      QMPSession(target: target).serve(c)
      guard target.isQuit else { return }
      c.close()
      if daemonized, let pidfile { unlink(pidfile) }
      for path in sockets { unlink(path) }
      Glibc.exit(0)
    }
    var servers: [JSONStreamServer] = []
    for path in config.qmpSockets {
      do {
        servers.append(try JSONStreamServer(path: path, mode: 0o600))
      } catch {
        FileHandle.standardError.write(Data("\(prog): -qmp unix:\(path): \(error)\n".utf8))
        throw ExitCode(1)
      }
    }
    if daemonized { detach(pidfile: config.pidfile) }
    for server in servers.dropFirst() {
      Thread.detachNewThread { server.run(serve) }
    }
    if let first = servers.first {
      first.run(serve)
    } else {
      // No monitor: nothing to ask, the process waits to be killed, as QEMU would.
      while true { pause() }
    }
  }
}
