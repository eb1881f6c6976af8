import APModel
import ArgumentParser
import Foundation
import Machine

/// `apvirt hw ...`: what an operator does on the HMC/SE, outside Linux.
struct Hardware: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "hw",
    abstract: "Change the LPAR's AP configuration as the HMC would; the host sees it at once.",
    discussion: """
      Each change is followed by the AP configuration change notification, so the host kernel \
      scans at once (on_config_changed, then on_scan_complete: one APCB update per affected \
      guest). IDs are decimal or 0x-hex, 0-255, and at most the machine's Na (adapters) or Nd \
      (domains). Each command prints what changed on the host, or with --json the daemon's \
      answer: the summary and the host's AP devices that appeared, left or changed state.
      """,
    subcommands: [
      Configure.self, Checkstop.self, AddAdapter.self, RemoveAdapter.self, AddDomain.self, RemoveDomain.self,
      Latency.self, Fault.self,
    ])

  struct Latency: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Set how long an adapter's queue resets (ZAPQ, RAPQ) and interrupt enabling (AQIC) take.",
      discussion: """
        A duration is a number of milliseconds, or a number with ns, us, ms or s (500us), at \
        most 1 hour; 0 is instant, the default. While a queue's reset runs, TAPQ answers rc 02 \
        (reset in progress); while an AQIC runs, TAPQ shows interruptions still disabled. \
        Resets already under way keep their time.
        """)
    @OptionGroup var options: HardwareOptions
    @Argument(help: "The adapter.") var apid: String
    @Option(name: .customLong("reset"), help: "The reset latency (ms, or with a unit).") var reset: String?
    @Option(name: .customLong("irq"), help: "The interrupt-enable latency (ms, or with a unit).")
    var irq: String?
    func validate() throws {
      _ = try Hardware.id(apid, "adapter")
      guard reset != nil || irq != nil else { throw ValidationError("give --reset, --irq or both") }
      _ = try Self.ns(reset, "--reset")
      _ = try Self.ns(irq, "--irq")
    }
    static func ns(_ text: String?, _ option: String) throws -> UInt64? {
      guard let text else { return nil }
      guard let v = MachineDefinitionLoader.parseDuration(text) else {
        throw ValidationError(
          "'\(text)' for \(option) is not a duration: milliseconds (150), or a number with ns, us, ms or s (500us)"
        )
      }
      return v
    }
    func run() throws {
      options.show(
        try options.daemon.client.call(
          ControlCommands.AdapterLatency(
            apid: Hardware.id(apid, "adapter"), resetNs: Self.ns(reset, "--reset"),
            irqNs: Self.ns(irq, "--irq"))))
    }
  }

  struct Fault: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Make the next resets of a queue or of an adapter's queues answer a response code.",
      discussion: """
        busy: the reset answers rc 05 and does nothing (vfio_ap issues it again after its next \
        TAPQ); reset-in-progress: it answers rc 02 and the queue is reset; \
        checkstop-during-reset: the reset is accepted and the adapter checkstops while it runs, \
        so vfio_ap's check of it fails. clear takes an injected fault away. A fault on a queue \
        comes before one on its adapter.
        """)
    @OptionGroup var options: HardwareOptions
    @Argument(help: "A queue (05.0004) or an adapter (5, 0x05).") var target: String
    @Argument(help: "busy, reset-in-progress, checkstop-during-reset or clear.") var fault: String
    @Option(help: "How many resets answer it (default 1).") var count: Int?
    static let faults = ["busy", "reset-in-progress", "checkstop-during-reset", "clear"]
    var wireTarget: String {
      get throws { target.contains(".") ? target : hexID(try Hardware.id(target, "adapter")) }
    }
    func validate() throws {
      if target.contains(".") {
        guard APQN(target) != nil else { throw ValidationError("'\(target)' is not a queue such as 05.0004") }
      } else {
        _ = try Hardware.id(target, "adapter")
      }
      guard Self.faults.contains(fault) else {
        throw ValidationError("unknown fault '\(fault)' (known: \(Self.faults.joined(separator: ", ")))")
      }
      if let count, count < 1 { throw ValidationError("--count must be at least 1, not \(count)") }
      if fault == "clear" && count != nil { throw ValidationError("clear takes no --count") }
    }
    func run() throws {
      options.show(
        try options.daemon.client.call(ControlCommands.Fault(target: wireTarget, fault: fault, count: count)))
    }
  }

  struct Configure: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Configure (on) or deconfigure (off) an adapter (SCLP).")
    @OptionGroup var options: HardwareOptions
    @Argument(help: "The adapter.") var apid: String
    @Argument(help: "on or off.") var state: OnOff
    func validate() throws { _ = try Hardware.id(apid, "adapter") }
    func run() throws {
      options.show(
        try options.daemon.client.call(
          ControlCommands.AdapterConfig(apid: Hardware.id(apid, "adapter"), configured: state == .on)))
    }
  }

  struct Checkstop: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Put an adapter into (on) or out of (off) checkstop.")
    @OptionGroup var options: HardwareOptions
    @Argument(help: "The adapter.") var apid: String
    @Argument(help: "on or off.") var state: OnOff
    func validate() throws { _ = try Hardware.id(apid, "adapter") }
    func run() throws {
      options.show(
        try options.daemon.client.call(
          ControlCommands.AdapterCheckstop(apid: Hardware.id(apid, "adapter"), checkstopped: state == .on)))
    }
  }

  struct AddAdapter: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "add-adapter", abstract: "Add an adapter to the LPAR.")
    @OptionGroup var options: HardwareOptions
    @Argument(help: "The adapter.") var apid: String
    @Option(help: "CEX4, CEX5, CEX6, CEX7 or CEX8.") var type = "CEX8"
    @Option(help: "cca, accel or ep11.") var mode = "cca"
    func validate() throws {
      _ = try Hardware.id(apid, "adapter")
      guard AdapterType(knownName: type) != nil else {
        throw ValidationError("unknown adapter type '\(type)' for --type (known: \(AdapterType.knownNames))")
      }
      guard AdapterMode(name: mode) != nil else {
        throw ValidationError("unknown mode '\(mode)' for --mode (known: cca, accel, ep11)")
      }
    }
    func run() throws {
      options.show(
        try options.daemon.client.call(
          ControlCommands.AdapterAdd(apid: Hardware.id(apid, "adapter"), type: type, mode: mode)))
    }
  }

  struct RemoveAdapter: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "remove-adapter", abstract: "Remove an adapter from the LPAR.")
    @OptionGroup var options: HardwareOptions
    @Argument(help: "The adapter.") var apid: String
    func validate() throws { _ = try Hardware.id(apid, "adapter") }
    func run() throws {
      options.show(
        try options.daemon.client.call(ControlCommands.AdapterRemove(apid: Hardware.id(apid, "adapter"))))
    }
  }

  struct DomainOptions: ParsableArguments {
    @Argument(help: "The domain.") var domain: String
    @Flag(name: .long, help: "Only as a usage domain.") var usageOnly = false
    @Flag(name: .long, help: "Only as a control domain.") var controlOnly = false
    var number: Int { get throws { try Hardware.id(domain, "domain") } }

    func validate() throws {
      _ = try number
      if usageOnly && controlOnly {
        throw ValidationError(
          "--usage-only and --control-only contradict each other: give one of them, or neither for both a usage and a control domain"
        )
      }
    }
  }

  struct AddDomain: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "add-domain", abstract: "Add a domain to the LPAR (usage and control unless told).")
    @OptionGroup var options: HardwareOptions
    @OptionGroup var domain: DomainOptions
    func run() throws {
      options.show(
        try options.daemon.client.call(
          ControlCommands.DomainAdd(
            domain: domain.number, usage: !domain.controlOnly, control: !domain.usageOnly)))
    }
  }

  struct RemoveDomain: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "remove-domain", abstract: "Remove a domain from the LPAR (usage and control unless told)."
    )
    @OptionGroup var options: HardwareOptions
    @OptionGroup var domain: DomainOptions
    func run() throws {
      options.show(
        try options.daemon.client.call(
          ControlCommands.DomainRemove(
            domain: domain.number, usage: !domain.controlOnly, control: !domain.usageOnly)))
    }
  }
}

