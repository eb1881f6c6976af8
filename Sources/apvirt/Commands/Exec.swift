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
      CMD runs in a private mount namespace where the daemon's sysfs mount is bound over /sys and
      STATE/etc/mdevctl.d over /etc/mdevctl.d, so unmodified tools (mdevctl, lszcrypt, shell
      scripts, Ansible modules) behave as on the LPAR. Only the emulated tree is under /sys there.
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
      tree = paths.guests + "/" + guest
      guard FileManager.default.fileExists(atPath: tree + "/bus/ap") else {
        throw ValidationError("no guest named '\(guest)' is running on the host at \(paths.mount)")
      }
    }
    try check(Glibc.mount(tree, "/sys", nil, UInt(MS_BIND | MS_REC), nil), "binding \(tree) over /sys")
    if !FileManager.default.fileExists(atPath: "/etc/mdevctl.d") {
      try FileManager.default.createDirectory(atPath: "/etc/mdevctl.d", withIntermediateDirectories: true)
    }
    try check(
      Glibc.mount(paths.mdevctlDirectory, "/etc/mdevctl.d", nil, UInt(MS_BIND), nil),
      "binding \(paths.mdevctlDirectory) over /etc/mdevctl.d")
    var cargs = argv.map { strdup($0) } + [nil]
    execvp(program, &cargs)
    throw ValidationError("\(program): \(String(cString: strerror(errno)))")
  }
}
