import ArgumentParser
import Foundation
import VMM

/// apvirt's own version.
let apvirtVersion = "0.9.0"

/// The `apvirt` command: the IBM Z AP pass-through stack (the Linux AP bus and vfio_ap, KVM's
/// crypto control block, QEMU's vfio-ap device) emulated in user space.
@main
struct APVirt: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "apvirt",
    abstract: "The IBM Z crypto-adapter (AP) pass-through stack, emulated in user space.",
    discussion: """
      apvirt boots an emulated IBM Z LPAR (adapters, domains, the AP instructions), runs the host \
      kernel's AP bus, zcrypt and vfio_ap drivers and KVM on it, and serves the kernel's sysfs \
      through FUSE, keeping its rules exactly: every store succeeds whole or fails with the \
      kernel's errno.

      Without --machine it uses the embedded default machine: twelve CEX8 adapters 0x00-0x0b \
      (CCA, EP11, accelerator), all 256 domains, CRYCB format 2. Examples/ holds it and other \
      machines as YAML.

      APVIRT_MOUNT and APVIRT_STATE, when set, are the default --mount and --state of every \
      command, so that one shell's commands (and the emulators it starts) reach one host.

      Start with `apvirt demo`, which walks the kernel documentation's worked example.
      """,
    // What `apvirt --version` prints, beside the kernel and QEMU it emulates by default.
    version: "apvirt \(apvirtVersion) (Linux 6.19 AP bus and vfio_ap, QEMU \(QEMUVersion.current) vfio-ap)",
    subcommands: [
      Demo.self, Up.self, Exec.self, Qemu.self, Status.self, Hardware.self, Dmesg.self, Down.self,
      Chzdev.self, MapCommand.self, ExplainCommand.self, Capture.self, PlanCommand.self, ApplyCommand.self,
      GuestAP.self, AttachDevice.self, DetachDevice.self, MachineCommand.self,
    ]
  )

  /// A multi-call binary: run as `qemu-system-s390x` (a link), it is `apvirt qemu`.
  static func main() {
    // A parent may have left signals blocked (a blocked mask survives exec): a QEMU or a daemon
    // that ignores SIGTERM is not what anyone wants.
    var none = sigset_t()
    sigemptyset(&none)
    pthread_sigmask(SIG_SETMASK, &none, nil)
    // A peer that hung up (a QMP client gone before its SHUTDOWN event) is an EPIPE for the one
    // write, not the end of the daemon.
    signal(SIGPIPE, SIG_IGN)
    let name = CommandLine.arguments.first.map { URL(fileURLWithPath: $0).lastPathComponent } ?? ""
    if name == QEMUCommandLine.programName {
      Qemu.main(["--"] + CommandLine.arguments.dropFirst())
    } else {
      Self.main(Array(CommandLine.arguments.dropFirst()))
    }
  }
}
