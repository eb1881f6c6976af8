import APModel
import ArgumentParser
import Foundation

/// `apvirt status`
struct Status: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Show a running host: its adapters, mdevs and guests.",
    discussion: "With --json the daemon's answer is printed as it is, for scripts.")

  @OptionGroup var options: DaemonOptions
  @Flag(name: .long, help: "Print JSON.") var json = false

  func run() throws {
    let st = try options.client.call(ControlCommands.Status())
    if json {
      let e = JSONEncoder()
      e.outputFormatting = [.prettyPrinted, .sortedKeys]
      print(String(decoding: try e.encode(st), as: UTF8.self))
      return
    }
    print(Self.text(st), terminator: "")
  }

  /// The status as a person reads it: one line per object, every count with its noun.
  static func text(_ st: HostStatus) -> String {
    var out: [String] = []
    func count(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }
    out.append(
      "Linux \(st.kernel) on machine \(st.machine): \(count(st.adapters.count, "adapter")), \(count(st.usageDomains, "usage domain")), "
        + "\(count(st.controlDomains, "control domain")), CRYCB format \(st.crycbFormat)")
    let drivers = st.drivers.sorted { $0.key < $1.key }.filter { $0.key != "none" }
      .map { "\($0.value) to \($0.key)" }
    let unbound = st.drivers["none"] ?? 0
    out.append(
      "queues: \(st.queues), bound \(drivers.isEmpty ? "to no driver" : drivers.joined(separator: ", "))"
        + (unbound > 0 ? ", \(unbound) unbound" : "") + "; \(count(st.scans, "AP bus scan"))")
    out.append("apmask \(st.apmask)")
    out.append("aqmask \(st.aqmask)")
    for a in st.adapters {
      var flags: [String] = []
      if !a.configured { flags.append("deconfigured") }
      if a.checkstopped { flags.append("checkstopped") }
      func ms(_ v: Double) -> String { v == v.rounded() ? "\(Int(v))ms" : "\(v)ms" }
      if a.resetLatencyMs > 0 { flags.append("reset latency " + ms(a.resetLatencyMs)) }
      if a.irqLatencyMs > 0 { flags.append("irq latency " + ms(a.irqLatencyMs)) }
      out.append(
        (["adapter \(hex2(a.apid))", a.type, a.mode] + flags).joined(separator: " "))
    }
    for m in st.mdevs {
      var line = "mdev \(m.uuid): matrix \(m.matrix.isEmpty ? "empty" : m.matrix.joined(separator: " "))"
      if !m.controlDomains.isEmpty { line += "; control domains \(m.controlDomains.joined(separator: " "))" }
      if let vm = m.vm {
        line +=
          "; guest \(vm) sees \(m.guestMatrix.isEmpty ? "nothing" : m.guestMatrix.joined(separator: " "))"
      } else {
        line += "; no guest"
      }
      out.append(line)
    }
    for v in st.vms {
      var line = "guest \(v.name)"
      var facts: [String] = []
      if let pid = v.pid { facts.append("pid \(pid)") }
      if let status = v.status { facts.append(status) }
      if !facts.isEmpty { line += " (\(facts.joined(separator: ", ")))" }
      line +=
        ": APCB \(v.apcb.isEmpty ? "empty" : v.apcb.joined(separator: " ")) (\(count(v.apcbUpdates, "update")))"
      if !v.qmp.isEmpty { line += "; QMP \(v.qmp.joined(separator: " "))" }
      out.append(line)
    }
    for f in st.faults {
      out.append("fault: \(f.target): \(f.fault) for the next \(count(f.remaining, "reset"))")
    }
    for b in st.boot {
      out.append("boot: \(b.what): \(b.result)\(b.failed ? " (FAILED)" : "")")
    }
    return out.map { $0 + "\n" }.joined()
  }
}

/// `apvirt dmesg`
struct Dmesg: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Print the emulated host kernel's log.")
  @OptionGroup var options: DaemonOptions

  func run() throws {
    print(try options.client.call(ControlCommands.Dmesg()), terminator: "")
  }
}

/// `apvirt down`
struct Down: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Stop a running host; its mount goes with it.")
  @OptionGroup var options: DaemonOptions

  func run() throws {
    let st = try options.client.call(ControlCommands.Status())
    _ = try options.client.call(ControlCommands.Quit())
    let guests = st.vms.map(\.name)
    print(
      "stopped the emulated host at \(options.mount)"
        + (guests.isEmpty ? "" : "; its guests were stopped: \(guests.joined(separator: " "))"))
  }
}
