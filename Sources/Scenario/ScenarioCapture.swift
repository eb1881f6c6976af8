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
/// What it does not show is left at the defaults and said in the scenario's ``Scenario/notes``:
/// the machine's name, the CRYCB format (2 with APXA, else 0), the coprocessors' serial numbers
/// and keys, firmware latencies, the kernel's version, guests' names and CPU models, and guests
/// without an mdev. ``visible(_:)`` is the part of a scenario that a capture gives back.
public enum ScenarioCapture {
  public static func capture(
    _ s: SysfsSnapshot, definitions: [String: Scenario.StartMode]? = nil, name: String = "captured"
  ) -> Scenario {
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
      adapters.append(
        MachineDefinition.Adapter(
          apid: apid, type: type!, mode: mode, queueDepth: card.depth ?? 8, configured: card.config ?? true))
    }
    let usage = config.aqm
    let control = s.qci?.adm ?? usage
    var machine = MachineDefinition(
      name: name, na: s.maxAdapterID, nd: s.maxDomainID, apxa: apxa, facilities: facilities,
      crycbFormat: apxa ? 2 : 0, adapters: adapters, usageDomains: usage, controlDomains: control)
    machine.kernel = nil
    notes.append(
      "Not in sysfs, so left at the defaults: the machine's name, CRYCB format, serial numbers, keys, latencies, the kernel's version."
    )

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
    let used = s.mdevs.filter(\.inUse)
    if !used.isEmpty {
      notes.append(
        "Guest names and CPU models are not in sysfs: each guest is named after its mdev (its queues read 'in use'), with cpu host."
      )
    }
    for m in used {
      scenario.guests.append(Scenario.Guest(name: guestName(m.uuid), cpu: "host", mdev: m.uuid))
    }
    scenario.notes = notes
    return scenario
  }

  /// What a capture calls the guest of an mdev: `guest-62177883`.
  public static func guestName(_ uuid: String) -> String { "guest-" + uuid.prefix(8) }

  /// The part of a scenario that capturing the host booted from it gives back: the machine
  /// without what sysfs does not show (its name is `name`), mdevs by UUID, and only guests with an
  /// mdev, named after it, with cpu `host`. `capture(read(up(x)))` equals `visible(x)`.
  public static func visible(_ scenario: Scenario, name: String = "captured") -> Scenario {
    var s = scenario
    s.notes = []
    s.machineFile = nil
    s.machine.name = name
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
    s.mdevs.sort { $0.uuid < $1.uuid }
    s.guests = s.guests.compactMap { g in
      g.mdev.map { Scenario.Guest(name: guestName($0), cpu: "host", mdev: $0) }
    }
    s.guests.sort { ($0.mdev ?? "") < ($1.mdev ?? "") }
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
