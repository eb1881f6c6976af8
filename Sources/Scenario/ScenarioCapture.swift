import APModel
import Foundation
import Machine
import Planning

/// `apvirt capture`: the scenario a sysfs root shows (the emulated host's mount, an LPAR's `/sys`,
/// or a `cp -r` copy of either), so that a production configuration can be replayed with
/// `apvirt up --config`.
///
/// What sysfs shows, and so what is captured:
/// - the machine: Na and Nd (`ap_max_adapter_id`, `ap_max_domain_id`), APXA (`features`, else a
///   card's `ap_functions`), QCI (its masks read `not supported` without it), AQIC
///   (`ap_interrupts`), APFT (without it the kernel finds no card of those QCI lists), the usage
///   and control domains (`ap_usage_domain_mask`, `ap_control_domain_mask`), and each adapter's
///   type (`raw_hwtype`), mode (`ap_functions`), `depth` and `config`;
/// - the masks (`apmask`, `aqmask`);
/// - every mdev with its matrix (`ap_config`, else `matrix` and `control_domains`), and, given
///   mdevctl's definitions, its start mode;
/// - a guest for every mdev whose queues read `in use`.
///
/// What sysfs does not show comes from where a host keeps it, when the caller has it: the guests'
/// names and CPU models (``KnownGuests``: the emulated host's daemon, or libvirt's domain XML),
/// the machine's name, kernel, CRYCB format and latencies (``HostFacts``: the daemon). What no
/// source gave is left at the defaults and said in the scenario's ``Scenario/notes``; the
/// coprocessors' serial numbers and keys are always left at the defaults.
public enum ScenarioCapture {
  /// The guests a capture names, from where a host keeps what sysfs does not: their names, CPU
  /// models and mdevs.
  public struct KnownGuests: Sendable {
    /// Where they come from, for the notes: `the apvirt daemon`, `libvirt's domains in DIR`.
    public var source: String
    /// In the scenario's order.
    public var guests: [Scenario.Guest]
    /// What the source could not settle (a domain that does not run), written as notes.
    public var notes: [String]

    public init(source: String, guests: [Scenario.Guest], notes: [String] = []) {
      self.source = source
      self.guests = guests
      self.notes = notes
    }
  }

  /// What the emulated host's daemon knows of its machine that sysfs does not show.
  public struct HostFacts: Sendable {
    public var machineName: String
    /// The upstream kernel the host runs when not apvirt's default (`6.12`), else nil.
    public var kernel: String?
    public var crycbFormat: Int
    /// The firmware latencies of each adapter that has any, in nanoseconds.
    public var latencies: [APID: (reset: UInt64, irq: UInt64)]

    public init(
      machineName: String, kernel: String? = nil, crycbFormat: Int,
      latencies: [APID: (reset: UInt64, irq: UInt64)] = [:]
    ) {
      self.machineName = machineName
      self.kernel = kernel
      self.crycbFormat = crycbFormat
      self.latencies = latencies
    }
  }

  /// A capture and what it could not know, for the command to say on stderr.
  public struct Outcome: Sendable {
    public var scenario: Scenario
    /// The mdevs in use whose guest no source named: each is written as `guest-UUIDPREFIX`
    /// with `cpu: host`.
    public var unnamedGuests: [String]
  }

