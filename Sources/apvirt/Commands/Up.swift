import ArgumentParser
import Foundation
import Logging
import Machine
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// `apvirt up`: run the emulated host in the foreground.
struct Up: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Boot the emulated host and serve its sysfs through FUSE until stopped.",
    discussion: """
      Boots the machine (the embedded default unless --machine is given), runs the host kernel's \
      AP bus, zcrypt, vfio_ap and KVM, and mounts the kernel's sysfs at --mount (DIR/bus/ap, \
      DIR/devices/ap, DIR/devices/vfio_ap, DIR/bus/mdev, DIR/class/mdev_bus). The AP bus scans \
      every config_time seconds in real time. mdevs that mdevctl defined in the state directory \
      (STATE/etc/mdevctl.d) with "start": "auto" are started at boot, as udev does on a real host.

      Beside the mount: control.sock (for `apvirt hw`, `apvirt status`, `apvirt down`), dmesg (the \
      host kernel's log) and apvirt.pid. The host is ready when DIR/bus/ap/apmask can be read. \
      Stop it with Ctrl-C, SIGTERM or `apvirt down`; the mount goes with it. A mount left behind \
      by a killed daemon is cleared at the next start.

      Needs root (mount(2)), or fusermount3 for an unprivileged mount.

      Next, in another shell:
        apvirt exec -- mdevctl types
        cat /run/apvirt/sys/bus/ap/apmask
        echo -5 > /run/apvirt/sys/bus/ap/apmask
      """)

  @Option(name: .long, help: "A machine definition (YAML). Default: the embedded default machine.")
  var machine: String?

  @Option(name: .long, help: "Where to mount the emulated sysfs.")
  var mount: String = RuntimePaths.defaultMount

  @Option(name: .long, help: "The state directory (holds etc/mdevctl.d).")
  var state: String = RuntimePaths.defaultState

  @Option(name: .long, help: "FUSE request threads.")
  var threads: Int = 4

  @Option(
    name: .long,
    help: ArgumentHelp(
      "A group whose members may use the control socket (mode 0660).",
      discussion: "Without it only the daemon's user can (mode 0600, runtime directory 0700)."))
  var group: String?

  @Flag(
    name: .long,
    help: ArgumentHelp(
      "Send the host's uevents to libudev listeners, as udevd re-broadcasts them.",
      discussion: """
        libvirt's node devices and `udevadm monitor --udev` follow devices through these
        netlink messages. They reach every libudev listener in the network namespace,
        the host's own udev clients included, so they are off unless asked for.
        """))
  var udevEvents = false

  func validate() throws {
    guard (1...64).contains(threads) else { throw ValidationError("--threads must be 1 to 64") }
  }

  func run() throws {
    LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
    var logger = Logger(label: "apvirt")
    logger.logLevel = .info
    // What the daemon creates is its own unless a mode says otherwise: a umask of 000 in the
    // starting shell must not make the control socket or the kernel log world-writable.
    umask(0o077)
    var gid: gid_t?
    if let group {
      guard let g = getgrnam(group) else { throw ValidationError("--group \(group): no such group") }
      gid = g.pointee.gr_gid
    }
    let definition: MachineDefinition
    do {
      definition = try machine.map { try MachineDefinitionLoader.load(path: $0) } ?? .embeddedDefault
    } catch {
      throw ValidationError("\(error)")
    }
    // SIGINT and SIGTERM stop the daemon cleanly. The handlers are in place before anything is
    // mounted, so a signal that comes during start-up is not lost: it stops the daemon as soon as
    // it is up.
    let stopper = Stopper()
    for sig in [SIGINT, SIGTERM] {
      signal(sig, SIG_IGN)
      let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
      source.setEventHandler { stopper.request("signal \(sig)") }
      source.resume()
      signalSources.append(source)
    }
    let daemon: HostDaemon
    do {
      daemon = try HostDaemon(
        definition: definition, paths: RuntimePaths(mount: mount, state: state), threads: threads,
        group: gid, udevEvents: udevEvents, logger: logger)
    } catch {
      logger.error("\(error)")
      throw ExitCode.failure
    }
    stopper.attach(daemon)
    daemon.wait()
  }
}

/// Delivers a stop request to the daemon, or keeps it until the daemon exists.
final class Stopper: Sendable {
  let state = Mutex<(daemon: HostDaemon?, pending: String?)>((nil, nil))

  func request(_ reason: String) {
    let d: HostDaemon? = state.withLock { s in
      if s.daemon == nil { s.pending = reason }
      return s.daemon
    }
    d?.stop(reason: reason)
  }

  func attach(_ daemon: HostDaemon) {
    let pending: String? = state.withLock { s in
      s.daemon = daemon
      return s.pending
    }
    if let pending { daemon.stop(reason: pending) }
  }
}

/// Signal sources must outlive `run()`'s scope.
nonisolated(unsafe) var signalSources: [any DispatchSourceSignal] = []
