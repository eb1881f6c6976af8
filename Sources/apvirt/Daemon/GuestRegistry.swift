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
  let guests = Mutex<[String: Entry]>([:])

  init(host: EmulatedHost, logger: Logger) {
    self.host = host
    self.logger = logger
  }

  struct StartFailure: Error {
    /// QEMU's message, `qemu-system-s390x: ...`.
    var message: String
  }

  /// What `qemu-system-s390x ARGS` does: parse, start the guest, realize its devices, open its
  /// monitors. Returns the guest and the warnings QEMU prints.
  func start(argv: [String], version: QEMUVersion) throws(StartFailure) -> (Guest, [String]) {
    let prefix = QEMUCommandLine.programName + ": "
    let config: GuestConfiguration
    do throws(QEMUCommandLine.Failure) {
      config = try QEMUCommandLine.parse(argv)
    } catch {
      throw StartFailure(message: error.description)
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
    var monitors: [JSONStreamServer] = []
    for path in config.qmpSockets {
      do {
        let server = try JSONStreamServer(path: path)
        monitors.append(server)
        Thread.detachNewThread {
          server.run { connection in QMPSession(guest: guest).serve(connection) }
        }
      } catch {
        guest.quit(reason: "host-error")
        for m in monitors { m.stop() }
        throw StartFailure(message: prefix + "-qmp unix:\(path): \(error)")
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
