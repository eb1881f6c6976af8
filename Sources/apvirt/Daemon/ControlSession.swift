import Foundation
import HostKernel
import Synchronization
import VMM

/// One connection to the control socket: reads requests in order, runs them, answers each.
///
/// Guests started on the connection (`guest-start`, by `apvirt qemu`) live as long as it does,
/// as a guest lives as long as its QEMU process: when the client goes, they quit.
final class ControlSession {
  let daemon: HostDaemon
  let connection: JSONStreamServer.Connection
  var owned: [Guest] = []

  init(daemon: HostDaemon, connection: JSONStreamServer.Connection) {
    self.daemon = daemon
    self.connection = connection
  }

  /// The arguments whose numbers no integer field takes (fractions, beyond Int64, negative
  /// where only UInt64 fits), to name them when decoding fails.
  var numbers: [String: String] = [:]

  static func suspectNumbers(_ arguments: QMPValue?) -> [String: String] {
    guard case .object(let members)? = arguments else { return [:] }
    var out: [String: String] = [:]
    for (k, v) in members {
      switch v {
      case .double, .uint: out[k] = v.json
      case .int(let i) where i < 0: out[k] = v.json
      default: break
      }
    }
    return out
  }

  func serve() {
    defer { for g in owned { g.quit(reason: "host-signal") } }
    while let received = connection.receive() {
      let text: Data
      switch received {
      case .invalid(let message):
        send(ControlWire.Reply<NoReply>.failure(ControlFailure(message)))
        continue
      case .value(let v):
        guard case .object(let members) = v else {
          send(ControlWire.Reply<NoReply>.failure(ControlFailure("QMP input must be a JSON object")))
          continue
        }
        guard let execute = v["execute"] else {
          send(ControlWire.Reply<NoReply>.failure(ControlFailure("QMP input lacks member 'execute'")))
          continue
        }
        guard case .string = execute else {
          send(
            ControlWire.Reply<NoReply>.failure(ControlFailure("QMP input member 'execute' must be a string")))
          continue
        }
        if let a = v["arguments"], case .object = a {
        } else if v["arguments"] != nil {
          send(
            ControlWire.Reply<NoReply>.failure(
              ControlFailure("QMP input member 'arguments' must be an object")))
          continue
        }
        if let extra = members.first(where: { $0.0 != "execute" && $0.0 != "arguments" }) {
          send(
            ControlWire.Reply<NoReply>.failure(ControlFailure("QMP input member '\(extra.0)' is unexpected")))
          continue
        }
        text = Data(v.json.utf8)
        numbers = Self.suspectNumbers(v["arguments"])
      }
      if handle(text) == .stop { return }
      daemon.session.sendInvalidations()
      daemon.syncDmesg()
    }
  }

  enum Outcome { case next, stop }

