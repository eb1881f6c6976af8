import Foundation
import Testing

/// What the interop suites need. Where a program is missing its suite is skipped, naming the
/// package; these fail instead, so that a machine meant to run everything (CI, whose `.ci/run`
/// installs it all) cannot pass by skipping.
@Suite("Interop: the programs the interop tests drive are installed")
struct RequirementsTests {
  @Test func mdevctlIsInstalled() {
    #expect(Requirement.mdevctl, Requirement.mdevctlMissing)
  }

  @Test func qemuQmpIsInstalled() {
    #expect(Requirement.qemuQMP, Requirement.qemuQMPMissing)
  }

  @Test func libvirtIsInstalled() {
    #expect(Requirement.libvirt, Requirement.libvirtMissing)
  }
}
