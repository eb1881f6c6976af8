import Foundation
import HostKernel
import Scenario
import SystemPackage
import VMM

/// What `apvirt up --config FILE` adds to a boot. Before the kernel boots (the state directory
/// locked), the scenario becomes the state's configuration: its masks chzdev's persistent rule
/// (`etc/udev/rules.d/41-ap.rules`) and its mdevs mdevctl's definitions (`etc/mdevctl.d/matrix`),
/// so that the boot applies them as a real host's would and a later `apvirt up` on the same
/// state comes back the same. Once udev's mdevctl has started the `auto` mdevs, the rest are
/// started, then the guests, each as `apvirt qemu -name NAME -cpu CPU -device
/// vfio-ap,sysfsdev=...` would start it (in the daemon; they live as long as the host).
///
/// What fails is a boot step with the scenario's file and line, in the log and `apvirt status`.
struct ScenarioBoot: Sendable {
  let scenario: Scenario
  /// The scenario file, as given.
  let source: String

  func at(_ line: Int?) -> String { source + (line.map { ":\($0)" } ?? "") }

  /// Writes chzdev's rule and mdevctl's definitions. A definition of another mdev is refused:
  /// it would start at boot too, and the host would not be the scenario's.
  func install(paths: RuntimePaths) throws(RuntimeError) -> [HostDaemon.BootStep] {
    let dir = paths.mdevctlDirectory + "/matrix"
    let fm = FileManager.default
    let present = ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    let foreign = present.filter { scenario.mdev($0) == nil }
    if !foreign.isEmpty {
      throw RuntimeError(
        "\(source): the state directory \(paths.state) has mdevctl definitions the scenario does not list: \(foreign.joined(separator: ", ")) (in \(dir)); remove them (mdevctl undefine) or add them to the scenario"
      )
    }
    let masks = PersistentAPMasks(
      apmask: scenario.apmask == .all() ? nil : scenario.apmask,
      aqmask: scenario.aqmask == .all() ? nil : scenario.aqmask)
    try masks.write(state: paths.state)
    var steps: [HostDaemon.BootStep] = []
    if masks.apmask != nil || masks.aqmask != nil {
      steps.append(
        .init(
          what: "scenario \(source)", result: "masks kept in \(PersistentAPMasks.path(state: paths.state))",
          failed: false))
    }
    if !scenario.mdevs.isEmpty { try RuntimePaths.makeDirectory(dir, mode: 0o755) }
    for m in scenario.mdevs {
      let path = dir + "/" + m.uuid
      do {
        try m.mdevctlJSON.write(toFile: path, atomically: true, encoding: .utf8)
        _ = chmod(path, 0o644)
      } catch {
        throw RuntimeError("cannot write \(path): \(systemReason(error))")
      }
    }
    if !scenario.mdevs.isEmpty {
      steps.append(
        .init(
          what: "scenario \(source)", result: "\(scenario.mdevs.count) mdevctl definitions in \(dir)",
          failed: false))
    }
    return steps
  }

  /// Starts the mdevs that boot did not (the `manual` ones, and an `auto` one mdevctl refused is
  /// reported, not retried), then the guests.
  func start(daemon: HostDaemon) -> [HostDaemon.BootStep] {
    var steps: [HostDaemon.BootStep] = []
    let host = daemon.host
    func running(_ uuid: String) -> Bool { host.withKernel { $0.vfioAP.mdev(uuid) != nil } }
    for (i, m) in scenario.mdevs.enumerated() {
      let what = "\(at(m.line)): mdevs[\(i)] \(m.uuid)"
      if running(m.uuid) { continue }
      if m.start == .auto {
        steps.append(
          .init(what: what, result: "not started at boot (see mdevctl's step above)", failed: true))
        continue
      }
      do throws(MdevctlDefinitions.StartFailure) {
        try MdevctlDefinitions.start(m.uuid, attributes: m.attributes, on: host)
        steps.append(.init(what: what, result: "started (start: manual)", failed: false))
      } catch {
        switch error {
        case .create(let e): steps.append(.init(what: what, result: "create failed: \(e)", failed: true))
        case .attribute(let attr, let value, let e):
          steps.append(.init(what: what, result: "not started, echo \(value) > \(attr): \(e)", failed: true))
        }
      }
    }
    let version =
      ProcessInfo.processInfo.environment["APVIRT_QEMU_VERSION"].flatMap { QEMUVersion($0) } ?? .current
    for (i, g) in scenario.guests.enumerated() {
      let what = "\(at(g.line)): guests[\(i)] \(g.name)"
      do throws(GuestRegistry.StartFailure) {
        let (guest, warnings) = try daemon.guests.start(argv: g.qemuArguments, version: version)
        let extra = warnings.isEmpty ? "" : "; " + warnings.joined(separator: "; ")
        steps.append(.init(what: what, result: "started (VM \(guest.vmID))\(extra)", failed: false))
      } catch {
        steps.append(.init(what: what, result: error.message, failed: true))
      }
    }
    return steps
  }
}
