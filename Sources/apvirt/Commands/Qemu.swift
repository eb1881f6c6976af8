import ArgumentParser
import Foundation
import VMM

/// `apvirt qemu ARGS...`, also reachable as `qemu-system-s390x ARGS...` (a link to apvirt).
struct Qemu: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Start a guest on the running host, as qemu-system-s390x would.",
    discussion: """
      Takes QEMU's command line: -name, -machine s390-ccw-virtio, -cpu host|z13|z14|z15|z16 with
      ap=on|off,apqci=...,apft=...,apqi=..., -smp, -m, -device vfio-ap,sysfsdev=PATH[,id=ID] (or
      libvirt's JSON form), -qmp unix:PATH,server=on,wait=off, -chardev socket,id=X,path=PATH,
      server=on,wait=off with -mon chardev=X,mode=control, -nographic, -daemonize, -S.

      The guest runs in the daemon (`apvirt up`) next to the host kernel; this command stays in
      the foreground until the guest quits (QMP `quit`), like QEMU. Killing it kills the guest.
      A link named qemu-system-s390x to apvirt runs this command directly, for libvirt and
      scripts. APVIRT_MOUNT names the daemon's mount; APVIRT_QEMU_VERSION (default 10.2.0) the
      QEMU version emulated, which decides the QMP greeting and version-dependent behaviour (the
      config-change IRQ from 10.1, the ap-bus-full message from 10.2).

        apvirt qemu -name guest1 -cpu host -qmp unix:/tmp/guest1.qmp,server=on,wait=off \\
          -device vfio-ap,id=hostdev0,sysfsdev=/sys/bus/mdev/devices/$UUID
      """)

  @Argument(parsing: .captureForPassthrough, help: "QEMU's arguments.")
  var arguments: [String] = []

  func run() throws {
    var argv = arguments
    if argv.first == "--" { argv.removeFirst() }
    let env = ProcessInfo.processInfo.environment
    let paths = RuntimePaths(mount: env["APVIRT_MOUNT"] ?? RuntimePaths.defaultMount)
    let version = env["APVIRT_QEMU_VERSION"] ?? QEMUVersion.current.description
    guard QEMUVersion(version) != nil else {
      throw ValidationError("APVIRT_QEMU_VERSION: not a version: \(version)")
    }
    let prog = QEMUCommandLine.programName
    // QEMU's own errors come before any host is involved.
    let config: GuestConfiguration
    do {
      config = try QEMUCommandLine.parse(argv)
    } catch {
      FileHandle.standardError.write(Data("\(error)\n".utf8))
      throw ExitCode(1)
    }
    let control = ControlClient(paths: paths)
    func fail(_ message: String) -> ExitCode {
      FileHandle.standardError.write(Data("\(prog): \(message)\n".utf8))
      return ExitCode(1)
    }
    var client: JSONStreamClient
    do {
      client = try control.connect(timeout: 30)
    } catch {
      throw fail("\(error)")
    }
    client.sendLine(
      ControlWire.encode(
        ControlCommands.GuestStart(argv: argv, version: version, daemonize: config.daemonize)))
    let started: ControlCommands.GuestStart.Reply
    do {
      started = try ControlClient.reply(ControlCommands.GuestStart.self, &client, paths)
    } catch {
      // QEMU's own message (it carries the program name already).
      FileHandle.standardError.write(Data("\(error)\n".utf8))
      throw ExitCode(1)
    }
    for w in started.warnings { FileHandle.standardError.write(Data("\(prog): \(w)\n".utf8)) }
    if config.daemonize { return }
    // The guest lives as long as this process and this connection: wait for it without a
    // time-out. A daemon that stops or dies under the guest is not a clean shutdown: say so and
    // exit non-zero, so that whoever started QEMU (libvirt, a script) sees the guest crashed.
    client.clearTimeout()
    client.sendLine(ControlWire.encode(ControlCommands.GuestWait()))
    let ended: ControlCommands.GuestWait.Reply
    do {
      ended = try ControlClient.reply(ControlCommands.GuestWait.self, &client, paths)
    } catch {
      throw fail(
        "terminating: lost the apvirt host at \(paths.mount) (it stopped or died); guest '\(started.name)' is gone"
      )
    }
    if ended.reason == "host-stopped" {
      throw fail("terminating: the apvirt host at \(paths.mount) stopped; guest '\(started.name)' is gone")
    }
  }
}
