import ArgumentParser
import Foundation
import HostKernel
import Planning
import Scenario

/// `apvirt capture`: a scenario file from a sysfs root, with the guests' names and CPU models
/// from where a host keeps them (the emulated host's daemon, libvirt's domain XML).
struct Capture: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Write the scenario a sysfs root shows, for `apvirt up --config`.",
    discussion: """
      Reads a sysfs root (the running emulated host's mount by default; /sys on an LPAR; a plain \
      copy of either) and writes a scenario file: the machine (Na, Nd, APXA, QCI, AQIC, the \
      usage and control domains, each adapter's type, mode, depth and configuration), the \
      masks, every mdev with its matrix, and a guest for every mdev whose queues are in use.

      sysfs does not have the guests' names and CPU models. On the emulated host's mount the \
      daemon gives them (every guest it runs, with its -cpu, those without AP too), and the \
      machine's name, kernel, CRYCB format and latencies. With --libvirt DIR they come from \
      libvirt's domain XML files in DIR (/etc/libvirt/qemu on an LPAR, or files saved with \
      virsh dumpxml): the domain whose vfio-ap hostdev names an mdev in use is its guest, \
      with the -cpu libvirt builds from its <cpu>; a running domain without one is a guest \
      without an mdev, and a stopped one is left out. Without either, each guest is named after its mdev \
      (guest-62177883) with cpu host, and capture says so on stderr.

      Each mdev's start mode comes from mdevctl's definition in STATE/etc/mdevctl.d (--state; \
      on an LPAR --state /; on the emulated host's mount the daemon's state directory); \
      without definitions every mdev is `start: manual`.

      What no source has is left at the defaults and said in comments at the top of the file: \
      the machine's name on a copy (--name gives it), serial numbers and keys.
      """)

  @OptionGroup var root: SysfsRootOptions

  @Option(
    name: .long,
    help: ArgumentHelp(
      "A state directory whose etc/mdevctl.d gives the mdevs' start modes (/ on an LPAR).", valueName: "STATE"
    ))
  var state: String?

  @Option(
    name: .long,
    help: ArgumentHelp(
      "A directory of libvirt domain XML files (/etc/libvirt/qemu) that names the guests.", valueName: "DIR"))
  var libvirt: String?

  @Option(
    name: .shortAndLong,
    help: ArgumentHelp("Write the scenario to FILE instead of standard output.", valueName: "FILE"))
  var output: String?

  @Option(
    name: .long,
    help: "The machine's name in the scenario (default: the daemon's machine, else 'captured').")
  var name: String?

  func run() throws {
    let snapshot = try root.snapshot()
    let daemon = daemonStatus()
    let stateDirectory = state ?? daemon?.state
    let definitions = stateDirectory.map { ScenarioCapture.readDefinitions(directory: $0 + "/etc/mdevctl.d") }
    var known: ScenarioCapture.KnownGuests?
    if let libvirt {
      do throws(LibvirtDomain.ReadFailure) {
        let domains = try LibvirtDomain.read(directory: libvirt)
        known = ScenarioCapture.guests(libvirt: domains, directory: libvirt, snapshot: snapshot)
      } catch {
        throw RuntimeError("cannot read libvirt's domains: \(error)")
      }
    } else if let daemon {
      known = ScenarioCapture.KnownGuests(
        source: "the apvirt daemon at \(RuntimePaths(mount: root.sysfs).mount)",
        guests: daemon.vms.map { Scenario.Guest(name: $0.name, cpu: $0.cpu ?? "host", mdev: $0.mdev) })
    }
    let outcome = ScenarioCapture.capture(
      snapshot, definitions: definitions, guests: known, host: daemon.map(Self.facts), name: name)
    let scenario = outcome.scenario
    if !outcome.unnamedGuests.isEmpty {
      let n = outcome.unnamedGuests.count
      let why =
        known.map { "\($0.source) names no guest of mdev \(outcome.unnamedGuests.joined(separator: ", "))" }
        ?? "guest names and CPU models are not in sysfs and no daemon answers for \(snapshot.root); give --libvirt DIR with the guests' domain XML"
      warn(
        "\(n) guest\(n == 1 ? "" : "s") named after \(n == 1 ? "its mdev" : "their mdevs"), with cpu host: \(why)"
      )
    }
    for note in known?.notes ?? [] { warn(note) }
    let text = scenario.yamlText()
    guard let output else {
      print(text, terminator: "")
      return
    }
    do {
      try text.write(toFile: output, atomically: true, encoding: .utf8)
    } catch {
      throw RuntimeError("\(output): \(systemReason(error))")
    }
    print(
      "captured \(scenario.machine.adapters.count) adapters, \(scenario.mdevs.count) mdevs and \(scenario.guests.count) guests from \(snapshot.root) into \(output)"
    )
  }

  func warn(_ text: String) {
    FileHandle.standardError.write(Data("apvirt capture: \(text)\n".utf8))
  }

  /// The status of the daemon whose mount the root is (its control socket is beside it), or nil
  /// for any other root (/sys, a copy) and for a daemon that does not answer, which is said.
  func daemonStatus() -> HostStatus? {
    let paths = RuntimePaths(mount: root.sysfs)
    guard FileManager.default.fileExists(atPath: paths.controlSocket) else { return nil }
    do {
      return try ControlClient(paths: paths, timeout: 10).call(ControlCommands.Status())
    } catch {
      warn("\(error); the guests and the machine's name are taken from sysfs alone")
      return nil
    }
  }

  /// What the daemon knows of its machine that sysfs does not show.
  static func facts(_ st: HostStatus) -> ScenarioCapture.HostFacts {
    func ns(_ ms: Double) -> UInt64 { UInt64((ms * 1e6).rounded()) }
    var latencies: [Int: (reset: UInt64, irq: UInt64)] = [:]
    for a in st.adapters where a.resetLatencyMs > 0 || a.irqLatencyMs > 0 {
      latencies[a.apid] = (ns(a.resetLatencyMs), ns(a.irqLatencyMs))
    }
    return ScenarioCapture.HostFacts(
      machineName: st.machine, kernel: st.kernel == KernelProfile.newest.description ? nil : st.kernel,
      crycbFormat: st.crycbFormat, latencies: latencies)
  }
}
