import Foundation

/// Where a running daemon keeps its files: the sysfs mount, and beside it the control socket,
/// the kernel log and the pid file.
struct RuntimePaths {
  /// The sysfs mount (`/run/apvirt/sys`).
  let mount: String
  /// The state directory (`/var/lib/apvirt`): `etc/mdevctl.d` lives there.
  let state: String

  static let defaultMount = "/run/apvirt/sys"
  static let defaultState = "/var/lib/apvirt"

  /// The mount the commands use when none is given: `APVIRT_MOUNT`, else the default. One
  /// variable points every command of a shell (and the emulators it starts) at one host.
  static var environmentMount: String { environment("APVIRT_MOUNT") ?? defaultMount }

  /// The state directory when none is given: `APVIRT_STATE`, else the default.
  static var environmentState: String { environment("APVIRT_STATE") ?? defaultState }

  /// A variable's value, nil when unset or empty. `getenv`, not `ProcessInfo`'s dictionary of the
  /// whole environment: every command reads these two, the daemon included, at start.
  static func environment(_ name: String) -> String? {
    guard let value = getenv(name), value.pointee != 0 else { return nil }
    return String(cString: value)
  }

  init(mount: String = defaultMount, state: String = defaultState) {
    var m = mount
    while m.count > 1 && m.hasSuffix("/") { m.removeLast() }
    self.mount = m
    self.state = state
  }

  /// The directory holding the mount: `/run/apvirt`.
  var runtime: String {
    guard let i = mount.lastIndex(of: "/") else { return "." }
    return i == mount.startIndex ? "/" : String(mount[..<i])
  }

  var controlSocket: String { runtime + "/control.sock" }
  /// The guests' sysfs trees, one directory per running guest.
  var guests: String { runtime + "/guests" }
  var dmesg: String { runtime + "/dmesg" }
  var pidFile: String { runtime + "/apvirt.pid" }
  /// The host's `/dev/vfio` nodes, which `apvirt exec` binds at `/dev/vfio`.
  var vfioDevices: String { runtime + "/dev-vfio" }
  var mdevctlDirectory: String { state + "/etc/mdevctl.d" }
  /// The directories that `apvirt exec --private DIR` puts over DIR (`STATE/private/DIR`).
  var privateRoot: String { state + "/private" }

  /// The directories mdevctl's package installs under /etc/mdevctl.d and mdevctl insists on.
  var mdevctlScriptDirectories: [String] {
    [mdevctlDirectory + "/scripts.d/callouts", mdevctlDirectory + "/scripts.d/notifiers"]
  }

  /// Creates the state directory's mdevctl tree as the package would.
  func prepareState() throws(RuntimeError) {
    for d in mdevctlScriptDirectories { try Self.makeDirectory(d, mode: 0o755) }
  }
}

#if canImport(Glibc)
  import Glibc
#endif

extension RuntimePaths {
  /// Creates the runtime directory (mode 0700, or 0710 when `group` may reach the control
  /// socket) or takes an existing one that this user owns and that nobody else can write, and
  /// sets its mode. Returns its resolved path: the one that a lock and every comparison use, so
  /// that `//run/apvirt`, `/run/./apvirt` and a symbolic link name the same directory.
  func prepareRuntime(group: gid_t? = nil) throws(RuntimeError) -> String {
    let mode: mode_t = group == nil ? 0o700 : 0o710
    try Self.makeDirectory(runtime, mode: mode)
    let resolved = try Self.ownedDirectory(runtime)
    // A directory with a lock was a daemon's runtime directory before (its mounts may have had
    // other names); the lock decides whether it is free.
    let names = Self.entries(of: resolved)
    let foreign =
      names.contains("apvirt.lock")
      ? []
      : names.subtracting(Self.runtimeNames)
        .subtracting([String(mount.split(separator: "/").last ?? "")]).sorted()
    guard foreign.isEmpty else {
      throw RuntimeError(
        "\(runtime) holds files that are not apvirt's (\(foreign.prefix(3).joined(separator: ", "))\(foreign.count > 3 ? ", ..." : "")): "
          + "the directory of the mount is the daemon's runtime directory, which it locks and makes private; "
          + "give --mount a path in an empty or new directory of its own, such as /run/apvirt/sys")
    }
    var st = stat()
    if lstat(mount, &st) == 0 && st.st_mode & S_IFMT != S_IFDIR {
      throw RuntimeError("cannot mount at \(mount): it exists and is not a directory")
    }
    if let group, chown(resolved, geteuid(), group) != 0 {
      throw RuntimeError(
        description: "cannot give \(resolved) to group \(group): \(String(cString: strerror(errno)))")
    }
    guard chmod(resolved, mode) == 0 else {
      throw RuntimeError(
        description: "cannot set the mode of \(resolved): \(String(cString: strerror(errno)))")
    }
    return resolved
  }

