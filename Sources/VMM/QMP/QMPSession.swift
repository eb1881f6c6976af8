import Foundation
import Synchronization

/// What a QMP monitor talks to: a guest, or the empty machine of a capability probe
/// (`-machine none`). The session does the protocol (negotiation, the request's members, `id`,
/// `quit`); the target runs every other command.
public protocol QMPTarget: AnyObject, Sendable {
  var version: QEMUVersion { get }
  /// The commands it answers besides the session's own, as `query-commands` lists them.
  var commandNames: [String] { get }
  var isQuit: Bool { get }
  /// `quit`, after its reply went out.
  func quitFromMonitor()
  /// Whatever a command left to do once its reply went out (a guest's shutdown after
  /// `system_powerdown`).
  func afterReply()
  /// Where a negotiated monitor's events go, and when it closes.
  func addSink(_ key: ObjectIdentifier, _ sink: @escaping @Sendable (QMPValue) -> Void)
  func removeSink(_ key: ObjectIdentifier)
  /// Runs a command (arguments checked by the target) or throws QEMU's error.
  func execute(_ name: String, _ args: QMPValue) throws(DeviceError) -> QMPValue
}

/// One QMP connection: greeting, capabilities negotiation, then commands handled strictly in
/// order, replies with the request's `id` copied, events once negotiated. QEMU's texts and
/// error classes throughout.
public final class QMPSession: Sendable {
  let target: any QMPTarget
  let negotiated = Atomic<Bool>(false)
  /// The client enabled the `oob` capability: `exec-oob` is then understood.
  let oobEnabled = Atomic<Bool>(false)
  /// A `quit` was answered; the guest quits once the reply is out.
  let quitRequested = Atomic<Bool>(false)

  public init(target: any QMPTarget) {
    self.target = target
  }

  public convenience init(guest: Guest) {
    self.init(target: guest)
  }

  /// The commands the session answers itself, whatever its target.
  static let sessionCommands = ["qmp_capabilities", "query-version", "query-commands", "quit"]

  /// A guest's monitor's commands.
  public static let commands = [
    "qmp_capabilities", "query-version", "query-commands", "query-status", "device_add", "device_del",
    "qom-list", "qom-get", "human-monitor-command", "stop", "cont", "system_reset", "quit",
    // What libvirt asks when it starts a domain and later (`virsh shutdown`, `domstats`).
    "system_powerdown", "query-migrate-capabilities", "migrate-set-capabilities", "query-chardev",
    "query-hotpluggable-cpus", "query-cpus-fast", "query-iothreads", "query-named-block-nodes", "query-block",
    "query-blockstats", "query-target", "query-kvm", "query-balloon", "balloon",
  ]

  var commandNames: [String] {
    Self.sessionCommands + target.commandNames.filter { !Self.sessionCommands.contains($0) }
  }

  public var greeting: QMPValue {
    .object([
      (
        "QMP",
        .object([
          ("version", versionValue),
          ("capabilities", .array([.string("oob")])),
        ])
      )
    ])
  }

  var versionValue: QMPValue {
    .object([
      (
        "qemu",
        .object([
          ("micro", .int(target.version.micro)), ("minor", .int(target.version.minor)),
          ("major", .int(target.version.major)),
        ])
      ),
      ("package", .string("")),
    ])
  }

  /// Serves a transport connection until it closes or the guest quits.
  public func serve(_ connection: JSONStreamServer.Connection) {
    connection.sendLine(greeting.json)
    let key = ObjectIdentifier(self)
    defer { target.removeSink(key) }
    while let received = connection.receive() {
      let replies = handle(received) { [connection] event in connection.sendLine(event.json) }
      for r in replies { connection.sendLine(r.json) }
      finishPending()
      if target.isQuit { return }
    }
  }

  /// What must follow the reply just sent: a `quit` takes effect (and SHUTDOWN is emitted).
  public func finishPending() {
    target.afterReply()
    if quitRequested.exchange(false, ordering: .relaxed) { target.quitFromMonitor() }
  }

  /// Handles one received text; returns the replies to send (after any events it emitted).
  public func handle(_ received: JSONStreamServer.Received, eventSink: @escaping @Sendable (QMPValue) -> Void)
    -> [QMPValue]
  {
    switch received {
    case .invalid(let message):
      return [Self.error("GenericError", message, id: nil)]
    case .value(let v):
      return [handleRequest(v, eventSink: eventSink)]
    }
  }

  /// A reply as QEMU writes it: a QDict, so `id` (echoed as received) goes before `error`
  /// and after `return`, and objects inside `id` come back in QDict order.
  static func error(_ cls: String, _ desc: String, id: QMPValue?) -> QMPValue {
    var m: [(String, QMPValue)] = [("error", .object([("class", .string(cls)), ("desc", .string(desc))]))]
    if let id { m.append(("id", id)) }
    return QMPValue.object(m).qdictOrdered
  }

