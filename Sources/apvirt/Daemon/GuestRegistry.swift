import Foundation
import HostKernel
import Logging
import Synchronization
import VMM

/// The guests a daemon runs (each the emulated counterpart of one QEMU process), with their QMP
/// monitors.
final class GuestRegistry: Sendable {
  struct Entry: Sendable {
    var guest: Guest
    var monitors: [JSONStreamServer]
  }

  let host: EmulatedHost
  let logger: Logger
  /// Where the daemon mounts the host's sysfs (`/run/apvirt/sys`), absolute: a guest's
  /// `sysfsdev` may name its device there as well as under `/sys`.
  let sysfsMount: String?
  let guests = Mutex<[String: Entry]>([:])

  init(host: EmulatedHost, logger: Logger, sysfsMount: String? = nil) {
    self.host = host
    self.logger = logger
    self.sysfsMount = sysfsMount.map { m in
      m.hasPrefix("/") ? m : FileManager.default.currentDirectoryPath + "/" + m
    }
  }

  struct StartFailure: Error {
    /// QEMU's message, `qemu-system-s390x: ...`.
    var message: String
  }

  /// What `qemu-system-s390x ARGS` does: parse, start the guest, realize its devices, open its
  /// monitors. Returns the guest and the warnings QEMU prints.
  ///
  /// `descriptors` are the listening sockets the emulator process was given for its monitors
  /// (`-chardev socket,fd=N`) and passed on, in the order of the command line; they are this
  /// call's to keep or close. `emulator` is that process's pid.
  func start(argv: [String], version: QEMUVersion, descriptors: [Int32] = [], emulator: Int32? = nil)
    throws(StartFailure) -> (Guest, [String])
  {
    let prefix = QEMUCommandLine.programName + ": "
    var unused = descriptors
    defer { for d in unused { close(d) } }
    var parsed: GuestConfiguration
    do throws(QEMUCommandLine.Failure) {
      parsed = try QEMUCommandLine.parse(argv, version: version)
    } catch {
      throw StartFailure(message: error.description)
    }
    // `-version`, `-machine help` and the like start nothing: the emulator prints them itself.
    if parsed.information != nil {
      throw StartFailure(message: prefix + "an informational option (-version, help) starts no guest")
    }
    if let sysfsMount { parsed.sysfsMounts = [sysfsMount] }
    let config = parsed
    guard config.monitorDescriptors.count == descriptors.count else {
      throw StartFailure(
        message: prefix
          + "-chardev socket,fd=\(config.monitorDescriptors.map(String.init).joined(separator: ",")): the emulator passed \(descriptors.count) of the \(config.monitorDescriptors.count) monitor sockets"
      )
    }
    let definition = host.withKernel { $0.machine.definition }
    var warnings: [String] = []
    do throws(CPUModel.Failure) {
      (_, warnings) = try CPUModel.parse(config.cpu, machine: definition)
    } catch {
      throw StartFailure(message: prefix + error.message)
    }
    if guests.withLock({ $0[config.name] != nil }) {
      throw StartFailure(message: prefix + "a guest named '\(config.name)' is already running on this host")
    }
    let guest: Guest
    do throws(DeviceError) {
      guest = try Guest(host: host, configuration: config, version: version)
    } catch {
      throw StartFailure(message: prefix + error.message)
    }
    guest.emulatorPID = emulator
    warnings += guest.warnings
    // The monitors: the sockets the emulator passed, then the paths of `-qmp`; each is QMP on the
    // guest. If one cannot be opened, QEMU exits: the guest goes, and so do the others.
    var monitors: [JSONStreamServer] = []
    func open(_ what: String, _ make: () throws(JSONStreamServer.ServerError) -> JSONStreamServer)
      throws(StartFailure)
    {
      do {
        let server = try make()
        monitors.append(server)
        Thread.detachNewThread { server.run { connection in QMPSession(guest: guest).serve(connection) } }
      } catch {
        guest.quit(reason: "host-error")
        for m in monitors { m.stop() }
        throw StartFailure(message: prefix + "\(what): \(error)")
      }
    }
    for (n, fd) in zip(config.monitorDescriptors, descriptors) {
      try open("-chardev socket,fd=\(n)") { () throws(JSONStreamServer.ServerError) in
        let server = try JSONStreamServer(listening: fd)
        // The server has it now; one it refused is closed with the rest.
        unused.removeAll { $0 == fd }
        return server
      }
    }
    for path in config.qmpSockets {
      try open("-qmp unix:\(path)") { () throws(JSONStreamServer.ServerError) in
        try JSONStreamServer(path: path)
      }
    }
    guests.withLock { $0[config.name] = Entry(guest: guest, monitors: monitors) }
    logger.info("guest \(config.name) started (VM \(guest.vmID), QEMU \(version))")
    // When the guest quits, its monitors close and it leaves the registry.
    Thread.detachNewThread { [self] in
      guest.waitUntilQuit()
      let entry = guests.withLock { $0.removeValue(forKey: config.name) }
      for m in entry?.monitors ?? [] { m.stop() }
      logger.info("guest \(config.name) quit")
    }
    return (guest, warnings)
  }

  func guest(named name: String) -> Guest? { guests.withLock { $0[name]?.guest } }

  var names: [String] { guests.withLock { $0.keys.sorted() } }

  func quitAll() {
    for g in guests.withLock({ $0.values.map(\.guest) }) { g.quit(reason: "host-signal") }
  }
}
