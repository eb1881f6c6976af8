import APModel
import FUSE
import Foundation
import HostKernel
import Logging
import Machine
import Synchronization
import SysfsFUSE
import SystemPackage
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
  /// Where `logger`'s messages go, and each store's line (``DaemonLog/store(_:_:_:)``).
  let log: DaemonLog
  let mount: FUSEMount
  let session: FUSESession
  let guestsMount: FUSEMount
  let guestsSession: FUSESession
  let control: JSONStreamServer
  let started = ContinuousClock.now
  private let stopping = Atomic<Bool>(false)
  private let stopReason = Mutex<String?>(nil)

  /// `guest-wait` requests not yet answered.
  let guestWaits = Atomic<Int>(0)

  /// Whether the daemon is stopping (or stopped), and why.
  var isStopping: Bool { stopping.load(ordering: .relaxed) }
  private let finished = DispatchSemaphore(value: 0)
  /// The log file, `/dev/vfio`'s nodes (nil where they cannot be made: no CAP_MKNOD) and the
  /// uevent broadcaster (`--udev-events`), which follow every store.
  let followers: KernelFollowers
  let guests: GuestRegistry
  /// Held for the daemon's life: no second daemon on the same directories.
  let runtimeLock: DirectoryLock
  let stateLock: DirectoryLock
  /// What ran at boot besides the kernel (the persistent masks' udev rule, mdevctl's auto-start
  /// mdevs), and how it went: `apvirt status` shows it.
  var bootSteps: [BootStep] { boot.withLock { $0 } }
  private let boot = Mutex<[BootStep]>([])

  /// One thing done at boot, as `apvirt status` reports it.
  struct BootStep: Codable, Sendable, Equatable {
    var what: String
    var result: String
    var failed: Bool
  }

  struct StartError: Error, CustomStringConvertible {
    var description: String
  }

  /// Boots the host and brings up its interfaces. Returns when the mount is ready.
  ///
  /// Nothing is touched before the runtime and state directories are this daemon's: each is
  /// resolved (so that `//`, `.` and symbolic links name one directory), checked (this user's,
  /// writable by nobody else) and locked; a second daemon on either is refused with a message.
  init(
    definition: MachineDefinition, paths: RuntimePaths, threads: Int, group: gid_t? = nil,
    udevEvents: Bool = false, parameters: KernelParameters = KernelParameters(),
    profile: KernelProfile = .newest, scenario: ScenarioBoot? = nil,
    logger: Logger, log: DaemonLog
  ) throws {
    self.paths = paths
    self.logger = logger
    self.log = log
    do throws(RuntimeError) {
      let runtime = try paths.prepareRuntime(group: group)
      runtimeLock = try DirectoryLock(directory: runtime, role: "runtime")
      let state = try paths.prepareStateDirectory()
      stateLock = try DirectoryLock(directory: state, role: "state")
    } catch {
      throw StartError(description: error.description)
    }
    if FUSEMount.clearStale(paths.mount) {
      logger.notice("cleared a stale mount at \(paths.mount) left by a daemon that did not stop cleanly")
    }
    if FUSEMount.isMountPoint(paths.mount) {
      throw StartError(description: "\(paths.mount) is already mounted: is another apvirt up running?")
    }
    // A scenario (`--config`) is the state's configuration from here on: chzdev's rule and
    // mdevctl's definitions, which the boot below applies.
    var scenarioSteps: [BootStep] = []
    do throws(RuntimeError) {
      try RuntimePaths.makeDirectory(paths.mount, mode: 0o755)
      try paths.prepareState()
      scenarioSteps = try scenario?.install(paths: paths) ?? []
    } catch {
      throw StartError(description: error.description)
    }

    let kernel = HostKernel(definition: definition, parameters: parameters, profile: profile)
    host = EmulatedHost(kernel: kernel)
    guests = GuestRegistry(host: host, logger: logger, sysfsMount: paths.mount)
    let (queues, cards) = host.withKernel { ($0.apBus.queues.count, $0.apBus.cards.count) }
    logger.info("booted Linux \(profile) on machine '\(definition.name)': \(cards) cards, \(queues) queues")
    var boot: [BootStep] = parameters.problems.map {
      BootStep(what: "kernel command line", result: $0, failed: true)
    }
    boot += scenarioSteps
    boot += Self.applyPersistentMasks(host, state: paths.state)
    // What udev does when the matrix parent appears: mdevctl starts the auto-start mdevs. The
    // real one needs the mount (it runs below, once the mount is served); without it (no root,
    // no mdevctl) the daemon replays the definitions itself, before anyone can look.
    // With nothing to start (no auto definition, none unreadable) mdevctl would do nothing, and
    // starting it would cost every boot a process and a namespace.
    let definitions = MdevctlDefinitions(directory: paths.mdevctlDirectory)
    let realMdevctl = MdevctlBoot.available && definitions.hasBootWork
    if !realMdevctl {
      for line in definitions.startAutoDevices(on: host) {
        boot.append(
          BootStep(what: "mdevctl start-parent-mdevs matrix", result: line.text, failed: line.failed))
      }
    }
    Self.log(boot, logger)
    self.boot.withLock { $0 = boot }

    do {
      control = try JSONStreamServer(path: paths.controlSocket, mode: group == nil ? 0o600 : 0o660)
      if let group { _ = chown(paths.controlSocket, geteuid(), group) }
    } catch {
      throw StartError(description: "\(error)")
    }
    do {
      mount = try FUSEMount.mount(at: paths.mount)
    } catch {
      control.stop()
      throw StartError(description: "\(error)")
    }
    // What udevd would re-broadcast, from now on (libudev listeners enumerate what exists).
    let broadcaster: UEventBroadcaster?
    if udevEvents {
      do throws(UEventBroadcaster.Failure) {
        broadcaster = try UEventBroadcaster(after: host.withKernel { $0.uevents.lastSeqnum })
      } catch {
        mount.unmount()
        control.stop()
        throw StartError(description: error.description)
      }
    } else {
      broadcaster = nil
    }
    let vfioNodes: VFIODeviceNodes?
    do throws(VFIODeviceNodes.Failure) {
      vfioNodes = try VFIODeviceNodes(directory: paths.vfioDevices)
    } catch {
      vfioNodes = nil
      logger.notice("no /dev/vfio nodes for apvirt exec: \(error)")
    }
    // The log file follows every store (a refused assignment logs why), and so do the device
    // nodes and the uevents: a node is there before the uevent that makes a listener look.
    let followers = KernelFollowers(
      log: KernelLogFile(host: host, path: paths.dmesg), nodes: vfioNodes, events: broadcaster)
    self.followers = followers
    let notifyHost = host
    // Each store's line, unless the log's level leaves out `info`: written by the log shortly
    // after the store's reply, not before it.
    var onStore: (@Sendable (String, [UInt8], Errno?) -> Void)?
    if logger.logLevel <= .info { onStore = { @Sendable path, data, error in log.store(path, data, error) } }
    let fs = SysfsFileSystem(
      host: host,
      followUp: StoreFollowUp(isDue: { followers.isDue($0) }, follow: { followers.follow(notifyHost) }),
      onStore: onStore)
    // The kernel may cache entries and attributes for a second: what a store removes is
    // invalidated at once (FUSE_NOTIFY_INVAL_ENTRY), what it adds is never cached as missing, and
    // file contents are never cached (direct I/O), so readers see every change.
    session = FUSESession(
      fd: mount.fd, fileSystem: fs,
      cache: .init(entry: Timeout(seconds: 1), attributes: Timeout(seconds: 1)))
    // The guests' own views, beside the host's.
    _ = FUSEMount.clearStale(paths.guests)
    do {
      try RuntimePaths.makeDirectory(paths.guests, mode: 0o755)
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
    // On one CPU one thread at a time reads the connection (see FUSESession.readers(threads:)).
    let readers = FUSESession.readers(threads: threads)
    Thread.detachNewThread { [self] in
      session.serve(threads: threads, readers: readers)
      // The connection ended: unmounted from outside, or by us.
      self.stop(reason: "the FUSE connection ended")
    }
    let guestsSession = self.guestsSession
    Thread.detachNewThread { guestsSession.serve(threads: 2) }
    Thread.detachNewThread { [self] in self.runTimers() }
    if realMdevctl {
      let steps = MdevctlBoot(paths: paths).run().map {
        BootStep(what: "mdevctl start-parent-mdevs matrix", result: $0.text, failed: $0.failed)
      }
      Self.log(steps, logger)
      self.boot.withLock { $0 += steps }
      syncDmesg()
    }
    if let scenario {
      let steps = scenario.start(daemon: self)
      Self.log(steps, logger)
      self.boot.withLock { $0 += steps }
      syncDmesg()
    }
    // The control socket answers once boot is over: `apvirt status` (and a script waiting for
    // it) sees the mdevs udev's mdevctl started and the scenario's guests.
    Thread.detachNewThread { [self] in self.serveControl() }
    let serving =
      threads == 1
      ? "1 thread"
      : readers < threads
        ? "\(threads) threads, one reading at a time on the one CPU the daemon may run on"
        : "\(threads) threads"
    logger.info(
      "sysfs mounted at \(paths.mount), served by \(serving); control socket \(paths.controlSocket); ready")
  }

  static func log(_ steps: [BootStep], _ logger: Logger) {
    for step in steps {
      if step.failed {
        logger.warning("\(step.what): \(step.result)")
      } else {
        logger.info("\(step.what): \(step.result)")
      }
    }
  }

  /// What udevd does with chzdev's rule when the AP bus first reports its bindings complete:
  /// writes the persistent masks to `/sys/bus/ap/apmask` and `aqmask`.
  static func applyPersistentMasks(_ host: EmulatedHost, state: String) -> [BootStep] {
    let what = "udev rule " + PersistentAPMasks.path(state: state)
    let masks: PersistentAPMasks?
    do throws(RuntimeError) {
      masks = try PersistentAPMasks.read(state: state)
    } catch {
      return [BootStep(what: what, result: error.description, failed: true)]
    }
    guard let masks else { return [] }
    var steps: [BootStep] = []
    for (name, mask) in [("apmask", masks.apmask), ("aqmask", masks.aqmask)] {
      guard let mask else { continue }
      do throws(Errno) {
        try host.write("/bus/ap/" + name, Array(mask.hexString.utf8))
        steps.append(BootStep(what: what, result: "\(name) set to \(mask.hexString)", failed: false))
      } catch {
        steps.append(
          BootStep(what: what, result: "writing \(name) \(mask.hexString) failed: \(error)", failed: true))
      }
    }
    return steps
  }

  /// Blocks until the daemon stops.
  func wait() { finished.wait() }

  /// Stops once: unmounts, closes the control socket, removes the runtime files.
  func stop(reason: String) {
    guard !stopping.exchange(true, ordering: .relaxed) else { return }
    stopReason.withLock { $0 = reason }
    logger.info("stopping: \(reason)")
    guests.quitAll()
    // The guests' QEMU processes (`apvirt qemu`) are told why their guest went before their
    // connections close.
    let deadline = ContinuousClock.now + .seconds(1)
    while guestWaits.load(ordering: .relaxed) > 0 && ContinuousClock.now < deadline { usleep(5_000) }
    guestsMount.unmount()
    mount.unmount()
    control.stop()
    try? FileManager.default.removeItem(atPath: paths.pidFile)
    try? FileManager.default.removeItem(atPath: paths.vfioDevices)
    // The runtime directory keeps only its lock (which must outlive the daemon to stay one lock):
    // the empty mount points, the log of a kernel that is gone, exec's scratch directory.
    unlink(paths.dmesg)
    for dir in [paths.mount, paths.guests, paths.runtime + "/realsys"] { rmdir(dir) }
    // The last stores' lines, before `apvirt up` exits.
    log.flush()
    finished.signal()
  }

  /// The AP bus's periodic scans run on the kernel's clock; here that clock follows real time:
  /// it moves by the real time that passed, so that the time an operation waited inside the
  /// kernel (vfio_ap's reset check, which moves the clock itself) does not hold the timers back.
  func runTimers() {
    var last: UInt64 = 0
    while !stopping.load(ordering: .relaxed) {
      Thread.sleep(forTimeInterval: 0.5)
      let elapsed = ContinuousClock.now - started
      let ns =
        UInt64(elapsed.components.seconds) * 1_000_000_000
        + UInt64(elapsed.components.attoseconds / 1_000_000_000)
      let step = ns > last ? ns - last : 0
      last = max(last, ns)
      host.withKernel { $0.advance(by: step) }
      session.sendInvalidations()
      syncDmesg()
    }
  }

  /// After anything that may have logged or raised uevents: the log file and the listeners.
  func syncDmesg() {
    followers.follow(host)
  }

  func writePidFile() {
    RuntimePaths.writeFile(paths.pidFile, "\(getpid())\n", mode: 0o644)
  }

  func serveControl() {
    control.run { [self] connection in ControlSession(daemon: self, connection: connection).serve() }
  }
}
