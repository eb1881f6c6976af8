import HostKernel
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
}