extension Hardware {
  /// An adapter or domain number as the command line gives it: decimal or 0x-hex, 0-255 (the
  /// architecture's; the daemon checks the machine's Na and Nd).
  static func id(_ text: String, _ what: String) throws -> Int {
    let t = text.lowercased()
    let n = t.hasPrefix("0x") ? Int(t.dropFirst(2), radix: 16) : Int(t)
    guard let n, n >= 0 else {
      throw ValidationError(
        "'\(text)' is not \(what == "adapter" ? "an adapter" : "a domain") number (decimal or 0x-hex)")
    }
    guard n <= 255 else {
      // The number as given, and in the other radix.
      let other = t.hasPrefix("0x") ? "\(n)" : "0x\(String(n, radix: 16))"
      throw ValidationError("\(what) \(text) (\(other)) is out of range: \(what)s are 0x00-0xff (0-255)")
    }
    return n
  }
}

/// What every `apvirt hw` command takes: the daemon, and how to print its answer.
struct HardwareOptions: ParsableArguments {
  @OptionGroup var daemon: DaemonOptions
  @Flag(name: .long, help: "Print the daemon's answer as JSON: the summary and the devices that changed.")
  var json = false

  func show(_ change: ControlCommands.HardwareChange) {
    if json {
      let e = JSONEncoder()
      e.outputFormatting = [.prettyPrinted, .sortedKeys]
      print(String(decoding: (try? e.encode(change)) ?? Data(), as: UTF8.self))
    } else {
      print(change.summary)
    }
  }
}

enum OnOff: String, ExpressibleByArgument {
  case on, off
}
