import APModel
import SystemPackage

/// The `uevent` files of devices, buses and drivers (`uevent_show`/`uevent_store` in
/// `drivers/base/core.c`, `bus_uevent_store` and the driver's `uevent_store` in
/// `drivers/base/bus.c`), and the synthetic uevents a write to one sends
/// (`kobject_synth_uevent` in `lib/kobject_uevent.c`).
///
/// Reading a device's file prints the variables the device's kset callback adds (`dev_uevent`:
/// `DEVTYPE=` of the device type, `DRIVER=` when bound, then the bus's own variables), one per
/// line. A device the kset filters out (a root device with neither bus nor class) reads empty,
/// and a write to it succeeds without sending anything.
enum SyntheticUEvent {
  /// The actions in `kobject_actions[]` order.
  static let actions: [UEvent.Action] = [.add, .remove, .change, .move, .online, .offline, .bind, .unbind]

  /// The most variables one event carries (`UEVENT_NUM_ENVP`) and the bytes of its buffer
  /// (`UEVENT_BUFFER_SIZE`, each variable with its NUL).
  static let maxVariables = 64
  static let bufferSize = 2048

  enum Failure: Error {
    /// `kobject_action_type` found no action: "unknown uevent action string".
    case unknownAction
    /// `kobject_action_args` refused the arguments: "incorrect uevent action arguments".
    case badArguments
  }

  /// Parses what was written: the action, then optionally a space, a UUID and ` KEY=value`
  /// pairs. Returns the action and the synthetic variables (`SYNTH_UUID=0` without arguments).
  static func parse(_ bytes: [UInt8]) throws(Failure) -> (UEvent.Action, [String]) {
    var s = KernelNumber.cString(bytes)
    if s.last == UInt8(ascii: "\n") { s.removeLast() }
    guard !s.isEmpty else { throw .unknownAction }
    let space = s.firstIndex(of: UInt8(ascii: " "))
    let word = String(decoding: s[..<(space ?? s.endIndex)], as: UTF8.self)
    guard let action = actions.first(where: { $0.rawValue == word }) else { throw .unknownAction }
    guard let space else { return (action, ["SYNTH_UUID=0"]) }
    let args = Array(s[(space + 1)...])
    guard args.count >= 36, let uuid = uuidText(Array(args.prefix(36))) else { throw .badArguments }
    var env = ["SYNTH_UUID=" + uuid]
    var i = 36
    while i < args.count {
      guard args[i] == UInt8(ascii: " ") else { throw .badArguments }
      let key = i + 1
      guard key < args.count, let eq = args[key...].firstIndex(of: UInt8(ascii: "=")), eq != key else {
        throw .badArguments
      }
      let value = eq + 1
      guard value < args.count else { throw .badArguments }
      let end = args[value...].firstIndex(of: UInt8(ascii: " ")) ?? args.count
      env.append(
        "SYNTH_ARG_" + String(decoding: args[key..<eq], as: UTF8.self) + "="
          + String(decoding: args[value..<end], as: UTF8.self))
      i = end
    }
    return (action, env)
  }

  /// `uuid_is_valid`: 36 characters, hex digits with hyphens at 8, 13, 18 and 23. The text is
  /// kept as written (the kernel copies it, case and all).
  static func uuidText(_ s: [UInt8]) -> String? { KernelNumber.uuid(s, lowercased: false) }
}

/// What a `uevent` file belongs to.
enum UEventObject {
  /// A device: its path, subsystem, and the variables `dev_uevent` gives it; nil variables
  /// when the kset's filter drops it (no bus and no class).
  case device(devpath: String, subsystem: String, variables: [String]?, logName: String, logDriver: String)
  /// A bus (`/bus/ap`): the bus kset adds nothing.
  case bus(String)
  /// A driver (`/bus/ap/drivers/cex4card`): the drivers kset adds nothing.
  case driver(String)
}

extension HostKernel {
  /// `uevent_show`: one `KEY=value` line per variable.
  static func ueventText(_ variables: [String]?) -> String {
    (variables ?? []).map { $0 + "\n" }.joined()
  }

  /// `kobject_synth_uevent` on `object`: records the event with the synthetic variables first
  /// and the object's own after them, as `kobject_uevent_env` builds it. Bad text is EINVAL and
  /// sends nothing.
  func synthUEvent(_ object: UEventObject, _ bytes: [UInt8]) throws(Errno) {
    let path: String
    switch object {
    case .device(let p, _, _, _, _), .bus(let p), .driver(let p): path = p
    }
    let action: UEvent.Action
    let synth: [String]
    do {
      (action, synth) = try SyntheticUEvent.parse(bytes)
    } catch {
      let message =
        switch error {
        case .unknownAction: "unknown uevent action string"
        case .badArguments: "incorrect uevent action arguments"
        }
      try failSynth(object, path, message, .invalidArgument)
    }
    var own: [String] = []
    let subsystem: String
    switch object {
    case .device(_, let sub, let variables, _, _):
      // Filtered out: `kobject_uevent_env` returns 0 without sending.
      guard let variables else { return }
      own = variables
      subsystem = sub
    case .bus: subsystem = "bus"
    case .driver: subsystem = "drivers"
    }
    let all =
      ["ACTION=" + action.rawValue, "DEVPATH=" + path, "SUBSYSTEM=" + subsystem] + synth + own
      + ["SEQNUM=\(uevents.lastSeqnum + 1)"]
    if all.count > SyntheticUEvent.maxVariables
      || all.reduce(0, { $0 + $1.utf8.count + 1 }) > SyntheticUEvent.bufferSize
    {
      try failSynth(object, path, "failed to send uevent", .noMemory)
    }
    // The device's own variables are added as for every event.
    uevent(action, path, synth, subsystem: subsystem)
  }

  /// Logs a failed synthetic uevent as the kernel does and throws `errno`.
  private func failSynth(_ object: UEventObject, _ path: String, _ message: String, _ errno: Errno)
    throws(Errno) -> Never
  {
    printk("synth uevent: \(path): \(message)")
    if case .device(_, _, _, let name, let driver) = object {
      devLog(driver: driver, device: name, "uevent: failed to send synthetic uevent: -\(errno.rawValue)")
    }
    throw errno
  }
}
