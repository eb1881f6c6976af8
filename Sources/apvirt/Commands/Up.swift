import ArgumentParser
import Foundation
import HostKernel
import Logging
import Machine
import Scenario
import Synchronization
import SystemPackage

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
      (STATE/etc/mdevctl.d) with "start": "auto" are started at boot, as udev does on a real host. \
      Its log, on standard error, says what it does and each sysfs store with its result (that \
      line comes within 10 ms of the store, as a journal's do).

      At boot the masks come from --cmdline (ap.apmask=, ap.aqmask=) and then from the \
      persistent masks of `apvirt chzdev -p`; `apvirt status` says what ran at boot and what \
      failed.

      The directory of the mount is the daemon's runtime directory, its own and locked (one \
      that holds other files is refused): control.sock (for `apvirt hw`, `apvirt status`, \
      `apvirt down`), dmesg (the host kernel's log), apvirt.pid and guests/ (each running \
      guest's own sysfs). The host is ready when DIR/bus/ap/apmask can be read. \
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

  @Option(
    name: .long,
    help: ArgumentHelp(
      "A scenario file (YAML): the machine, the masks, the mdevs and the guests to boot.",
      discussion: """
        The masks become chzdev's persistent masks and the mdevs mdevctl's definitions in the \
        state directory (one holding definitions of other mdevs is refused), so that the boot \
        applies them; the manual mdevs are started after the auto ones, then the guests. What \
        fails is reported with the file's line, in the log and by `apvirt status`. \
        `apvirt capture` writes one from a running host or a real /sys.
        """,
      valueName: "FILE"))
  var config: String?

  @Option(name: .long, help: "Where to mount the emulated sysfs.")
  var mount: String = RuntimePaths.environmentMount

  @Option(name: .long, help: "The state directory (holds etc/mdevctl.d).")
  var state: String = RuntimePaths.environmentState

  @Option(
    name: .long,
    help: ArgumentHelp(
      "FUSE request threads for the mount (1 to 64).",
      discussion:
        "Where the daemon may run on one CPU only (taskset -c 0), one of them reads requests at a time; the others take over while a store waits for a VMM."
    ))
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
        libvirt's node devices and `udevadm monitor --udev` follow devices through these \
        netlink messages. They reach every libudev listener in the network namespace, \
        the host's own udev clients included, so they are off unless asked for.
        """))
  var udevEvents = false

  @Option(
    name: .long,
    help: ArgumentHelp(
      "Kernel parameters for this boot: ap.apmask=MASK ap.aqmask=MASK.",
      discussion: """
        As on the kernel command line: a given mask starts empty and takes the value as \
        /sys/bus/ap/apmask would (0x-hex, or +/- terms applied to the empty mask); a \
        value that does not parse leaves it empty, as the kernel does. Masks that \
        survive every boot are chzdev's: `apvirt chzdev -t ap apmask=... -p`.
        """,
      valueName: "PARAMS"))
  var cmdline: String?

  @Option(
    name: .long,
    help: ArgumentHelp(
      "The upstream kernel to behave as: \(KernelProfile.known.map(\.description).joined(separator: ", ")).",
      discussion: """
        Its AP bus, zcrypt and vfio_ap files and rules: /sys/bus/ap/features and a queue's \
        ap_functions from 6.4, an mdev's ap_config from 6.10, the matrix device's features \
        from 6.12, the sharing conflict's new log text from 6.15, driver_override and \
        bindings_complete_count from 6.19. Default: the newest.
        """,
      valueName: "VERSION"))
  var kernel: String?

  func validate() throws {
    if config != nil && machine != nil {
      throw ValidationError("--config and --machine: the scenario names its machine")
    }
    guard (1...64).contains(threads) else { throw ValidationError("--threads must be 1 to 64") }
    if let kernel, KernelProfile(kernel) == nil {
      throw ValidationError(
        "--kernel \(kernel): not a kernel apvirt models; it knows \(KernelProfile.known.map(\.description).joined(separator: ", "))"
      )
    }
    if let cmdline {
      do throws(KernelParameters.Failure) {
        _ = try KernelParameters(commandLine: cmdline)
      } catch {
        throw ValidationError("--cmdline: \(error)")
      }
    }
  }

  func run() throws {
    let log = DaemonLog()
    LoggingSystem.bootstrap { DaemonLogHandler(label: $0, log: log) }
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
    var definition: MachineDefinition
    var scenarioBoot: ScenarioBoot?
    do {
      definition = try machine.map { try MachineDefinitionLoader.load(path: $0) } ?? .embeddedDefault
      if let config {
        let scenario = try ScenarioLoader.load(path: config)
        definition = scenario.machine
        scenarioBoot = ScenarioBoot(scenario: scenario, source: config)
      }
    } catch {
      throw RuntimeError("\(error)")
    }
    // --kernel, else the machine file's `kernel:`, else the newest.
    let profile: KernelProfile
    if let k = kernel.flatMap(KernelProfile.init) {
      profile = k
    } else if let named = definition.kernel {
      guard let k = KernelProfile(named) else {
        throw RuntimeError(
          "\(machine ?? config ?? "the machine"): kernel: \(named): not a kernel apvirt models; it knows \(KernelProfile.known.map(\.description).joined(separator: ", "))"
        )
      }
      profile = k
    } else {
      profile = .newest
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
        group: gid, udevEvents: udevEvents,
        parameters: (try? cmdline.map { try KernelParameters(commandLine: $0) }) ?? KernelParameters(),
        profile: profile, scenario: scenarioBoot,
        logger: logger, log: log)
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
