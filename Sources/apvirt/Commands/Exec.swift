import ArgumentParser
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// `apvirt exec -- CMD ARGS...`
struct Exec: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Run a command that sees the emulated host as its /sys and /etc/mdevctl.d.",
    discussion: """
      CMD runs in a private mount namespace whose /sys is the host's, with the emulated tree's
      nodes (/sys/bus/ap, /sys/devices/ap, /sys/devices/vfio_ap, /sys/bus/mdev,
      /sys/class/mdev_bus, /sys/kernel/iommu_groups, ...) bound in their places, and
      STATE/etc/mdevctl.d over /etc/mdevctl.d, so that unmodified tools (mdevctl, lszcrypt,
      udevadm, shell scripts, Ansible modules) behave as on the LPAR.
      CMD's environment has SYSTEMD_DEVICE_VERIFY_SYSFS=0: libudev (udevadm, libvirt) otherwise
      refuses a /sys that is not a sysfs mount, as the emulated nodes (a FUSE tree) are not.
      The exit status is CMD's. Needs root (a mount namespace).

        apvirt exec -- mdevctl types
        apvirt exec -- sh -c 'echo -5 > /sys/bus/ap/apmask'
      """)

  @Option(name: .long, help: "The daemon's sysfs mount.")
  var mount: String = RuntimePaths.defaultMount

  @Option(name: .long, help: "The daemon's state directory.")
  var state: String = RuntimePaths.defaultState

  @Option(name: .long, help: "Run with this guest's view (its own /sys/bus/ap and /sys/devices/ap) instead.")
  var guest: String?

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
        fm.createFile(atPath: target, contents: nil)
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

  func run() throws {
    var argv = command
    if argv.first == "--" { argv.removeFirst() }
    guard let program = argv.first else {
      throw ValidationError("no command given: apvirt exec -- CMD ARGS...")
    }
    let paths = RuntimePaths(mount: mount, state: state)
    guard FileManager.default.fileExists(atPath: paths.mount + "/bus/ap/apmask") else {
      throw ValidationError("no emulated host mounted at \(paths.mount); start one with `apvirt up`")
    }
    try paths.prepareState()
    func check(_ rc: Int32, _ what: String) throws {
      if rc != 0 { throw ValidationError("\(what): \(String(cString: strerror(errno)))") }
    }
    try check(Self.unshareMountNamespace(), "unshare(CLONE_NEWNS)")
    try check(Glibc.mount("none", "/", nil, UInt(MS_REC | MS_PRIVATE), nil), "making / private")
    var tree = paths.mount
    if let guest {
      // A guest's name is one path component of the guests' mount, never a way out of it.
      if let problem = GuestRegistry.nameProblem(guest) {
        throw ValidationError("--guest \(guest): \(problem)")
      }
      tree = paths.guests + "/" + guest
      guard FileManager.default.fileExists(atPath: tree + "/bus/ap") else {
        throw ValidationError("no guest named '\(guest)' is running on the host at \(paths.mount)")
      }
    }
    try Self.composeSys(emulated: tree, scratch: paths.runtime + "/realsys", check: check)
    if !FileManager.default.fileExists(atPath: "/etc/mdevctl.d") {
      try FileManager.default.createDirectory(atPath: "/etc/mdevctl.d", withIntermediateDirectories: true)
    }
    try check(
      Glibc.mount(paths.mdevctlDirectory, "/etc/mdevctl.d", nil, UInt(MS_BIND), nil),
      "binding \(paths.mdevctlDirectory) over /etc/mdevctl.d")
    // libudev checks that /sys is sysfs by its magic number unless told not to.
    setenv(Self.verifySysfsVariable, "0", 1)
    var cargs = argv.map { strdup($0) } + [nil]
    execvp(program, &cargs)
    throw ValidationError("\(program): \(String(cString: strerror(errno)))")
  }
}
