import Foundation

/// `mdevctl define` and `mdevctl undefine` for `apply --persist`: mdevctl writes its own
/// definitions (`/etc/mdevctl.d/matrix/UUID`), so that what it keeps is what it would have
/// written for an administrator, not apvirt's copy of its format.
///
/// On an LPAR (state `/`) mdevctl runs as it is; on the emulated host it runs inside
/// `apvirt exec`, which shows it the host as `/sys` and STATE/etc/mdevctl.d as `/etc/mdevctl.d`,
/// as the daemon's boot runs it (``MdevctlBoot``). It needs root and an installed mdevctl
/// (``MdevctlBoot/available``); without them apply writes the files itself.
struct MdevctlDefine {
  /// The sysfs root apply wrote to: the emulated host's mount, or /sys.
  let sysfs: String
  let state: String
  let mdevctl: String

  init?(sysfs: String, state: String) {
    guard MdevctlBoot.available, let mdevctl = MdevctlBoot.mdevctl else { return nil }
    self.sysfs = sysfs
    self.state = state
    self.mdevctl = mdevctl
  }

  /// The command line that runs mdevctl with `args` against this host.
  func argv(_ args: [String]) -> [String] {
    if state == "/" { return [mdevctl] + args }
    return [MdevctlBoot.selfExecutable, "exec", "--mount", sysfs, "--state", state, "--", mdevctl] + args
  }

  /// Runs mdevctl; a failure says what mdevctl said.
  func run(_ args: [String]) throws {
    let (status, output) = MdevctlBoot.spawn(argv(args), timeout: .seconds(30))
    guard status == 0 else {
      let said = output.split(separator: "\n").suffix(2).joined(separator: "; ")
      throw RuntimeError("mdevctl \(args.joined(separator: " ")) failed (exit status \(status)): \(said)")
    }
  }

  /// `mdevctl define --uuid UUID --parent matrix --jsonfile FILE` with `json` (mdev_type, start
  /// and attrs). mdevctl refuses to overwrite a definition, so an existing one is undefined
  /// first.
  func define(uuid: String, json: String, replacing: Bool) throws {
    if replacing { try undefine(uuid: uuid) }
    let file = NSTemporaryDirectory() + "apvirt-mdevctl-\(uuid).json"
    do {
      try json.write(toFile: file, atomically: true, encoding: .utf8)
    } catch {
      throw RuntimeError("cannot write \(file): \(systemReason(error))")
    }
    defer { try? FileManager.default.removeItem(atPath: file) }
    try run(["define", "--uuid", uuid, "--parent", "matrix", "--jsonfile", file])
  }

  /// `mdevctl undefine --uuid UUID --parent matrix`.
  func undefine(uuid: String) throws {
    try run(["undefine", "--uuid", uuid, "--parent", "matrix"])
  }
}
