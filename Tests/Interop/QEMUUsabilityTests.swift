import FUSE
import Foundation
import Testing
import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// `apvirt qemu` as a user runs it (issue 11): QEMU's informational options, the emulated
/// versions, guest names, a sysfsdev under the host's mount, what it says when the host goes or a
/// signal ends it.
@Suite("Interop: apvirt qemu's user interface, beside qemu-system-s390x", .serialized)
struct QEMUUsabilityTests {
  static let real = "/usr/bin/qemu-system-s390x"

  /// `apvirt qemu ARGS` with no host anywhere (APVIRT_MOUNT names nothing), and the environment.
  func qemu(_ args: [String], _ environment: [String: String] = [:]) throws -> CommandResult {
    var env = ["PATH": "/usr/bin:/bin", "APVIRT_MOUNT": "/tmp/apvirt-no-host-\(getpid())/sys"]
    env.merge(environment) { $1 }
    return try run(apvirtBinary, ["qemu"] + args, environment: env)
  }

  /// The real binary's output (stdout), and its version (`7.2.22`).
  func realQEMU(_ args: [String]) throws -> String {
    try #require(FileManager.default.isExecutableFile(atPath: Self.real), ".ci/run installs qemu-system-misc")
    let r = try run(Self.real, args)
    #expect(r.status == 0, "\(r.stderr)")
    return r.stdout
  }

  var realVersion: String {
    get throws {
      let first = try realQEMU(["-version"]).split(separator: "\n").first ?? ""
      return String(first.dropFirst("QEMU emulator version ".count).prefix { $0 != " " })
    }
  }