  /// Creates the state directory (0755, as /etc/mdevctl.d is) or checks an existing one: it
  /// must be this user's (or root's) and writable by nobody else, since what is in it starts
  /// mdevs at boot. Returns its resolved path.
  func prepareStateDirectory() throws(RuntimeError) -> String {
    try Self.makeDirectory(state, mode: 0o755)
    guard let resolved = Self.resolve(state) else {
      throw RuntimeError(description: "cannot resolve \(state): \(String(cString: strerror(errno)))")
    }
    var st = stat()
    guard stat(resolved, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
      throw RuntimeError(description: "\(state) is not a directory")
    }
    guard st.st_uid == geteuid() || st.st_uid == 0 else {
      throw RuntimeError(
        description: "\(state) belongs to uid \(st.st_uid), not to this user: refusing to use it")
    }
    guard st.st_mode & 0o022 == 0 else {
      throw RuntimeError(
        description:
          "\(state) can be written by others (mode \(String(st.st_mode & 0o7777, radix: 8))): refusing to use it"
      )
    }
    return resolved
  }

  /// What a daemon keeps in its runtime directory, and nothing else: an existing directory with
  /// other files is not taken (the daemon would lock it and set its mode to 0700).
  static let runtimeNames: Set<String> = [
    "apvirt.lock", "control.sock", "apvirt.pid", "dmesg", "guests", "dev-vfio", "realsys",
  ]

  /// The names in a directory, without `.` and `..`.
  static func entries(of directory: String) -> Set<String> {
    guard let d = opendir(directory) else { return [] }
    defer { closedir(d) }
    var names: Set<String> = []
    while let e = readdir(d) {
      let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
        String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
      }
      if name != "." && name != ".." { names.insert(name) }
    }
    return names
  }

  /// `mkdir -p`: creates `path` and what is missing above it (with `mode`, whatever the umask,
  /// for the last one), failing with the system's reason and the path it concerns.
  static func makeDirectory(_ path: String, mode: mode_t) throws(RuntimeError) {
    var prefix = path.hasPrefix("/") ? "" : "."
    let parts = path.split(separator: "/")
    for (i, part) in parts.enumerated() {
      prefix += "/" + part
      let last = i == parts.count - 1
      if mkdir(prefix, last ? mode : 0o755) == 0 {
        if last { _ = chmod(prefix, mode) }
        continue
      }
      let e = errno
      var st = stat()
      if e == EEXIST, stat(prefix, &st) == 0 {
        guard st.st_mode & S_IFMT == S_IFDIR else {
          throw RuntimeError("cannot create \(path): \(prefix) exists and is not a directory")
        }
        continue
      }
      throw .errno("cannot create \(path)", e)
    }
  }

  /// The resolved path of a directory that this user owns.
  static func ownedDirectory(_ path: String) throws(RuntimeError) -> String {
    guard let resolved = resolve(path) else {
      throw RuntimeError(description: "cannot resolve \(path): \(String(cString: strerror(errno)))")
    }
    var st = stat()
    guard lstat(resolved, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
      throw RuntimeError(description: "\(path) is not a directory")
    }
    guard st.st_uid == geteuid() else {
      throw RuntimeError(
        description:
          "\(path) belongs to uid \(st.st_uid), not to this user (uid \(geteuid())): refusing to use it")
    }
    return resolved
  }

  static func resolve(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
  }

  /// Writes a small file the daemon owns, with `mode` whatever the umask, replacing only a
  /// regular file (never following a link).
  static func writeFile(_ path: String, _ text: String, mode: mode_t) {
    var st = stat()
    if lstat(path, &st) == 0 && st.st_mode & S_IFMT != S_IFREG { return }
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode)
    guard fd >= 0 else { return }
    defer { close(fd) }
    _ = fchmod(fd, mode)
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
  }
}

/// An exclusive lock on a directory, held for the daemon's life (`flock` on `DIR/apvirt.lock`,
/// which the kernel releases when the process ends, however it ends). A second daemon on the
/// same runtime or state directory, under whatever name, is refused before it touches anything.
final class DirectoryLock: Sendable {
  let fd: Int32
  let path: String

  init(directory: String, role: String) throws(RuntimeError) {
    path = directory + "/apvirt.lock"
    let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
    guard fd >= 0 else {
      throw RuntimeError(description: "cannot open \(path): \(String(cString: strerror(errno)))")
    }
    guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
      var buf = [UInt8](repeating: 0, count: 32)
      let n = read(fd, &buf, buf.count)
      close(fd)
      let pid =
        n > 0
        ? String(decoding: buf[..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
      throw RuntimeError(
        description:
          "another apvirt up (pid \(pid)) is using \(directory) as its \(role) directory; stop it first (apvirt down)"
      )
    }
    _ = ftruncate(fd, 0)
    let text = Array("\(getpid())\n".utf8)
    _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    self.fd = fd
  }

  deinit { close(fd) }
}
