import ArgumentParser
import Foundation
import Planning
import Scenario

/// `apvirt capture`: a scenario file from a sysfs root.
struct Capture: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Write the scenario a sysfs root shows, for `apvirt up --config`.",
    discussion: """
      Reads a sysfs root (the running emulated host's mount by default; /sys on an LPAR; a plain \
      copy of either) and writes a scenario file: the machine (Na, Nd, APXA, QCI, AQIC, the \
      usage and control domains, each adapter's type, mode, depth and configuration), the \
      masks, every mdev with its matrix, and a guest for every mdev whose queues are in use.

      With --state, each mdev's start mode comes from mdevctl's definition in \
      STATE/etc/mdevctl.d (on an LPAR: --state /); without it every mdev is `start: manual`.

      What sysfs does not show is left at the defaults and said in comments at the top of the \
      file: the machine's name, its CRYCB format, serial numbers and keys, latencies, the \
      kernel's version, and the guests' names and CPU models (each guest is named after its mdev).
      """)

  @OptionGroup var root: SysfsRootOptions

  @Option(
    name: .long,
    help: ArgumentHelp(
      "A state directory whose etc/mdevctl.d gives the mdevs' start modes (/ on an LPAR).", valueName: "STATE"
    ))
  var state: String?

  @Option(
    name: .shortAndLong,
    help: ArgumentHelp("Write the scenario to FILE instead of standard output.", valueName: "FILE"))
  var output: String?

  @Option(name: .long, help: "The machine's name in the scenario.")
  var name: String = "captured"

  func run() throws {
    let snapshot = try root.snapshot()
    let definitions = state.map { ScenarioCapture.readDefinitions(directory: $0 + "/etc/mdevctl.d") }
    let scenario = ScenarioCapture.capture(snapshot, definitions: definitions, name: name)
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
}
