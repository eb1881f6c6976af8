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
    print("machine \(st.machine): \(st.queues) queues (\(st.bound) bound), \(st.scans) scans")
    print("apmask \(st.apmask)")
    print("aqmask \(st.aqmask)")
    for a in st.adapters {
      var flags: [String] = []
      if !a.configured { flags.append("deconfigured") }
      if a.checkstopped { flags.append("checkstopped") }
      print("adapter \(hex2(a.apid)) \(a.type) \(flags.joined(separator: " "))")
    }
    for m in st.mdevs {
      let vm = m.vm.map { " guest \($0)" } ?? ""
      print("mdev \(m.uuid)\(vm): \(m.matrix.joined(separator: " "))")
    }
    for v in st.vms {
      print("vm \(v.name) apcb: \(v.apcb.joined(separator: " ")) (\(v.apcbUpdates) updates)")
    }
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
    _ = try options.client.call(ControlCommands.Quit())
  }
}