  static func success(_ value: QMPValue, id: QMPValue?) -> QMPValue {
    var m: [(String, QMPValue)] = [("return", value)]
    if let id { m.append(("id", id.qdictOrdered)) }
    return .object(QMPValue.qdictOrder(m))
  }

  /// `qmp_dispatch` with `qmp_dispatch_check_obj`, in QEMU's order: the request must be an
  /// object; its members are checked in QDict order (so which error wins when several apply is
  /// QEMU's); `exec-oob` is a member like `execute` only once the client enabled `oob`, and even
  /// then apvirt's commands refuse it (none is `allow-oob` in QEMU's schema); before
  /// negotiation every command but `qmp_capabilities` is "not found", reworded as QEMU's
  /// `monitor_qmp_dispatch` does.
  func handleRequest(_ v: QMPValue, eventSink: @escaping @Sendable (QMPValue) -> Void) -> QMPValue {
    guard case .object(let members) = v else {
      return Self.error("GenericError", "QMP input must be a JSON object", id: nil)
    }
    let id = v["id"]
    let allowOOB = oobEnabled.load(ordering: .relaxed)
    var execKey: String?
    for (key, value) in QMPValue.qdictOrder(members) {
      switch key {
      case "execute",
        "exec-oob" where allowOOB:
        guard case .string = value else {
          return Self.error("GenericError", "QMP input member '\(key)' must be a string", id: id)
        }
        if let execKey {
          return Self.error("GenericError", "QMP input member '\(key)' clashes with '\(execKey)'", id: id)
        }
        execKey = key
      case "arguments":
        guard case .object = value else {
          return Self.error("GenericError", "QMP input member 'arguments' must be an object", id: id)
        }
      case "id":
        break
      default:
        return Self.error("GenericError", "QMP input member '\(key)' is unexpected", id: id)
      }
    }
    guard let execKey, let name = v[execKey]?.stringValue else {
      return Self.error("GenericError", "QMP input lacks member 'execute'", id: id)
    }
    let oob = execKey == "exec-oob"
    let args = v["arguments"] ?? .emptyObject
    if !negotiated.load(ordering: .relaxed) {
      guard name == "qmp_capabilities" else {
        return Self.error(
          "CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'", id: id)
      }
      var enableOOB = false
      if case .object(let m) = args {
        for (k, v) in m {
          guard k == "enable" else {
            return Self.error("GenericError", "Parameter '\(k)' is unexpected", id: id)
          }
          guard case .array(let caps) = v else {
            return Self.error("GenericError", "Invalid parameter type for 'enable', expected: array", id: id)
          }
          for c in caps where c.stringValue != "oob" {
            return Self.error("GenericError", "Capability \(c.stringValue ?? c.json) not available", id: id)
          }
          enableOOB = !caps.isEmpty
        }
      }
      oobEnabled.store(enableOOB, ordering: .relaxed)
      negotiated.store(true, ordering: .relaxed)
      target.addSink(ObjectIdentifier(self), eventSink)
      return Self.success(.emptyObject, id: id)
    }
    if oob && commandNames.contains(name) {
      return Self.error("GenericError", "The command \(name) does not support OOB", id: id)
    }
    do throws(DeviceError) {
      return Self.success(try dispatch(name, args), id: id)
    } catch {
      return Self.error(error.errorClass, error.message, id: id)
    }
  }

  /// Checks a command's arguments: every one known, required ones present, strings where strings
  /// are expected.
  static func arguments(_ args: QMPValue, required: [String], optional: [String] = []) throws(DeviceError)
    -> [String: QMPValue]
  {
    var out: [String: QMPValue] = [:]
    if case .object(let m) = args {
      for (k, v) in m {
        guard required.contains(k) || optional.contains(k) else {
          throw DeviceError("Parameter '\(k)' is unexpected")
        }
        out[k] = v
      }
    }
    for r in required where out[r] == nil { throw DeviceError("Parameter '\(r)' is missing") }
    return out
  }

  static func string(_ a: [String: QMPValue], _ k: String) throws(DeviceError) -> String? {
    guard let v = a[k] else { return nil }
    guard case .string(let s) = v else {
      throw DeviceError("Invalid parameter type for '\(k)', expected: string")
    }
    return s
  }

  func dispatch(_ name: String, _ args: QMPValue) throws(DeviceError) -> QMPValue {
    switch name {
    case "qmp_capabilities":
      throw DeviceError(
        "Capabilities negotiation is already complete, command ignored", errorClass: "CommandNotFound")
    case "query-version":
      _ = try Self.arguments(args, required: [])
      return versionValue
    case "query-commands":
      _ = try Self.arguments(args, required: [])
      return .array(commandNames.map { .object([("name", .string($0))]) })
    case "quit":
      _ = try Self.arguments(args, required: [])
      // The reply goes first; the SHUTDOWN event follows it (`finishPending`).
      quitRequested.store(true, ordering: .relaxed)
      return .emptyObject
    default:
      guard target.commandNames.contains(name) else {
        throw DeviceError("The command \(name) has not been found", errorClass: "CommandNotFound")
      }
      return try target.execute(name, args)
    }
  }
}

