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
    let s = try options.client.execute("status")
    if json {
      let data = try JSONSerialization.data(withJSONObject: s, options: [.prettyPrinted, .sortedKeys])
      print(String(decoding: data, as: UTF8.self))
      return
    }
    guard let st = s as? [String: Any] else { return }
    print(
      "machine \(st["machine"] ?? "?"): \(st["queues"] ?? 0) queues (\(st["bound"] ?? 0) bound), \(st["scans"] ?? 0) scans"
    )
    print("apmask \(st["apmask"] ?? "")")
    print("aqmask \(st["aqmask"] ?? "")")
    for a in st["adapters"] as? [[String: Any]] ?? [] {
      let apid = a["apid"] as? Int ?? 0
      var flags: [String] = []
      if a["configured"] as? Bool == false { flags.append("deconfigured") }
      if a["checkstopped"] as? Bool == true { flags.append("checkstopped") }
      print("adapter \(String(format: "%02x", apid)) \(a["type"] ?? "") \(flags.joined(separator: " "))")
    }
    for m in st["mdevs"] as? [[String: Any]] ?? [] {
      let vm = (m["vm"] as? String).map { " guest \($0)" } ?? ""
      print("mdev \(m["uuid"] ?? "")\(vm): \((m["matrix"] as? [String] ?? []).joined(separator: " "))")
    }
    for v in st["vms"] as? [[String: Any]] ?? [] {
      print(
        "vm \(v["name"] ?? "") apcb: \((v["apcb"] as? [String] ?? []).joined(separator: " ")) (\(v["apcb_updates"] ?? 0) updates)"
      )
    }
  }
}

/// `apvirt dmesg`
struct Dmesg: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Print the emulated host kernel's log.")
  @OptionGroup var options: DaemonOptions

  func run() throws {
    print(try options.client.execute("dmesg") as? String ?? "", terminator: "")
  }
}

/// `apvirt down`
struct Down: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Stop a running host; its mount goes with it.")
  @OptionGroup var options: DaemonOptions

  func run() throws {
    _ = try options.client.execute("quit")
  }
}