  public static func capture(
    _ s: SysfsSnapshot, definitions: [String: Scenario.StartMode]? = nil, guests known: KnownGuests? = nil,
    host: HostFacts? = nil, name: String? = nil
  ) -> Outcome {
    var notes: [String] = ["Captured from \(s.root) by apvirt capture."]
    let functions = s.cards.values.compactMap(\.functions)
    let apxa =
      s.features.map { $0.contains("APXA") }
      ?? (functions.first.map { $0 & AdapterMode.funcAPXA != 0 }
        ?? (s.maxAdapterID > 63 || s.maxDomainID > 15))
    let config = s.hostConfiguration
    let facilities = APFacilities(
      qci: s.qci != nil,
      apft: !(s.cards.isEmpty && !(s.qci?.apm.isEmpty ?? true)),
      aqic: s.interrupts ?? true)
    var adapters: [MachineDefinition.Adapter] = []
    for apid in config.apm.union(APMask(s.cards.keys)) {
      guard let card = s.cards[apid] else {
        notes.append(
          "Adapter 0x\(padHex(apid, 2)) is in the configuration but has no card device: left out.")
        continue
      }
      var type = card.rawHardwareType.map { AdapterType(rawValue: $0) }
      if type.map({ !AdapterType.known.contains($0) }) ?? true {
        // A newer type than the kernel knows, or no raw_hwtype: zcrypt's name (`CEX8C`).
        let fromName = card.type.flatMap { AdapterType(knownName: String($0.dropLast())) }
        type = fromName ?? .newestKnown
        notes.append(
          "Adapter 0x\(padHex(apid, 2)): type \(card.rawHardwareType.map(String.init) ?? "unknown") written as \(type!.name)."
        )
      }
      var mode = AdapterMode.cca
      if let f = card.functions {
        mode = f & AdapterMode.funcEP11 != 0 ? .ep11 : f & AdapterMode.funcACCEL != 0 ? .accel : .cca
      } else if let t = card.type?.last {
        mode = t == "P" ? .ep11 : t == "A" ? .accel : .cca
      }
      var adapter = MachineDefinition.Adapter(
        apid: apid, type: type!, mode: mode, queueDepth: card.depth ?? 8, configured: card.config ?? true)
      if let l = host?.latencies[apid] {
        adapter.resetLatency = l.reset
        adapter.irqLatency = l.irq
      }
      adapters.append(adapter)
    }
    let usage = config.aqm
    let control = s.qci?.adm ?? usage
    var machine = MachineDefinition(
      name: name ?? host?.machineName ?? "captured", na: s.maxAdapterID, nd: s.maxDomainID, apxa: apxa,
      facilities: facilities, crycbFormat: host?.crycbFormat ?? (apxa ? 2 : 0), adapters: adapters,
      usageDomains: usage, controlDomains: control)
    machine.kernel = host?.kernel
    if host == nil {
      notes.append(
        "Not in sysfs, so left at the defaults: \(name == nil ? "the machine's name, " : "")CRYCB format, serial numbers, keys, latencies, the kernel's version."
      )
    } else {
      notes.append(
        "The machine's \(name == nil ? "name, " : "")kernel, CRYCB format and latencies are the daemon's.")
      notes.append("Not in sysfs, so left at the defaults: serial numbers, keys.")
    }

    var scenario = Scenario(machine: machine, apmask: s.apmask, aqmask: s.aqmask)
    for m in s.mdevs {
      var start = Scenario.StartMode.manual
      if let definitions {
        if let d = definitions[m.uuid] {
          start = d
        } else {
          notes.append("mdev \(m.uuid) has no mdevctl definition: written as start: manual.")
        }
      }
      scenario.mdevs.append(Scenario.Mdev(uuid: m.uuid, matrix: m.matrix, start: start))
    }
    if definitions == nil && !s.mdevs.isEmpty {
      notes.append("No mdevctl definitions read (--state): every mdev is written as start: manual.")
    }
    for (uuid, _) in (definitions ?? [:]).sorted(by: { $0.key < $1.key }) where s.mdev(uuid) == nil {
      notes.append("mdev \(uuid) is defined in mdevctl but not running: left out.")
    }

    if let known {
      notes.append("Guest names and CPU models from \(known.source).")
      notes += known.notes
      scenario.guests = known.guests
    }
    let named = Set(scenario.guests.compactMap(\.mdev))
    let unnamed = s.mdevs.filter { $0.inUse && !named.contains($0.uuid) }
    if !unnamed.isEmpty {
      notes.append(
        known == nil
          ? "Guest names and CPU models are not in sysfs: each guest is named after its mdev (its queues read 'in use'), with cpu host."
          : "\(known!.source) names no guest of mdev \(unnamed.map(\.uuid).joined(separator: ", ")), whose queues read 'in use': named after the mdev, with cpu host."
      )
    }
    for m in unnamed {
      scenario.guests.append(Scenario.Guest(name: guestName(m.uuid), cpu: "host", mdev: m.uuid))
    }
    scenario.notes = notes
    return Outcome(scenario: scenario, unnamedGuests: unnamed.map(\.uuid))
  }

