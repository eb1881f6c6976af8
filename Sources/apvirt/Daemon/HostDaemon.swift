import FUSE
import Foundation
import HostKernel
import Logging
import Machine
import Synchronization
import SysfsFUSE
import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// A running emulated host: the kernel behind its lock, its sysfs mounted through FUSE, the
/// periodic AP bus scan in real time, the control socket, and the kernel log as a file.
final class HostDaemon: Sendable {
  let paths: RuntimePaths
  let host: EmulatedHost
  let logger: Logger
  let mount: FUSEMount
  let session: FUSESession
  let guestsMount: FUSEMount
  let guestsSession: FUSESession
  let control: JSONStreamServer
  let started = ContinuousClock.now
  private let stopping = Atomic<Bool>(false)
  private let finished = DispatchSemaphore(value: 0)
  let dmesgSync: DmesgSync
  let guests: GuestRegistry

  struct StartError: Error, CustomStringConvertible {
    var description: String
  }

  /// Boots the host and brings up its interfaces. Returns when the mount is ready.
  init(definition: MachineDefinition, paths: RuntimePaths, threads: Int, logger: Logger) throws {
    self.paths = paths
    self.logger = logger
    let fm = FileManager.default
    if FUSEMount.clearStale(paths.mount) {
      logger.notice("cleared a stale mount at \(paths.mount) left by a daemon that did not stop cleanly")
    }
    if FUSEMount.isMountPoint(paths.mount) {
      throw StartError(description: "\(paths.mount) is already mounted: is another apvirt up running?")
    }
    try fm.createDirectory(atPath: paths.mount, withIntermediateDirectories: true)
    try paths.prepareState()

    let kernel = HostKernel(definition: definition)
    host = EmulatedHost(kernel: kernel)
    guests = GuestRegistry(host: host, logger: logger)
    let (queues, cards) = host.withKernel { ($0.apBus.queues.count, $0.apBus.cards.count) }
    logger.info("booted machine '\(definition.name)': \(cards) cards, \(queues) queues")

    // What udev does when the matrix parent appears: mdevctl starts the auto-start mdevs.
    for line in MdevctlDefinitions(directory: paths.mdevctlDirectory).startAutoDevices(on: host) {
      logger.info("mdevctl start-parent-mdevs matrix: \(line)")
    }

    do {
      control = try JSONStreamServer(path: paths.controlSocket)
    } catch {
      throw StartError(description: "\(error)")
    }
    do {
      mount = try FUSEMount.mount(at: paths.mount)
    } catch {
      control.stop()
      throw StartError(description: "\(error)")
    }
    // The log file follows every store (a refused assignment logs why).
    let syncLog = DmesgSync(host: host, path: paths.dmesg)
    dmesgSync = syncLog
    let fs = SysfsFileSystem(host: host, afterWrite: { syncLog.sync() })
    // The kernel may cache entries and attributes for a second: what a store removes is
    // invalidated at once (FUSE_NOTIFY_INVAL_ENTRY), what it adds is never cached as missing, and
    // file contents are never cached (direct I/O), so readers see every change.
    session = FUSESession(
      fd: mount.fd, fileSystem: fs,
      cache: .init(entry: Timeout(seconds: 1), attributes: Timeout(seconds: 1)))
    // The guests' own views, beside the host's.
    _ = FUSEMount.clearStale(paths.guests)
    try fm.createDirectory(atPath: paths.guests, withIntermediateDirectories: true)
    do {
      guestsMount = try FUSEMount.mount(at: paths.guests)
    } catch {
      mount.unmount()
      control.stop()
      throw StartError(description: "\(error)")
    }
    guestsSession = FUSESession(
      fd: guestsMount.fd, fileSystem: GuestsFileSystem(host: host, registry: guests))
    writePidFile()
    syncDmesg()

    let session = self.session
    Thread.detachNewThread { [self] in
      session.serve(threads: threads)
      // The connection ended: unmounted from outside, or by us.
      self.stop(reason: "the FUSE connection ended")
    }
    let guestsSession = self.guestsSession
    Thread.detachNewThread { guestsSession.serve(threads: 2) }
    Thread.detachNewThread { [self] in self.serveControl() }
    Thread.detachNewThread { [self] in self.runTimers() }
    logger.info("sysfs mounted at \(paths.mount); control socket \(paths.controlSocket); ready")
  }

