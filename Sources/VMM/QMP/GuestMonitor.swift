import Foundation

/// A guest's monitor: the commands QMP runs on it (the session answers negotiation, the version,
/// the command list and `quit` itself), and the QOM paths it shows.
extension Guest: QMPTarget {
  public var commandNames: [String] { QMPSession.commands }

  public func quitFromMonitor() { quit() }

  /// A `system_powerdown` takes effect: the guest shuts down (SHUTDOWN, its own); with
  /// `-no-shutdown` it then stops (STOP, status `shutdown`) and waits to be ended, as QEMU's
  /// `qemu_system_shutdown` does; otherwise QEMU, and with it the guest, ends.
  /// `qemu_system_reset_request(SHUTDOWN_CAUSE_HOST_QMP_SYSTEM_RESET)`: done after the reply.
  func requestReset() { state.withLock { $0.resetRequested = true } }

  public func afterReply() {
    let reset = state.withLock { s in
      defer { s.resetRequested = false }
      return s.resetRequested && !s.quit
    }
    if reset {
      _ = systemReset()
      emit("RESET", .object([("guest", .bool(false)), ("reason", .string("host-qmp-system-reset"))]))
    }
    let requested = state.withLock { s in
      defer { s.powerdownRequested = false }
      return s.powerdownRequested && !s.quit
    }
    guard requested else { return }
    guard noShutdown else {
      quit(reason: "guest-shutdown")
      return
    }
    state.withLock { $0.status = "shutdown" }
    emit("SHUTDOWN", .object([("guest", .bool(true)), ("reason", .string("guest-shutdown"))]))
    emit("STOP", nil)
  }

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
      // QEMU requests the reset and answers; the main loop resets and then says so (RESET).
      _ = try S.arguments(args, required: [])
      requestReset()
      return .emptyObject
    case "device_add":
      guard case .object(let props) = args else { throw DeviceError("Parameter 'driver' is missing") }
      let ordered = props.sorted { QEMUCommandLine.driverFirst($0.0, $1.0) }
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
    case "system_powerdown":
      // The guest (a Linux that honours the signal quiescence request) shuts down once the
      // reply is out (`afterReply`).
      _ = try S.arguments(args, required: [])
      state.withLock { $0.powerdownRequested = true }
      return .emptyObject
    case "query-migrate-capabilities":
      _ = try S.arguments(args, required: [])
      let set = state.withLock { $0.migrationCapabilities }
      return .array([.object([("capability", .string("events")), ("state", .bool(set["events"] ?? false))])])
    case "migrate-set-capabilities":
      let a = try S.arguments(args, required: ["capabilities"])
      guard case .array(let list)? = a["capabilities"] else {
        throw DeviceError("Invalid parameter type for 'capabilities', expected: array")
      }
      var set: [String: Bool] = [:]
      for item in list {
        guard let name = item["capability"]?.stringValue, case .bool(let on)? = item["state"] else {
          throw DeviceError("Parameter 'capabilities' is missing its capability or state")
        }
        guard name == "events" else {
          throw DeviceError("Parameter 'capability' does not accept value '\(name)'")
        }
        set[name] = on
      }
      state.withLock { $0.migrationCapabilities.merge(set) { $1 } }
      return .emptyObject
    case "query-chardev":
      // The monitor's chardev, then each console's pseudo-terminal (libvirt reads its path).
      _ = try S.arguments(args, required: [])
      let monitor = QMPValue.object([
        ("frontend-open", .bool(true)), ("filename", .string("unix:,server=on")),
        ("label", .string("charmonitor")),
      ])
      return .array(
        [monitor]
          + ptys.map {
            .object([
              ("frontend-open", .bool(true)), ("filename", .string("pty:" + $0.path)),
              ("label", .string($0.id)),
            ])
          })
    case "query-hotpluggable-cpus":
      _ = try S.arguments(args, required: [])
      return .array(
        (0..<vcpus).reversed().map { i in
          .object([
            ("props", .object([("core-id", .int(i))])), ("vcpus-count", .int(1)),
            ("qom-path", .string("/machine/unattached/device[\(i)]")),
            ("type", .string("\(cpu.name)-s390x-cpu")),
          ])
        })
    case "query-cpus-fast":
      // Each vCPU runs on the emulator process's thread: the one live thread libvirt can find.
      _ = try S.arguments(args, required: [])
      let thread = Int(emulatorPID ?? getpid())
      return .array(
        (0..<vcpus).map { i in
          .object([
            ("thread-id", .int(thread)), ("props", .object([("core-id", .int(i))])),
            ("qom-path", .string("/machine/unattached/device[\(i)]")), ("cpu-index", .int(i)),
            ("target", .string("s390x")),
            ("cpu-state", .string(status == "running" ? "operating" : "stopped")),
          ])
        })
    case "query-iothreads", "query-block", "query-blockstats":
      _ = try S.arguments(args, required: [], optional: name == "query-blockstats" ? ["query-nodes"] : [])
      return .array([])
    case "query-named-block-nodes":
      _ = try S.arguments(args, required: [], optional: ["flat"])
      return .array([])
    case "query-target":
      _ = try S.arguments(args, required: [])
      return .object([("arch", .string("s390x"))])
    case "query-balloon":
      _ = try S.arguments(args, required: [])
      try requireBalloon()
      return .object([("actual", .int(state.withLock { $0.balloonTarget } ?? memoryBytes))])
    case "balloon":
      // The guest's balloon driver gives what it is asked at once: the target is the size.
      let a = try S.arguments(args, required: ["value"])
      try requireBalloon()
      guard case .int(let value)? = a["value"], value > 0 else {
        throw DeviceError("Parameter 'value' expects a size")
      }
      let target = min(value, memoryBytes)
      let changed = state.withLock { s in
        defer { s.balloonTarget = target }
        return (s.balloonTarget ?? memoryBytes) != target
      }
      if changed { emit("BALLOON_CHANGE", .object([("actual", .int(target))])) }
      return .emptyObject
    case "query-kvm":
      _ = try S.arguments(args, required: [])
      return .object([("enabled", .bool(true)), ("present", .bool(true))])
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
      return entries(
        (d.flatMap { $0.id }.map { [($0, "child<vfio-ap>")] } ?? [])
          + inertDevices.map { ($0.id, "child<\($0.driver)>") })
    case "/machine/peripheral-anon":
      return entries(
        d.flatMap { $0.id == nil ? $0.qomPath.split(separator: "/").last.map(String.init) : nil }.map {
          [($0, "child<vfio-ap>")]
        } ?? [])
    case "/machine/ap-bridge" where hasAPBus:
      return entries([("type", "string"), ("ap-bus", "child<ap-bus>")])
    default:
      if let d, path == d.qomPath {
        // From QEMU 9.0 vfio-ap, like every vfio device, has an `iommufd` link (and `fd`).
        return entries(
          [
            ("type", "string"), ("parent_bus", "link<bus>"), ("realized", "bool"), ("hotpluggable", "bool"),
            ("hotplugged", "bool"), ("sysfsdev", "str"),
          ] + (version >= .iommufd ? [("iommufd", "link<iommufd>")] : []))
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
    case "hotplugged": return .bool(d.hotplugged)
    case "iommufd" where version >= .iommufd: return .string("")
    case "parent_bus": return .string("/machine/ap-bridge/ap-bus")
    default: throw DeviceError("Property '\(property)' not found")
    }
  }
}