  /// The guests libvirt's domains name, for the mdevs whose queues read `in use`: a domain whose
  /// vfio-ap hostdev names such an mdev is its guest (of several, the one that runs, as
  /// `virsh dumpxml` of a running domain shows). A domain without a vfio-ap hostdev is no
  /// scenario guest; one whose mdev is not in use does not run, and is left out with a note.
  public static func guests(
    libvirt domains: [(file: String, domain: LibvirtDomain)], directory: String, snapshot s: SysfsSnapshot
  ) -> KnownGuests {
    var notes: [String] = []
    var byMdev: [String: [LibvirtDomain]] = [:]
    for (_, d) in domains { if let m = d.mdev { byMdev[m, default: []].append(d) } }
    var chosen: [String: LibvirtDomain] = [:]
    for (uuid, candidates) in byMdev {
      guard let m = s.mdev(uuid) else {
        notes.append(
          "libvirt domain \(candidates.map(\.name).joined(separator: ", ")) uses mdev \(uuid), which sysfs does not show: left out."
        )
        continue
      }
      guard m.inUse else {
        notes.append(
          "libvirt domain \(candidates.map(\.name).joined(separator: ", ")) uses mdev \(uuid), whose queues are not in use (the domain does not run): left out."
        )
        continue
      }
      let running = candidates.filter(\.running)
      if candidates.count == 1 {
        chosen[uuid] = candidates[0]
      } else if running.count == 1 {
        chosen[uuid] = running[0]
      } else {
        notes.append(
          "libvirt domains \(candidates.map(\.name).joined(separator: ", ")) all use mdev \(uuid) and none alone is known to run."
        )
      }
    }
    // A running domain without a vfio-ap hostdev is a guest of the scenario without an mdev (as
    // `up --config` runs one); a defined one that does not run is nothing the host shows.
    let stopped = domains.filter { $0.domain.mdev == nil && !$0.domain.running }.map(\.domain.name)
    if !stopped.isEmpty {
      notes.append(
        "libvirt domains that do not run and have no vfio-ap hostdev: left out: \(stopped.joined(separator: ", "))."
      )
    }
    var guests: [Scenario.Guest] = []
    for (_, d) in domains {
      if let m = d.mdev {
        guard chosen[m] == d else { continue }
        guests.append(Scenario.Guest(name: d.name, cpu: d.cpu, mdev: m))
      } else if d.running {
        guests.append(Scenario.Guest(name: d.name, cpu: d.cpu))
      }
    }
    return KnownGuests(source: "libvirt's domains in \(directory)", guests: guests, notes: notes)
  }

  /// What a capture calls the guest of an mdev no source names: `guest-62177883`.
  public static func guestName(_ uuid: String) -> String { "guest-" + uuid.prefix(8) }

  /// The part of a scenario that capturing the host booted from it gives back from sysfs alone
  /// (a copy of the mount, without --libvirt and the daemon): the machine without what sysfs
  /// does not show (its name is `name`, when given), and only guests with an mdev, named after
  /// it, with cpu `host`.
  public static func visible(_ scenario: Scenario, name: String? = nil) -> Scenario {
    var s = scenario
    s.notes = []
    s.machineFile = nil
    if let name { s.machine.name = name }
    s.machine.kernel = nil
    s.machine.crycbFormat = s.machine.apxa ? 2 : 0
    if !s.machine.facilities.qci {
      // Without QCI the kernel addresses 63 adapters and 15 domains and knows no control domains.
      s.machine.na = 63
      s.machine.nd = 15
    }
    s.machine.adapters = s.machine.adapters.map { a in
      MachineDefinition.Adapter(
        apid: a.apid, type: a.type, mode: a.mode, queueDepth: a.queueDepth, configured: a.configured)
    }
    s.guests = s.guests.compactMap { g in
      g.mdev.map { Scenario.Guest(name: guestName($0), cpu: "host", mdev: $0) }
    }
    return s
  }

  /// The start mode of each mdevctl definition of the matrix parent in `directory`
  /// (`STATE/etc/mdevctl.d`, `/etc/mdevctl.d`), by UUID; files that are not definitions are
  /// skipped.
  public static func readDefinitions(directory: String) -> [String: Scenario.StartMode] {
    let dir = directory + "/matrix"
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return [:] }
    var found: [String: Scenario.StartMode] = [:]
    for name in names where SysfsSnapshot.isUUID(name) {
      guard let data = FileManager.default.contents(atPath: dir + "/" + name),
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
      else { continue }
      found[name.lowercased()] = (object["start"] as? String) == "auto" ? .auto : .manual
    }
    return found
  }
}