/// The human monitor commands apvirt's guests understand (``commands``, ``infoCommands``): the
/// device hot plug, the run state, `info qtree` and `info status`, `help`. Output lines end in
/// CRLF; errors read `Error: <desc>`; anything else is QEMU's `unknown command: 'x'`.
public enum HMP {
  /// (names, parameters, help) as hmp-commands.hx has them: `help` prints
  /// `name params -- help`, sorted by name.
  static let commands: [(String, String, String)] = [
    ("cont|c", "", "resume emulation"),
    ("device_add", "driver[,prop=value][,...]", "add device, like -device on the command line"),
    ("device_del", "device", "remove device"),
    ("help|?", "[cmd]", "show the help"),
    ("info", "[subcommand]", "show various information about the system state"),
    ("stop|s", "", "stop emulation"),
    ("system_reset", "", "reset the system"),
  ]

  /// The `info` subcommands (hmp-commands-info.hx).
  static let infoCommands: [(String, String, String)] = [
    ("qtree", "", "show device tree"),
    ("status", "", "show the current VM status (running|paused)"),
  ]

  /// The table entry a command name (or one of its aliases) selects.
  static func lookup(_ name: String, in table: [(String, String, String)]) -> (String, String, String)? {
    table.first { $0.0.split(separator: "|").contains { $0 == name } }
  }

  static func helpLines(_ table: [(String, String, String)], prefix: String = "") -> String {
    table.map { "\(prefix)\($0.0) \($0.1) -- \($0.2)\r\n" }.joined()
  }

  public static func run(_ line: String, guest: Guest) -> String {
    let trimmed = line.trimmingCharacters(in: .whitespaces)
    let (word, rest) = trimmed.split(separator: " ", maxSplits: 1).map(String.init).splitFirst()
    guard let entry = lookup(word, in: commands) else { return "unknown command: '\(word)'\r\n" }
    let argument = rest.trimmingCharacters(in: .whitespaces)
    do throws(DeviceError) {
      switch entry.0 {
      case "device_add":
        let props = QEMUCommandLine.options(rest, implied: "driver").map { ($0.0, QMPValue.string($0.1)) }
        try guest.deviceAdd(props)
        return ""
      case "device_del":
        try guest.deviceDel(argument)
        return ""
      case "cont|c":
        guest.cont()
        return ""
      case "stop|s":
        guest.stop()
        return ""
      case "system_reset":
        // HMP's system_reset is QMP's: the reset and its RESET event follow the reply.
        guest.requestReset()
        return ""
      case "help|?":
        // `help`, `help CMD`, `help info` (the info subcommands).
        let topic = argument.split(separator: " ").map(String.init)
        guard let first = topic.first else { return helpLines(commands) }
        guard let e = lookup(first, in: commands) else { return "unknown command: '\(first)'\r\n" }
        if e.0 == "info" {
          guard topic.count > 1 else { return helpLines(infoCommands, prefix: "info ") }
          guard let sub = lookup(topic[1], in: infoCommands) else {
            return "unknown command: 'info \(topic[1])'\r\n"
          }
          return helpLines([sub], prefix: "info ")
        }
        return helpLines([e])
      default:  // info
        let sub = argument.split(separator: " ").first.map(String.init) ?? ""
        switch sub {
        case "": return helpLines(infoCommands, prefix: "info ")
        case "qtree": return qtree(guest)
        case "status": return "VM status: \(statusText(guest.status))\r\n"
        default: return "info: unknown command: '\(sub)'\r\n"
        }
      }
    } catch {
      return "Error: \(error.message)\r\n"
    }
  }

  /// `info status` as `hmp_info_status` words it: `running`, `paused`, or `paused (STATE)` for
  /// another stopped state (`prelaunch`, `shutdown`).
  static func statusText(_ status: String) -> String {
    switch status {
    case "running", "paused": status
    default: "paused (\(status))"
    }
  }

  static func qtree(_ guest: Guest) -> String {
    var lines = ["bus: main-system-bus", "  type System"]
    if guest.hasAPBus {
      lines += ["  dev: ap-bridge, id \"\"", "    bus: ap-bus", "      type ap-bus"]
      if let d = guest.device {
        lines += ["      dev: vfio-ap, id \"\(d.id ?? "")\"", "        sysfsdev = \"\(d.sysfsdev)\""]
      }
    }
    return lines.map { $0 + "\r\n" }.joined()
  }
}

extension Array where Element == String {
  fileprivate func splitFirst() -> (String, String) {
    (first ?? "", count > 1 ? self[1] : "")
  }
}
