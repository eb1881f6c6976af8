import Foundation
import Testing

@testable import VMM

/// The human monitor through QMP's `human-monitor-command`, as libvirt's `virsh
/// qemu-monitor-command --hmp` and scripts use it: QEMU's texts, CRLF line ends.
@Suite("VMM: the HMP commands")
struct HMPTests {
  func hmp(_ q: RawQMP, _ line: String) -> String {
    while true {
      let reply = q.exchange(
        #"{"execute": "human-monitor-command", "arguments": {"command-line": "\#(line)"}}"#)
      if !reply.hasPrefix("{\"event\"") { return reply }
      // An event the command caused (STOP, RESUME) comes before its reply.
      let next = q.line()
      if !next.hasPrefix("{\"event\"") { return next }
    }
  }

  @Test func infoStatusSaysRunningPausedAndPrelaunchAsQEMU() throws {
    let host = try makeHost()
    let g = try guest(host, ["-cpu", "host"])
    let q = try RawQMP(guest: g)
    _ = q.line()
    _ = q.exchange(#"{"execute": "qmp_capabilities"}"#)
    #expect(hmp(q, "info status") == "{\"return\": \"VM status: running\\r\\n\"}\r\n")
    #expect(hmp(q, "stop") == "{\"return\": \"\"}\r\n")
    #expect(g.status == "paused")
    #expect(hmp(q, "info status") == "{\"return\": \"VM status: paused\\r\\n\"}\r\n")
    #expect(hmp(q, "c") == "{\"return\": \"\"}\r\n")
    #expect(hmp(q, "info status") == "{\"return\": \"VM status: running\\r\\n\"}\r\n")

    let paused = try guest(host, ["-name", "p", "-cpu", "host", "-S"])
    let p = try RawQMP(guest: paused)
    _ = p.line()
    _ = p.exchange(#"{"execute": "qmp_capabilities"}"#)
    #expect(hmp(p, "info status") == "{\"return\": \"VM status: paused (prelaunch)\\r\\n\"}\r\n")
  }

  @Test func helpListsTheCommandsInQEMUsFormat() throws {
    let host = try makeHost()
    let g = try guest(host, ["-cpu", "host"])
    let q = try RawQMP(guest: g)
    _ = q.line()
    _ = q.exchange(#"{"execute": "qmp_capabilities"}"#)
    let help =
      "cont|c  -- resume emulation\\r\\n"
      + "device_add driver[,prop=value][,...] -- add device, like -device on the command line\\r\\n"
      + "device_del device -- remove device\\r\\n" + "help|? [cmd] -- show the help\\r\\n"
      + "info [subcommand] -- show various information about the system state\\r\\n"
      + "stop|s  -- stop emulation\\r\\n" + "system_reset  -- reset the system\\r\\n"
    #expect(hmp(q, "help") == "{\"return\": \"\(help)\"}\r\n")
    #expect(hmp(q, "?") == "{\"return\": \"\(help)\"}\r\n")
    #expect(hmp(q, "help device_del") == "{\"return\": \"device_del device -- remove device\\r\\n\"}\r\n")
    let info =
      "info qtree  -- show device tree\\r\\ninfo status  -- show the current VM status (running|paused)\\r\\n"
    #expect(hmp(q, "help info") == "{\"return\": \"\(info)\"}\r\n")
    #expect(hmp(q, "info") == "{\"return\": \"\(info)\"}\r\n")
    // What it does not know keeps QEMU's words.
    #expect(hmp(q, "frobnicate") == "{\"return\": \"unknown command: 'frobnicate'\\r\\n\"}\r\n")
    #expect(hmp(q, "help frobnicate") == "{\"return\": \"unknown command: 'frobnicate'\\r\\n\"}\r\n")
    #expect(hmp(q, "info frob") == "{\"return\": \"info: unknown command: 'frob'\\r\\n\"}\r\n")
  }
}
