import Foundation
import HostKernel
import Machine
import Testing

@testable import apvirt

@Suite("apvirt demo: the documentation's worked example")
struct DemoTests {
  @Test func transcriptShowsEveryStepWithTheKernelsAnswers() throws {
    var t = Transcript(kernel: HostKernel())
    try DemoScript.run(&t)
    let out = t.output
    let lines = out.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    #expect(lines.contains("# echo -5,-6 > /sys/bus/ap/apmask"))
    #expect(lines.contains("0xf9ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"))
    #expect(lines.contains("../../../../bus/ap/drivers/vfio_ap"))
    // The three matrices.
    #expect(
      out.contains("# cat /sys/devices/vfio_ap/matrix/$uuid1/matrix\n05.0004\n05.00ab\n06.0004\n06.00ab\n"))
    #expect(out.contains("# cat /sys/devices/vfio_ap/matrix/$uuid2/matrix\n05.0047\n05.00ff\n"))
    #expect(out.contains("# cat /sys/devices/vfio_ap/matrix/$uuid3/matrix\n06.0047\n06.00ff\n"))
    // The hot plug, before and after.
    #expect(out.contains("guest_matrix\n05.0004\n05.00ab\n06.0004\n06.00ab\n"))
    #expect(out.contains("guest_matrix\n05.0004\n05.0010\n05.00ab\n06.0004\n06.0010\n06.00ab\n"))
    #expect(out.contains("(updates so far: 2)"))
    #expect(lines.contains("in use"))
    // The three refusals, with the shell's text and the kernel's log.
    #expect(
      out.contains(
        "# echo 6 > /sys/devices/vfio_ap/matrix/$uuid2/assign_adapter\nbash: echo: write error: Address already in use\n"
      ))
    #expect(
      out.contains(
        "Userspace may not assign queue 06.0047 to mdev: already assigned to 90c6c135-ad44-41d0-b1b7-bae47de48627"
      ))
    #expect(
      out.contains(
        "# echo 7 > /sys/devices/vfio_ap/matrix/$uuid1/assign_adapter\nbash: echo: write error: Cannot assign requested address\n"
      ))
    #expect(
      out.contains("# echo +5 > /sys/bus/ap/apmask\nbash: echo: write error: Device or resource busy\n"))
    #expect(out.contains("Can not reserve queue 05.0010 for host driver: in use by mdev"))
    #expect(lines.dropLast().last == "## Nothing changed: guest1 still has 6 queues after 2 APCB updates.")
  }

  @Test func demoRunsOnTheExampleMachines() throws {
    // On the full architecture (256 adapters) the same steps give the same answers.
    var t = Transcript(kernel: HostKernel(definition: .fullArchitecture()))
    try DemoScript.run(&t)
    #expect(t.output.contains("Address already in use"))
  }

  static let examples: [String] = {
    let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("Examples").path
    let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
    // The machine definitions, not the scenarios beside them (a top-level `machine:` key).
    return names.filter { $0.hasSuffix(".yaml") }.sorted().map { dir + "/" + $0 }.filter {
      !((try? String(contentsOfFile: $0, encoding: .utf8)) ?? "").split(separator: "\n").contains {
        $0.hasPrefix("machine:")
      }
    }
  }()

  /// Issue 11, 7: on every example machine the walk-through uses IDs the machine has, so the only
  /// errors are the three refusals it announces.
  @Test("the demo runs on every Examples/*.yaml with IDs the machine has", arguments: examples)
  func demoOnEachExample(path: String) throws {
    let definition = try MachineDefinitionLoader.load(path: path)
    var t = Transcript(kernel: HostKernel(definition: definition))
    try DemoScript.run(&t)
    let lines = t.output.split(separator: "\n").map(String.init)
    let errors = lines.filter { $0.contains("error") || $0.hasPrefix("cat:") || $0.hasPrefix("readlink:") }
    #expect(
      errors == [
        "bash: echo: write error: Address already in use",
        "bash: echo: write error: Cannot assign requested address",
        "bash: echo: write error: Device or resource busy",
      ], "\(path)")
    #expect(lines.filter { $0 == "../../../../bus/ap/drivers/vfio_ap" }.count == 8, "\(path)")
    #expect(lines.last == "## Nothing changed: guest1 still has 6 queues after 2 APCB updates.", "\(path)")
    // Every adapter and queue it names is on the machine.
    let cast = try DemoScript.Cast.choose(t.kernel)
    for a in cast.adapters {
      #expect(definition.adapters.contains { $0.apid == a && $0.configured }, "\(path)")
    }
    for d in cast.domains { #expect(definition.usageDomains.contains(d), "\(path)") }
  }

  @Test("z15-lab: adapters 1, 2, 3 and domains 4, 6, 0x10-0x12 in the documentation's places, said so")
  func z15Lab() throws {
    let path = Self.examples.first { $0.hasSuffix("/z15-lab.yaml") }!
    var t = Transcript(kernel: HostKernel(definition: try MachineDefinitionLoader.load(path: path)))
    try DemoScript.run(&t)
    let out = t.output
    #expect(
      out.contains(
        "## this walk-through uses adapters 1, 2 and 3 and domains 4, 6, 0x10, 0x11 and 0x12 in their places.\n"
      ))
    #expect(
      out.contains("# echo -1,-2 > /sys/bus/ap/apmask\n# echo -4,-6,-0x10,-0x11 > /sys/bus/ap/aqmask\n"))
    #expect(
      out.contains("# cat /sys/devices/vfio_ap/matrix/$uuid1/matrix\n01.0004\n01.0010\n02.0004\n02.0010\n"))
    #expect(out.contains("guest_matrix\n01.0004\n01.0010\n01.0012\n02.0004\n02.0010\n02.0012\n"))
  }

  @Test("the embedded default keeps the documentation's IDs and says nothing of a substitution")
  func defaultKeepsTheDocumentation() throws {
    var t = Transcript(kernel: HostKernel())
    try DemoScript.run(&t)
    #expect(!t.output.contains("in their places"))
    #expect(try DemoScript.Cast.choose(t.kernel) == .documentation)
  }

  @Test("a machine too small for the walk-through is refused up front with what it lacks")
  func tooSmall() throws {
    let d = try MachineDefinitionLoader.parse(
      yaml:
        "name: tiny\nusage-domains: 1-3\nadapters:\n  - { apids: 1-2 }\n  - { apid: 3, configured: false }\n",
      source: "tiny.yaml")
    var t = Transcript(kernel: HostKernel(definition: d))
    let error = #expect(throws: DemoScript.Failure.self) { try DemoScript.run(&t) }
    #expect(
      error?.description
        == "the host sees 2 configured adapters of the 3 in machine 'tiny' and 3 usage domains with queues on them; the demo needs 3 adapters (two for the guests, one the host keeps) and 5 usage domains (four for the guests, one to hot plug): add them to the machine file, or run the demo without --machine"
    )
    #expect(t.output == "")
  }
}
