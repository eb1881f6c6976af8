import ArgumentParser
import Foundation
import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// `apvirt exec -- CMD ARGS...`
struct Exec: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run a command that sees the emulated host as its /sys and /etc/mdevctl.d.",
    discussion: """
      CMD runs in a private mount namespace whose /sys is the host's, with the emulated \
      tree's nodes (/sys/bus/ap, /sys/devices/ap, /sys/devices/vfio_ap, /sys/bus/mdev, \
      /sys/class/mdev_bus, /sys/kernel/iommu_groups, ...) bound in their places, \
      STATE/etc/mdevctl.d over /etc/mdevctl.d, and the host's vfio nodes (/dev/vfio/vfio, \
      /dev/vfio/N for each IOMMU group, kept current while the host runs) at /dev/vfio, \
      so that unmodified tools (mdevctl, lszcrypt, udevadm, libvirt, shell scripts, \
      Ansible modules) behave as on the LPAR. The exit status is CMD's. Needs root.

      CMD's environment has SYSTEMD_DEVICE_VERIFY_SYSFS=0: libudev (udevadm, libvirt) \
      otherwise refuses a /sys that is not a sysfs mount, as the emulated nodes (a FUSE \
      tree) are not. The vfio nodes can be stat'ed, chowned and allowed in a device \
      cgroup, opened and locked (as libvirt does); there is no vfio behind them, so a group \
      node is the null device (1:3) under the group's name.

      --private DIR (repeatable) puts STATE/private/DIR over DIR, so that a daemon run \
      here keeps its sockets, configuration and state apart from the machine's, and every \
      exec naming the same DIR shares them. The runtime directory stays reachable.

        apvirt exec -- mdevctl types
        apvirt exec -- sh -c 'echo -5 > /sys/bus/ap/apmask'
        apvirt exec -- udevadm info -q property -p /devices/ap/card05

      libvirt's node devices against the host (start it with --udev-events, so that \
      libvirt sees devices come and go; libvirtd needs the user libvirt-qemu, which \
      Debian's libvirt-daemon-system creates):

        L="--private /run --private /etc/libvirt --private /var/lib/libvirt"
        L="$L --private /var/log/libvirt --private /var/cache/libvirt"
        apvirt exec $L -- libvirtd --daemon
        apvirt exec $L -- virsh nodedev-list --cap ap_matrix
        apvirt exec $L -- virsh nodedev-dumpxml ap_05_0004
      """)

  @Option(name: .long, help: "The daemon's sysfs mount.")
  var mount: String = RuntimePaths.environmentMount

  @Option(name: .long, help: "The daemon's state directory.")
  var state: String = RuntimePaths.environmentState

  @Option(name: .long, help: "Run with this guest's view (its own /sys/bus/ap and /sys/devices/ap) instead.")
  var guest: String?

  @Option(
    name: .long,
    help: ArgumentHelp(
      "Give CMD its own DIR: STATE/private/DIR, shared by every exec naming DIR.", valueName: "DIR"))
  var `private`: [String] = []

  @Argument(parsing: .captureForPassthrough, help: "The command and its arguments.")
  var command: [String] = []

  /// The variable by which libudev skips its check that /sys is a sysfs mount.
  static let verifySysfsVariable = "SYSTEMD_DEVICE_VERIFY_SYSFS"

  /// `unshare(CLONE_NEWNS)`. Glibc's module map hides `unshare` (it needs _GNU_SOURCE), so the
  /// symbol is looked up at run time.
  static func unshareMountNamespace() -> Int32 {
    typealias Unshare = @convention(c) (Int32) -> Int32
    guard let sym = dlsym(nil, "unshare") else {
      errno = ENOSYS
      return -1
    }
    let cloneNewNS: Int32 = 0x0002_0000
    return unsafeBitCast(sym, to: Unshare.self)(cloneNewNS)
  }

  /// Builds the namespace's /sys: the host's real sysfs, with the emulated tree's nodes bound in
  /// place of (or beside) the real ones at the second level (`bus/ap`, `bus/mdev`, `devices/ap`,
  /// `devices/vfio_ap`, `class/mdev_bus`, `kernel/iommu_groups`, ...), so that tools find the emulated AP world and
  /// everything else where it always is. A tmpfs holds the composition; the real sysfs is
  /// reached through a bind at `scratch`.
  static func composeSys(emulated: String, scratch: String, check: (Int32, String) throws -> Void) throws {
    let fm = FileManager.default
    try fm.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    try check(Glibc.mount("/sys", scratch, nil, UInt(MS_BIND | MS_REC), nil), "binding the real /sys")
    try check(Glibc.mount("tmpfs", "/sys", "tmpfs", 0, "mode=755"), "mounting a tmpfs over /sys")
    func isDirectory(_ p: String) -> Bool {
      var d: ObjCBool = false
      return fm.fileExists(atPath: p, isDirectory: &d) && d.boolValue
    }
    func bind(_ source: String, _ target: String) throws {
      if isDirectory(source) {
        try fm.createDirectory(atPath: target, withIntermediateDirectories: true)
      } else if !fm.fileExists(atPath: target) {
        _ = fm.createFile(atPath: target, contents: nil)
      }
      try check(
        Glibc.mount(source, target, nil, UInt(MS_BIND | MS_REC), nil), "binding \(source) at \(target)")
    }
    let emulatedTop = Set((try? fm.contentsOfDirectory(atPath: emulated)) ?? [])
    for top in ((try? fm.contentsOfDirectory(atPath: scratch)) ?? []) where !emulatedTop.contains(top) {
      try bind(scratch + "/" + top, "/sys/" + top)
    }
    for top in emulatedTop {
      try fm.createDirectory(atPath: "/sys/" + top, withIntermediateDirectories: true)
      let emulatedChildren = Set((try? fm.contentsOfDirectory(atPath: emulated + "/" + top)) ?? [])
      for child in ((try? fm.contentsOfDirectory(atPath: scratch + "/" + top)) ?? [])
      where !emulatedChildren.contains(child) {
        try bind(scratch + "/" + top + "/" + child, "/sys/" + top + "/" + child)
      }
      for child in emulatedChildren {
        try bind(emulated + "/" + top + "/" + child, "/sys/" + top + "/" + child)
      }
    }
  }

  /// A directory that `--private` replaces, and the directory in the state that replaces it.
  struct PrivateDirectory: Equatable {
    var target: String
    var source: String
  }

  /// Checks and orders the `--private` directories: absolute paths without `.` or `..`, none of
  /// `/`, `/sys`, `/proc`, `/dev` (or inside them) or of apvirt's own directories, each named
  /// once; a parent comes before what is inside it, so that both can be private.
  static func privateDirectories(_ dirs: [String], paths: RuntimePaths) throws -> [PrivateDirectory] {
    var result: [PrivateDirectory] = []
    for dir in dirs {
      guard dir.hasPrefix("/") else {
        throw ValidationError("--private \(dir): not an absolute path")
      }
      let parts = dir.split(separator: "/").map(String.init)
      if parts.contains(where: { $0 == "." || $0 == ".." }) {
        throw ValidationError("--private \(dir): a path without . or .. components")
      }
      // A directory that exists is named by its real path (/var/run is /run).
      let lexical = "/" + parts.joined(separator: "/")
      let target = RuntimePaths.resolve(lexical) ?? lexical
      func within(_ base: String) -> Bool { target == base || target.hasPrefix(base + "/") }
      if target == "/" || ["/sys", "/proc", "/dev"].contains(where: within) {
        throw ValidationError("--private \(dir): / , /sys, /proc and /dev are apvirt exec's to build")
      }
      let own = [paths.runtime, paths.state].map { RuntimePaths.resolve($0) ?? $0 }
      if own.contains(where: within) || target == "/etc/mdevctl.d" {
        throw ValidationError("--private \(dir): that is the emulated host's own directory")
      }
      if result.contains(where: { $0.target == target }) {
        throw ValidationError("--private \(dir): given twice")
      }
      result.append(PrivateDirectory(target: target, source: paths.privateRoot + target))
    }
    return result.sorted { $0.target.count < $1.target.count }
  }

  /// Binds a private directory over its target (both created when missing). When the runtime
  /// directory lies inside the target, it is bound into the private copy first, so that the
  /// control socket and the mount stay where they were.
  static func bindPrivate(_ p: PrivateDirectory, paths: RuntimePaths, check: (Int32, String) throws -> Void)
    throws
  {
    let fm = FileManager.default
    try fm.createDirectory(atPath: p.source, withIntermediateDirectories: true)
    try fm.createDirectory(atPath: p.target, withIntermediateDirectories: true)
    let runtime = RuntimePaths.resolve(paths.runtime) ?? paths.runtime
    if runtime.hasPrefix(p.target + "/") {
      let inside = p.source + runtime.dropFirst(p.target.count)
      try fm.createDirectory(atPath: inside, withIntermediateDirectories: true)
      try check(
        Glibc.mount(runtime, inside, nil, UInt(MS_BIND | MS_REC), nil), "binding \(runtime) at \(inside)")
    }
    try check(
      Glibc.mount(p.source, p.target, nil, UInt(MS_BIND | MS_REC), nil),
      "binding \(p.source) over \(p.target)")
  }

  /// Binds the host's vfio nodes at /dev/vfio, device nodes allowed on the bind. A host whose
  /// daemon could not make them (no CAP_MKNOD) has none, and /dev is left alone. /dev/vfio is
  /// created on the machine's /dev when it has none (an empty directory).
  static func bindVFIONodes(paths: RuntimePaths, check: (Int32, String) throws -> Void) throws {
    let nodes = paths.vfioDevices
    var st = stat()
    guard stat(nodes + "/vfio", &st) == 0, st.st_mode & S_IFMT == S_IFCHR else { return }
    try FileManager.default.createDirectory(atPath: "/dev/vfio", withIntermediateDirectories: true)
    try check(Glibc.mount(nodes, "/dev/vfio", nil, UInt(MS_BIND), nil), "binding \(nodes) at /dev/vfio")
    // The runtime directory's file system may be nodev (/run usually is); the bind need not be.
    _ = Glibc.mount(nil, "/dev/vfio", nil, UInt(MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NOEXEC), nil)
  }

  /// Makes the host's runtime directory the default one (`/run/apvirt`) in the namespace, so that
  /// what runs there finds the host without being told: `apvirt hw`, `apvirt status`, and the
  /// `qemu-system-s390x` that libvirt starts with an environment of its own.
  static func bindRuntimeAtDefault(paths: RuntimePaths, check: (Int32, String) throws -> Void) throws {
    let runtime = RuntimePaths.resolve(paths.runtime) ?? paths.runtime
    let target = RuntimePaths(mount: RuntimePaths.defaultMount).runtime
    guard runtime != (RuntimePaths.resolve(target) ?? target) else { return }
    try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
    try check(
      Glibc.mount(runtime, target, nil, UInt(MS_BIND | MS_REC), nil), "binding \(runtime) at \(target)")
  }

  func run() throws {
    var argv = command
    // The command's arguments are passed through whole, so --help before `--` is looked at here.
    if argv.first == "--help" || argv.first == "-h" { throw CleanExit.helpRequest(self) }
    if argv.first == "--" { argv.removeFirst() }
    guard let program = argv.first else {
      throw ValidationError("no command given: apvirt exec -- CMD ARGS...")
    }
    let paths = RuntimePaths(mount: mount, state: state)
    var st = stat()
    guard stat(paths.mount + "/bus/ap/apmask", &st) == 0 else {
      if errno == EACCES {
        // A FUSE mount without allow_other is its user's alone, root included.
        var pid = stat()
        let owner = stat(paths.pidFile, &pid) == 0 ? "uid \(pid.st_uid)" : "another user"
        throw RuntimeError(
          "the emulated host at \(paths.mount) was mounted by \(owner) without allow_other, so no one else "
            + "(root included) can see it: add user_allow_other to /etc/fuse.conf and restart apvirt up, "
            + "or run apvirt up as root")
      }
      throw RuntimeError("no emulated host mounted at \(paths.mount); start one with `apvirt up`")
    }
    // The state is the daemon's: an exec does not make one where there is none.
    guard stat(paths.mdevctlDirectory, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
      throw RuntimeError(
        "no state directory at \(paths.state) (no \(paths.mdevctlDirectory)): give --state the directory "
          + "the daemon was started with (apvirt up --state)")
    }
    func check(_ rc: Int32, _ what: String) throws {
      guard rc != 0 else { return }
      let e = errno
      // Without the right to mount, say what it takes.
      let hint = e == EPERM ? " (apvirt exec needs root: it builds a mount namespace)" : ""
      throw RuntimeError(description: "\(what): \(String(cString: strerror(e)))\(hint)")
    }
    try check(Self.unshareMountNamespace(), "unshare(CLONE_NEWNS)")
    try check(Glibc.mount("none", "/", nil, UInt(MS_REC | MS_PRIVATE), nil), "making / private")
    var tree = paths.mount
    if let guest {
      // A guest's name is one path component of the guests' mount, never a way out of it.
      if let problem = QEMUCommandLine.nameProblem(guest) {
        throw ValidationError("--guest \(guest): \(problem)")
      }
      tree = paths.guests + "/" + guest
      guard FileManager.default.fileExists(atPath: tree + "/bus/ap") else {
        throw RuntimeError(description: "no guest named '\(guest)' is running on the host at \(paths.mount)")
      }
    }
    let privates = try Self.privateDirectories(self.private, paths: paths)
    for p in privates { try Self.bindPrivate(p, paths: paths, check: check) }
    try Self.composeSys(emulated: tree, scratch: paths.runtime + "/realsys", check: check)
    if !FileManager.default.fileExists(atPath: "/etc/mdevctl.d") {
      try FileManager.default.createDirectory(atPath: "/etc/mdevctl.d", withIntermediateDirectories: true)
    }
    try check(
      Glibc.mount(paths.mdevctlDirectory, "/etc/mdevctl.d", nil, UInt(MS_BIND), nil),
      "binding \(paths.mdevctlDirectory) over /etc/mdevctl.d")
    try Self.bindVFIONodes(paths: paths, check: check)
    try Self.bindRuntimeAtDefault(paths: paths, check: check)
    // libudev checks that /sys is sysfs by its magic number unless told not to.
    setenv(Self.verifySysfsVariable, "0", 1)
    var cargs = argv.map { strdup($0) } + [nil]
    execvp(program, &cargs)
    // As env(1) and unshare(1) end: 127 when there is no such command, 126 when it cannot run.
    let e = errno
    FileHandle.standardError.write(Data("apvirt exec: \(program): \(String(cString: strerror(e)))\n".utf8))
    throw ExitCode(e == ENOENT ? 127 : 126)
  }
}
