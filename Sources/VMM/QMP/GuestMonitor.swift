import Foundation

/// A guest's monitor: the commands QMP runs on it (the session answers negotiation, the version,
/// the command list and `quit` itself), and the QOM paths it shows.
extension Guest: QMPTarget {
  public var commandNames: [String] { QMPSession.commands }

  public func quitFromMonitor() { quit() }

  public func execute(_ name: String, _ args: QMPValue) throws(DeviceError) -> QMPValue {
    typealias S = QMPSession
    switch name {
    case "query-status":
      _ = try S.arguments(args, required: [])
      let status = status
      return .object([("running", .bool(status == "running")), ("status", .string(status))])
    case "stop":
      _ = try S.arguments(args, required: [])
      stop()
      return .emptyObject
    case "cont":
      _ = try S.arguments(args, required: [])
      cont()
      return .emptyObject
    case "system_reset":
      _ = try S.arguments(args, required: [])
      _ = systemReset()
      return .emptyObject
    case "device_add":
      guard case .object(let props) = args else { throw DeviceError("Parameter 'driver' is missing") }
      let ordered = props.sorted { a, b in a.0 == "driver" ? true : (b.0 == "driver" ? false : a.0 < b.0) }
      try deviceAdd(ordered)
      return .emptyObject
    case "device_del":
      let a = try S.arguments(args, required: ["id"])
      try deviceDel(try S.string(a, "id")!)
      return .emptyObject
    case "qom-list":
      let a = try S.arguments(args, required: ["path"])
      return try qomList(try S.string(a, "path")!)
    case "qom-get":
      let a = try S.arguments(args, required: ["path", "property"])
      return try qomGet(try S.string(a, "path")!, try S.string(a, "property")!)
    case "human-monitor-command":
      let a = try S.arguments(args, required: ["command-line"], optional: ["cpu-index"])
      return .string(HMP.run(try S.string(a, "command-line")!, guest: self))
    default:
      throw DeviceError("The command \(name) has not been found", errorClass: "CommandNotFound")
    }
  }

  // MARK: - QOM

  func qomList(_ path: String) throws(DeviceError) -> QMPValue {
    func entries(_ e: [(String, String)]) -> QMPValue {
      .array(e.map { .object([("name", .string($0.0)), ("type", .string($0.1))]) })
    }
    let d = device
    switch path {
    case "/":
      return entries([("type", "string"), ("machine", "child<s390-ccw-virtio-machine>")])
    case "/machine":
      var e = [
        ("type", "string"), ("peripheral", "child<container>"), ("peripheral-anon", "child<container>"),
      ]
      if hasAPBus { e.append(("ap-bridge", "child<ap-bridge>")) }
      return entries(e)
    case "/machine/peripheral":
      return entries(d.flatMap { $0.id }.map { [($0, "child<vfio-ap>")] } ?? [])
    case "/machine/peripheral-anon":
      return entries(
        d.flatMap { $0.id == nil ? $0.qomPath.split(separator: "/").last.map(String.init) : nil }.map {
          [($0, "child<vfio-ap>")]
        } ?? [])
    case "/machine/ap-bridge" where hasAPBus:
      return entries([("type", "string"), ("ap-bus", "child<ap-bus>")])
    default:
      if let d, path == d.qomPath {
        return entries([
          ("type", "string"), ("parent_bus", "link<bus>"), ("realized", "bool"), ("hotpluggable", "bool"),
          ("hotplugged", "bool"), ("sysfsdev", "str"),
        ])
      }
      throw DeviceError("Device '\(path)' not found", errorClass: "DeviceNotFound")
    }
  }

  func qomGet(_ path: String, _ property: String) throws(DeviceError) -> QMPValue {
    guard let d = device, path == d.qomPath || path == d.id else {
      if path == "/machine/ap-bridge" && hasAPBus && property == "type" { return .string("ap-bridge") }
      throw DeviceError("Device '\(path)' not found", errorClass: "DeviceNotFound")
    }
    switch property {
    case "sysfsdev": return .string(d.sysfsdev)
    case "type": return .string("vfio-ap")
    case "realized", "hotpluggable": return .bool(true)
    case "parent_bus": return .string("/machine/ap-bridge/ap-bus")
    default: throw DeviceError("Property '\(property)' not found")
    }
  }
}
