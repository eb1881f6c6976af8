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
  var mdevctlDirectory: String { state + "/etc/mdevctl.d" }

  /// The directories mdevctl's package installs under /etc/mdevctl.d and mdevctl insists on.
  var mdevctlScriptDirectories: [String] {
    [mdevctlDirectory + "/scripts.d/callouts", mdevctlDirectory + "/scripts.d/notifiers"]
  }

  /// Creates the state directory's mdevctl tree as the package would.
  func prepareState() throws {
    for d in mdevctlScriptDirectories {
      try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    }
  }
}