  @Test func versionPrintsQEMUsTwoLines() throws {
    for option in ["-version", "--version"] {
      let r = try qemu([option])
      #expect(r.status == 0)
      #expect(r.stderr == "")
      #expect(
        r.stdout
          == "QEMU emulator version 10.2.0\nCopyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers\n"
      )
    }
    // The shape of the real binary's: the same copyright line for the same version, and the
    // version line without the distribution's package suffix.
    let real = try realQEMU(["-version"]).split(separator: "\n")
    let mine = try qemu(["-version"], ["APVIRT_QEMU_VERSION": try realVersion]).stdout.split(separator: "\n")
    #expect(mine.count == 2 && real.count == 2)
    #expect(mine.last == real.last)
    #expect(real.first?.hasPrefix(String(mine.first ?? "x")) == true, "\(real) \(mine)")
    // In order, as QEMU takes its options: the first informational one wins; a bad option anywhere
    // is an error.
    #expect(try qemu(["-version", "-machine", "help"]).stdout.hasPrefix("QEMU emulator version"))
    let bad = try qemu(["-version", "-bogus"])
    #expect(
      bad.status == 1 && bad.stderr == "qemu-system-s390x: -bogus: invalid option\n" && bad.stdout == "")
  }

  @Test func machineHelpListsTheMachinesAsQEMU() throws {
    let expected = """
      Supported machines are:
      none                 empty machine
      s390-ccw-virtio      Virtual s390x machine (version 10.2) (alias of s390-ccw-virtio-10.2)
      s390-ccw-virtio-10.2 Virtual s390x machine (version 10.2) (default)

      """
    for args in [["-machine", "help"], ["-M", "help"], ["-machine", "?"], ["-cpu", "host", "-M", "help"]] {
      let r = try qemu(args)
      #expect(r.status == 0 && r.stderr == "", "\(args): \(r.stderr)")
      #expect(r.stdout == expected, "\(args)")
    }
    // At the real binary's version, every line is one of the real binary's.
    let real = Set(try realQEMU(["-machine", "help"]).split(separator: "\n"))
    let mine = try qemu(["-machine", "help"], ["APVIRT_QEMU_VERSION": try realVersion]).stdout
    #expect(mine.split(separator: "\n").count == 4)
    for line in mine.split(separator: "\n") { #expect(real.contains(line), "\(line)") }
    // A machine it does not have still says where to look.
    let none = try qemu(["-machine", "pc"])
    #expect(none.status == 1)
    #expect(
      none.stderr
        == "qemu-system-s390x: unsupported machine type: \"pc\"\nUse -machine help to list supported machines\n"
    )
  }

  @Test func cpuHelpListsTheModelsAndAPFeatures() throws {
    let r = try qemu(["-cpu", "help"])
    #expect(r.status == 0 && r.stderr == "")
    #expect(
      r.stdout == """
        Available CPUs:
          qemu            QEMU Virtual CPU version 2.5+       (migration-safe)
          max             Enables all features supported by the accelerator in the current host
          host            KVM only: All recognized features of the current host CPU
          z13             IBM z13 GA1                         (migration-safe)
          z14             IBM z14 GA1                         (migration-safe)
          z15             IBM z15 T01 GA1                     (migration-safe)
          z16             IBM 3931 GA1                        (migration-safe)

        Recognized feature flags:
          apqci                Query AP Configuration Information facility
          apft                 AP Facilities Test facility
          apqi                 AP-Queue interruption facility
          ap                   AP instructions installed
          appv                 AP instructions installed for secure guests
          appvi                AP instructions interruption support for secure guests

        """)
    #expect(try qemu(["-cpu", "?"]).stdout == r.stdout)
    // At the real binary's version (before 9.0) the layout is its: the lines of the models both
    // have, and of the AP features, are the real binary's lines.
    let real = Set(try realQEMU(["-cpu", "help"]).split(separator: "\n"))
    let mine = try qemu(["-cpu", "help"], ["APVIRT_QEMU_VERSION": try realVersion]).stdout.split(
      separator: "\n")
    for line in mine
    where ["s390 qemu ", "s390 max ", "s390 z13 ", "s390 z14 ", "apqci ", "apft ", "apqi ", "ap "].contains(
      where: { line.hasPrefix($0) })
    {
      #expect(real.contains(line), "\(line)")
    }
    #expect(mine.contains("Recognized feature flags:") && mine.first?.hasPrefix("s390 qemu ") == true)
  }

  @Test func deviceHelpListsVfioAPsPropertiesAsQEMU() throws {
    let r = try qemu(["-device", "vfio-ap,help"])
    #expect(r.status == 0 && r.stderr == "")
    #expect(
      r.stdout
        == "vfio-ap options:\n  sysfsdev=<str>         - Host sysfs path of assigned device\n  x-cfg-chg-irq=<bool>   - on/off (default: true)\n"
    )
    #expect(try qemu(["-device", "vfio-ap,?"]).stdout == r.stdout)
    // QEMU 7.2's vfio-ap: the real binary's text exactly.
    let version = try realVersion
    #expect(
      try qemu(["-device", "vfio-ap,help"], ["APVIRT_QEMU_VERSION": version]).stdout
        == (try realQEMU(["-device", "vfio-ap,help"])))
    // -device help: the devices apvirt takes, each line as the real binary prints it.
    let list = try qemu(["-device", "help"])
    #expect(list.status == 0)
    let real = Set(
      try realQEMU(["-device", "help"]).split(separator: "\n", omittingEmptySubsequences: false))
    for line in list.stdout.split(separator: "\n") { #expect(real.contains(line), "\(line)") }
    #expect(list.stdout.contains("name \"vfio-ap\", bus ap-bus, desc \"VFIO-based AP device assignment\"\n"))
    // A device it does not know: QEMU's message, and (as QEMU) status 0.
    let unknown = try qemu(["-device", "nosuch,help"])
    #expect(unknown.status == 0 && unknown.stdout == "")
    #expect(unknown.stderr == "qemu-system-s390x: -device nosuch,help: Device 'nosuch' not found\n")
  }

  @Test func anEmulatedVersionOutsideTheRangeIsRefused() throws {
    let cases = [
      (
        "1.0",
        "qemu-system-s390x: APVIRT_QEMU_VERSION=1.0: apvirt emulates QEMU 3.1 to 10.2, not 1.0: the vfio-ap device and the AP CPU features came with QEMU 3.1\n"
      ),
      (
        "garbage",
        "qemu-system-s390x: APVIRT_QEMU_VERSION=garbage: not a QEMU version (MAJOR.MINOR[.MICRO]); apvirt emulates QEMU 3.1 to 10.2\n"
      ),
      (
        "12.0.0",
        "qemu-system-s390x: APVIRT_QEMU_VERSION=12.0.0: apvirt emulates QEMU 3.1 to 10.2, not 12.0.0: it knows no QEMU after 10.2\n"
      ),
    ]
    for (version, message) in cases {
      for args in [["-version"], ["-machine", "none"], ["-name", "g"]] {
        let r = try qemu(args, ["APVIRT_QEMU_VERSION": version])
        #expect(r.status == 1 && r.stdout == "", "\(version) \(args)")
        #expect(r.stderr == message, "\(version) \(args)")
      }
    }
    #expect(
      try qemu(["-version"], ["APVIRT_QEMU_VERSION": "9.2"]).stdout.hasPrefix("QEMU emulator version 9.2.0\n")
    )
  }

  @Test func namesThatAreNotFileNamesAreRefusedBeforeAnythingStarts() throws {
    // No host: the refusal comes first.
    for (name, why) in [
      ("../../etc", "contains '/'"), ("a/b", "contains '/'"), ("", "is empty"),
      (".hidden", "starts with '.'"),
      ("..", "starts with '.'"), ("a\u{1}b", "contains control characters"),
    ] {
      let r = try qemu(["-name", name, "-cpu", "host"])
      #expect(r.status == 1, "-name \(name)")
      #expect(
        r.stderr
          == "qemu-system-s390x: -name \(QEMUCommandLine.printable(name)): apvirt cannot serve a guest whose name \(why): a guest's name is a directory of the host's guests mount (/run/apvirt/guests/NAME by default) and must be a file name\n",
        "\(r.stderr)")
    }
    let d = try Daemon()
    defer { d.stop() }
    for name in ["../../etc", "a/b", ".x"] {
      let r = try run(
        apvirtBinary, ["qemu", "-name", name, "-daemonize"],
        environment: ProcessInfo.processInfo.environment.merging(["APVIRT_MOUNT": d.mount]) { $1 })
      #expect(r.status == 1 && r.stderr.contains("apvirt cannot serve a guest"), "\(r.stderr)")
    }
    // libvirt's form names the guest and keeps working.
    let g = try GuestProcess(d, ["-name", "guest=vm1,debug-threads=on", "-cpu", "host"])
    #expect(waitFor { (try? FileManager.default.contentsOfDirectory(atPath: d.runtime + "/guests")) == ["vm1"] })
    #expect(try run("/bin/ls", [d.runtime + "/guests"]).stdout == "vm1\n")
    let seen = try run(
      apvirtBinary,
      ["exec", "--mount", d.mount, "--state", d.state, "--guest", "vm1", "--", "/bin/ls", "/sys/bus/ap"])
    #expect(seen.status == 0 && seen.stdout.contains("ap_usage_domain_mask"), "\(seen.stderr)")
    g.process.terminate()
    _ = g.finish()
  }

  /// An mdev of the daemon's host, created with sysfs writes under its mount.
  func makeMdev(_ d: Daemon, _ uuid: String) throws {
    for (file, value) in [
      ("bus/ap/apmask", "-5,-6"),
      ("devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create", uuid),
      ("devices/vfio_ap/matrix/\(uuid)/assign_adapter", "5"),
      ("devices/vfio_ap/matrix/\(uuid)/assign_domain", "4"),
    ] {
      try value.write(toFile: d.mount + "/" + file, atomically: false, encoding: .utf8)
    }
  }

  @Test func aSysfsdevUnderTheHostsMountIsTheDeviceUnderSys() throws {
    let d = try Daemon()
    defer { d.stop() }
    let u = "62177883-f1bb-47f0-914d-32a22e3a8804"
    try makeMdev(d, u)
    // The daemon's mount is not /run/apvirt/sys: it comes from its own runtime paths.
    let socket = d.root + "/g.qmp"
    let g = try GuestProcess(
      d,
      [
        "-name", "g", "-cpu", "host", "-qmp", "unix:\(socket),server=on,wait=off", "-device",
        "vfio-ap,id=h0,sysfsdev=\(d.mount)/bus/mdev/devices/\(u)",
      ])
    defer {
      g.process.terminate()
      _ = g.finish()
    }
    #expect(waitFor { FileManager.default.fileExists(atPath: socket) })
    let ls = try run(
      apvirtBinary,
      [
        "exec", "--mount", d.mount, "--state", d.state, "--guest", "g", "--", "/bin/ls",
        "/sys/bus/ap/devices",
      ])
    #expect(ls.stdout == "05.0004\ncard05\n", "\(ls.stderr)")
    // device_add over QMP takes the mount's path too.
    var c = try JSONStreamClient(path: socket, timeout: 10)
    defer { c.close() }
    func reply() throws -> String {
      while true {
        let line = String(decoding: try c.receiveLine(), as: UTF8.self)
        if !line.contains(#""event""#) { return line }
      }
    }
    _ = try reply()
    for (request, expected) in [
      (#"{"execute": "qmp_capabilities"}"#, #"{"return": {}}"#),
      (#"{"execute": "device_del", "arguments": {"id": "h0"}}"#, #"{"return": {}}"#),
      (
        #"{"execute": "device_add", "arguments": {"driver": "vfio-ap", "id": "h1", "sysfsdev": "\#(d.mount)/devices/vfio_ap/matrix/\#(u)"}}"#,
        #"{"return": {}}"#
      ),
      (
        #"{"execute": "qom-get", "arguments": {"path": "h1", "property": "sysfsdev"}}"#,
        #"{"return": "\#(d.mount)/devices/vfio_ap/matrix/\#(u)"}"#
      ),
      (#"{"execute": "device_del", "arguments": {"id": "h1"}}"#, #"{"return": {}}"#),
      // A path under no mount of the host is no device.
      (
        #"{"execute": "device_add", "arguments": {"driver": "vfio-ap", "sysfsdev": "/run/elsewhere/sys/bus/mdev/devices/\#(u)"}}"#,
        #"{"error": {"class": "GenericError", "desc": "vfio /run/elsewhere/sys/bus/mdev/devices/\#(u): no such host device: No such file or directory"}}"#
      ),
    ] {
      c.sendLine(Data(request.utf8))
      #expect(try reply() == expected, "\(request)")
    }
  }

  @Test func sigtermAndSigintSayWhoEndedTheGuest() throws {
    let d = try Daemon()
    defer { d.stop() }
    let me = String(
      decoding: (FileManager.default.contents(atPath: "/proc/self/cmdline") ?? Data()).prefix { $0 != 0 },
      as: UTF8.self)
    for (signal, name) in [(SIGTERM, "t"), (SIGINT, "i"), (SIGHUP, "h")] {
      let g = try GuestProcess(d, ["-name", name, "-cpu", "host"])
      #expect(waitFor { FileManager.default.fileExists(atPath: d.runtime + "/guests/" + name) })
      kill(g.process.processIdentifier, signal)
      let (exited, status, stderr) = g.finish()
      #expect(exited && status == 0)
      #expect(stderr == "qemu-system-s390x: terminating on signal \(signal) from pid \(getpid()) (\(me))\n")
      // The guest ended with it.
      #expect(waitFor { !FileManager.default.fileExists(atPath: d.runtime + "/guests/" + name) })
    }
  }

  @Test func theGuestSaysWhenItsHostGoes() throws {
    let d = try Daemon()
    let g = try GuestProcess(d, ["-name", "g", "-cpu", "host"])
    #expect(waitFor { FileManager.default.fileExists(atPath: d.runtime + "/guests/g") })
    d.stop()
    let (exited, status, stderr) = g.finish()
    #expect(exited && status == 1)
    #expect(
      stderr
        == "qemu-system-s390x: terminating: the apvirt host at \(d.mount) stopped (apvirt down, or a signal to apvirt up); guest 'g' was stopped with it\n"
    )

    try d.start()
    let h = try GuestProcess(d, ["-name", "h", "-cpu", "host"])
    #expect(waitFor { FileManager.default.fileExists(atPath: d.runtime + "/guests/h") })
    d.kill9()
    let killed = h.finish()
    #expect(killed.exited && killed.status == 1)
    #expect(
      killed.stderr
        == "qemu-system-s390x: terminating: lost the apvirt host at \(d.mount) (apvirt up died or was killed); guest 'h' is gone\n"
    )
    // The killed daemon's mounts are left behind; a new daemon clears them, and down removes it.
    try d.start()
    d.stop()
  }
}

/// Waits up to 10 s for a condition.
func waitFor(_ condition: () -> Bool) -> Bool {
  for _ in 0..<200 {
    if condition() { return true }
    usleep(50_000)
  }
  return condition()
}