  /// Blocks until the daemon stops.
  func wait() { finished.wait() }

  /// Stops once: unmounts, closes the control socket, removes the runtime files.
  func stop(reason: String) {
    guard !stopping.exchange(true, ordering: .relaxed) else { return }
    logger.info("stopping: \(reason)")
    guests.quitAll()
    guestsMount.unmount()
    mount.unmount()
    control.stop()
    try? FileManager.default.removeItem(atPath: paths.pidFile)
    finished.signal()
  }

  /// The AP bus's periodic scans run on the kernel's clock; here that clock follows real time.
  func runTimers() {
    while !stopping.load(ordering: .relaxed) {
      Thread.sleep(forTimeInterval: 0.5)
      let elapsed = ContinuousClock.now - started
      let ns =
        UInt64(elapsed.components.seconds) * 1_000_000_000
        + UInt64(elapsed.components.attoseconds / 1_000_000_000)
      host.withKernel { $0.advance(to: ns) }
      session.sendInvalidations()
      syncDmesg()
    }
  }

  func syncDmesg() { dmesgSync.sync() }

  func writePidFile() {
    try? "\(getpid())\n".write(toFile: paths.pidFile, atomically: true, encoding: .utf8)
  }

  func serveControl() {
    control.run { [self] connection in
      // Guests started on this connection live as long as it does (the QEMU process).
      var owned: [Guest] = []
      defer { for g in owned { g.quit(reason: "host-signal") } }
      while let received = connection.receive() {
        guard case .value(let v) = received, let request = v.foundationObject as? [String: Any],
          let name = request["execute"] as? String
        else {
          connection.send(["error": ["class": "GenericError", "desc": "QMP input must be a JSON object"]])
          continue
        }
        if name == "quit" {
          connection.send(["return": [String: Any]()])
          stop(reason: "quit on the control socket")
          return
        }
        let args = request["arguments"] as? [String: Any] ?? [:]
        if name == "guest-start" {
          let argv = args["argv"] as? [String] ?? []
          let version = (args["version"] as? String).flatMap { QEMUVersion($0) } ?? .current
          do throws(GuestRegistry.StartFailure) {
            let (g, warnings) = try guests.start(argv: argv, version: version)
            if args["daemonize"] as? Bool != true { owned.append(g) }
            connection.send(["return": ["name": g.name, "vm": g.vmID, "warnings": warnings]])
          } catch {
            connection.send(["error": ["class": "GenericError", "desc": error.message]])
          }
          syncDmesg()
          continue
        }
        if name == "guest-wait" {
          // Answered when the guests quit; meanwhile the loop goes on reading, so that the
          // client's end (QEMU killed) quits them.
          let waited = owned
          Thread.detachNewThread {
            for g in waited { g.waitUntilQuit() }
            connection.send(["return": [String: Any]()])
          }
          continue
        }
        if name == "guest-list" {
          connection.send(["return": guests.names])
          continue
        }
        if name.hasPrefix("guest-") {
          do throws(ControlProtocol.Failure) {
            connection.send(["return": try GuestControl.execute(name, args, registry: guests)])
          } catch {
            connection.send(["error": ["class": error.errorClass, "desc": error.desc]])
          }
          session.sendInvalidations()
          syncDmesg()
          continue
        }
        do throws(ControlProtocol.Failure) {
          let result = try ControlProtocol.execute(
            name, request["arguments"] as? [String: Any] ?? [:], host: host)
          connection.send(["return": result])
          session.sendInvalidations()
          logger.info("control: \(name) done")
        } catch {
          connection.send(["error": ["class": error.errorClass, "desc": error.desc]])
        }
        syncDmesg()
      }
    }
  }
}
