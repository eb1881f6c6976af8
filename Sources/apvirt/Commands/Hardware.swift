import ArgumentParser

/// `apvirt hw ...`: what an operator does on the HMC/SE, outside Linux.
struct Hardware: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "hw",
    abstract: "Change the LPAR's AP configuration as the HMC would; the host sees it at once.",
    discussion: """
      Each change is followed by the AP configuration change notification, so the host kernel \
      scans at once (on_config_changed, then on_scan_complete: one APCB update per affected \
      guest). IDs are decimal or 0x-hex.
      """,
    subcommands: [
      Configure.self, Checkstop.self, AddAdapter.self, RemoveAdapter.self, AddDomain.self, RemoveDomain.self,
    ])

  struct Configure: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Configure (on) or deconfigure (off) an adapter (SCLP).")
    @OptionGroup var options: DaemonOptions
    @Argument(help: "The adapter.") var apid: String
    @Argument(help: "on or off.") var state: OnOff
    func run() throws {
      _ = try options.client.call(
        ControlCommands.AdapterConfig(
          apid: ControlClient.number(apid, "an adapter"), configured: state == .on))
    }
  }

  struct Checkstop: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Put an adapter into (on) or out of (off) checkstop.")
    @OptionGroup var options: DaemonOptions
    @Argument(help: "The adapter.") var apid: String
    @Argument(help: "on or off.") var state: OnOff
    func run() throws {
      _ = try options.client.call(
        ControlCommands.AdapterCheckstop(
          apid: ControlClient.number(apid, "an adapter"), checkstopped: state == .on))
    }
  }

  struct AddAdapter: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "add-adapter", abstract: "Add an adapter to the LPAR.")
    @OptionGroup var options: DaemonOptions
    @Argument(help: "The adapter.") var apid: String
    @Option(help: "CEX4 ... CEX8.") var type = "CEX8"
    @Option(help: "cca, accel or ep11.") var mode = "cca"
    func run() throws {
      _ = try options.client.call(
        ControlCommands.AdapterAdd(apid: ControlClient.number(apid, "an adapter"), type: type, mode: mode))
    }
  }

  struct RemoveAdapter: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "remove-adapter", abstract: "Remove an adapter from the LPAR.")
    @OptionGroup var options: DaemonOptions
    @Argument(help: "The adapter.") var apid: String
    func run() throws {
      _ = try options.client.call(
        ControlCommands.AdapterRemove(apid: ControlClient.number(apid, "an adapter")))
    }
  }

  struct DomainOptions: ParsableArguments {
    @Argument(help: "The domain.") var domain: String
    @Flag(name: .long, help: "Only as a usage domain.") var usageOnly = false
    @Flag(name: .long, help: "Only as a control domain.") var controlOnly = false
    var number: Int { get throws { try ControlClient.number(domain, "a domain") } }
  }

  struct AddDomain: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "add-domain", abstract: "Add a domain to the LPAR (usage and control unless told).")
    @OptionGroup var options: DaemonOptions
    @OptionGroup var domain: DomainOptions
    func run() throws {
      _ = try options.client.call(
        ControlCommands.DomainAdd(
          domain: domain.number, usage: !domain.controlOnly, control: !domain.usageOnly))
    }
  }

  struct RemoveDomain: ParsableCommand {
    static let configuration = CommandConfiguration(
      commandName: "remove-domain", abstract: "Remove a domain from the LPAR (usage and control unless told)."
    )
    @OptionGroup var options: DaemonOptions
    @OptionGroup var domain: DomainOptions
    func run() throws {
      _ = try options.client.call(
        ControlCommands.DomainRemove(
          domain: domain.number, usage: !domain.controlOnly, control: !domain.usageOnly))
    }
  }
}

enum OnOff: String, ExpressibleByArgument {
  case on, off
}