  /// Runs one request (already known to be an object with a string `execute`).
  func handle(_ data: Data) -> Outcome {
    let head: ControlWire.Head
    do {
      head = try JSONDecoder().decode(ControlWire.Head.self, from: data)
    } catch {
      send(
        ControlWire.Reply<NoReply>.failure(ControlFailure("QMP input member 'arguments' must be an object")))
      return .next
    }
    let host = daemon.host
    let guests = daemon.guests
    typealias C = ControlCommands
    switch head.execute {
    case C.Status.name:
      run(C.Status.self, data, head) { _ in
        ControlProtocol.status(
          host, guests: guests, boot: self.daemon.bootSteps, state: self.daemon.paths.state)
      }
    case C.Dmesg.name: run(C.Dmesg.self, data, head) { _ in ControlProtocol.dmesg(host) }
    case C.Quit.name:
      let ok = run(C.Quit.self, data, head) { _ in NoReply() }
      if ok {
        daemon.stop(reason: "quit on the control socket")
        return .stop
      }
    case C.AdapterConfig.name:
      run(C.AdapterConfig.self, data, head) { c throws(ControlFailure) in
        try HardwareControl.adapterConfig(c, host)
      }
    case C.AdapterCheckstop.name:
      run(C.AdapterCheckstop.self, data, head) { c throws(ControlFailure) in
        try HardwareControl.adapterCheckstop(c, host)
      }
    case C.AdapterAdd.name:
      run(C.AdapterAdd.self, data, head) { c throws(ControlFailure) in
        try HardwareControl.adapterAdd(c, host)
      }
    case C.AdapterRemove.name:
      run(C.AdapterRemove.self, data, head) { c throws(ControlFailure) in
        try HardwareControl.adapterRemove(c, host)
      }
    case C.DomainAdd.name:
      run(C.DomainAdd.self, data, head) { c throws(ControlFailure) in
        try HardwareControl.domain(
          add: true, c.domain, usage: c.usage ?? true, control: c.control ?? true, host)
      }
    case C.DomainRemove.name:
      run(C.DomainRemove.self, data, head) { c throws(ControlFailure) in
        try HardwareControl.domain(
          add: false, c.domain, usage: c.usage ?? true, control: c.control ?? true, host)
      }
    case C.AdapterLatency.name:
      run(C.AdapterLatency.self, data, head) { c throws(ControlFailure) in
        try HardwareControl.adapterLatency(c, host)
      }
    case C.Fault.name:
      run(C.Fault.self, data, head) { c throws(ControlFailure) in try HardwareControl.fault(c, host) }
    case C.GuestStart.name:
      run(C.GuestStart.self, data, head) { c throws(ControlFailure) in try self.start(c) }
    case C.GuestWait.name:
      guard let _ = decode(C.GuestWait.self, data, head) else { return .next }
      // Answered when the guests quit; meanwhile the loop goes on reading, so that the client's
      // end (QEMU killed) quits them.
      let waited = owned
      let connection = self.connection
      let daemon = self.daemon
      daemon.guestWaits.add(1, ordering: .relaxed)
      Thread.detachNewThread {
        for g in waited { g.waitUntilQuit() }
        let reason =
          daemon.isStopping ? "host-stopped" : (waited.compactMap(\.quitReason).first ?? "host-qmp-quit")
        Self.send(connection, ControlWire.Reply.success(C.GuestWait.Reply(reason: reason)))
        daemon.guestWaits.subtract(1, ordering: .relaxed)
      }
    case C.GuestList.name: run(C.GuestList.self, data, head) { _ in guests.names }
    case C.GuestAP.name:
      run(C.GuestAP.self, data, head) { c throws(ControlFailure) in try GuestControl.apInstruction(c, guests)
      }
    case C.GuestDevice.name:
      run(C.GuestDevice.self, data, head) { c throws(ControlFailure) in try GuestControl.device(c, guests) }
    case C.GuestDeviceAdd.name:
      run(C.GuestDeviceAdd.self, data, head) { c throws(ControlFailure) in
        try GuestControl.deviceAdd(c, guests)
      }
    case C.GuestDeviceDel.name:
      run(C.GuestDeviceDel.self, data, head) { c throws(ControlFailure) in
        try GuestControl.deviceDel(c, guests)
        return NoReply()
      }
    default:
      send(
        ControlWire.Reply<NoReply>.failure(
          ControlFailure("The command \(head.execute) has not been found", errorClass: "CommandNotFound")))
    }
    return .next
  }

  func start(_ c: ControlCommands.GuestStart) throws(ControlFailure) -> ControlCommands.GuestStart.Reply {
    let version: QEMUVersion
    if let text = c.version {
      if let problem = QEMUVersion.problem(text) {
        throw ControlFailure("Parameter 'version' '\(text)': \(problem)")
      }
      version = QEMUVersion(text)!
    } else {
      version = .current
    }
    do throws(GuestRegistry.StartFailure) {
      // The monitor sockets the emulator passed with the request, and who it is.
      let (g, warnings) = try daemon.guests.start(
        argv: c.argv, version: version, descriptors: connection.takeDescriptors(),
        emulator: connection.peerPID)
      if c.daemonize != true { owned.append(g) }
      return .init(name: g.name, vm: g.vmID, warnings: warnings)
    } catch {
      throw ControlFailure(error.message)
    }
  }

  /// Decodes, runs and answers one command; true if it succeeded.
  @discardableResult
  func run<Command: ControlCommand>(
    _: Command.Type, _ data: Data, _ head: ControlWire.Head,
    _ body: (Command) throws(ControlFailure) -> Command.Reply
  ) -> Bool {
    guard let command = decode(Command.self, data, head) else { return false }
    do throws(ControlFailure) {
      send(ControlWire.Reply.success(try body(command)))
      if !Command.name.hasPrefix("guest-") && Command.name != "status" && Command.name != "dmesg" {
        daemon.logger.info("control: \(Command.name) done")
      }
      return true
    } catch {
      send(ControlWire.Reply<Command.Reply>.failure(error))
      if !Command.name.hasPrefix("guest-") {
        daemon.logger.warning("control: \(Command.name) refused: \(error.desc)")
      }
      return false
    }
  }

  func decode<Command: ControlCommand>(_: Command.Type, _ data: Data, _ head: ControlWire.Head) -> Command? {
    do throws(ControlFailure) {
      return try ControlWire.decode(Command.self, data, head: head, numbers: numbers)
    } catch {
      send(ControlWire.Reply<Command.Reply>.failure(error))
      return nil
    }
  }

  func send<R: Codable>(_ reply: ControlWire.Reply<R>) { Self.send(connection, reply) }

  static func send<R: Codable>(_ connection: JSONStreamServer.Connection, _ reply: ControlWire.Reply<R>) {
    // Replies are plain structs of strings, numbers and arrays: encoding them does not fail.
    guard let data = try? ControlWire.encoder().encode(reply) else { return }
    connection.sendLine(String(decoding: data, as: UTF8.self))
  }
}
