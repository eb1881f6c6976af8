import APModel
import Foundation
import HostKernel
import Machine

/// The control socket's hardware commands: what an operator does on the HMC/SE to the LPAR's AP
/// configuration (`apvirt hw`). Each one checks everything before it changes anything, so a
/// refused operation leaves the machine and the host as they were; a done one is followed by the
/// configuration-change notification (the host scans at once) and answers what changed on the
/// host, device by device.
enum HardwareControl {
  typealias Change = ControlCommands.HardwareChange

  static func adapterConfig(_ c: ControlCommands.AdapterConfig, _ host: EmulatedHost) throws(ControlFailure)
    -> Change
  {
    let id = hexID(c.apid)
    return try change(host) { m in
      try m.checkAdapterRange(c.apid)
      guard let a = m.adapters[c.apid] else { throw MachineOperationError.noSuchAdapter(c.apid) }
      if a.configured == c.configured {
        return .unchanged(
          "adapter \(id) is already \(c.configured ? "configured" : "deconfigured"): nothing changed")
      }
      try m.setConfigured(c.apid, c.configured)
      return .done { d in
        "adapter \(id) \(c.configured ? "configured" : "deconfigured"): \(d.describeUpdated()), with config \(c.configured ? 1 : 0)"
      }
    }
  }

  static func adapterCheckstop(_ c: ControlCommands.AdapterCheckstop, _ host: EmulatedHost)
    throws(ControlFailure) -> Change
  {
    let id = hexID(c.apid)
    return try change(host) { m in
      try m.checkAdapterRange(c.apid)
      guard let a = m.adapters[c.apid] else { throw MachineOperationError.noSuchAdapter(c.apid) }
      if a.checkstopped == c.checkstopped {
        return .unchanged(
          "adapter \(id) is already \(c.checkstopped ? "checkstopped" : "out of checkstop"): nothing changed")
      }
      try m.setCheckstopped(c.apid, c.checkstopped)
      return .done { d in
        "adapter \(id) \(c.checkstopped ? "checkstopped" : "out of checkstop"): \(d.describeUpdated()), with chkstop \(c.checkstopped ? 1 : 0)"
      }
    }
  }

  static func adapterAdd(_ c: ControlCommands.AdapterAdd, _ host: EmulatedHost) throws(ControlFailure)
    -> Change
  {
    let typeName = c.type ?? "CEX8"
    let modeName = c.mode ?? "cca"
    guard let type = AdapterType(knownName: typeName) else {
      throw ControlFailure("unknown adapter type '\(typeName)' (known: \(AdapterType.knownNames))")
    }
    guard let mode = AdapterMode(name: modeName) else {
      throw ControlFailure("unknown mode '\(modeName)' (known: cca, accel, ep11)")
    }
    let id = hexID(c.apid)
    return try change(host) { m in
      try m.addAdapter(.init(apid: c.apid, type: type, mode: mode))
      return .done { d in
        "adapter \(id) (\(type.name), \(mode.rawValue)) added: \(d.describe(d.added)) appear on the host"
      }
    }
  }

  static func adapterRemove(_ c: ControlCommands.AdapterRemove, _ host: EmulatedHost) throws(ControlFailure)
    -> Change
  {
    let id = hexID(c.apid)
    return try change(host) { m in
      try m.checkAdapterRange(c.apid)
      guard let a = m.adapters[c.apid]?.definition else { throw MachineOperationError.noSuchAdapter(c.apid) }
      try m.removeAdapter(c.apid)
      return .done { d in
        "adapter \(id) (\(a.type.name), \(a.mode.rawValue)) removed: \(d.describe(d.removed)) leave the host"
      }
    }
  }

  /// Adds or removes a domain as a usage and/or a control domain. Both parts are checked before
  /// either is made, so a refused operation changes nothing.
  static func domain(add: Bool, _ d: Int, usage: Bool, control: Bool, _ host: EmulatedHost)
    throws(ControlFailure) -> Change
  {
    guard usage || control else {
      throw ControlFailure("nothing to do: neither a usage nor a control domain")
    }
    let id = hexID(d)
    let what = usage && control ? "a usage and control domain" : usage ? "a usage domain" : "a control domain"
    return try change(host) { m in
      try m.checkDomainRange(d)
      // The parts the operation asks for, and whether the LPAR has each already.
      let parts = [
        ("usage", usage, m.usageDomains.contains(d)), ("control", control, m.controlDomains.contains(d)),
      ]
      for (name, asked, present) in parts where asked && present == add {
        let other = name == "usage" ? "control" : "usage"
        var next = ""
        if usage && control, let p = parts.first(where: { $0.0 == other }), p.2 != add {
          // The other part alone would do: say how.
          next = "; \(add ? "add" : "remove") it as a \(other) domain alone with --\(other)-only"
        }
        let error: MachineOperationError =
          add ? .alreadyPresent("\(name) domain", d) : .notPresent("\(name) domain", d)
        throw ControlFailure("\(error.description): nothing changed\(next)")
      }
      if add {
        if usage { try m.addUsageDomain(d) }
        if control { try m.addControlDomain(d) }
      } else {
        if usage { try m.removeUsageDomain(d) }
        if control { try m.removeControlDomain(d) }
      }
      let mask = usage ? "ap_usage_domain_mask" : "ap_control_domain_mask"
      return .done { diff in
        let queues = add ? diff.added : diff.removed
        var s =
          "domain \(id) \(add ? "added as" : "removed as") \(what): \(mask) \(add ? "shows" : "drops") it"
        if usage {
          s +=
            queues.isEmpty
            ? "; no queues \(add ? "appear" : "leave") (the LPAR has no adapters)"
            : "; \(diff.describe(queues)) \(add ? "appear on" : "leave") the host"
        } else {
          s += "; no queues change (a control domain has none)"
        }
        return s
      }
    }
  }

  /// Sets an adapter's reset and interrupt latencies. No configuration changes, so the host is
  /// not notified and no device changes.
  static func adapterLatency(_ c: ControlCommands.AdapterLatency, _ host: EmulatedHost)
    throws(ControlFailure) -> Change
  {
    guard c.resetNs != nil || c.irqNs != nil else {
      throw ControlFailure("nothing to do: give a reset latency, an interrupt latency or both")
    }
    for v in [c.resetNs, c.irqNs].compactMap({ $0 }) where v > maxLatency {
      throw ControlFailure("a latency of \(duration(v)) is above the limit of 1 hour: nothing changed")
    }
    let id = hexID(c.apid)
    return try firmware(host) { m in
      try m.setLatency(c.apid, reset: c.resetNs, irq: c.irqNs)
      let a = m.adapters[c.apid]!
      return "adapter \(id): reset latency \(duration(a.resetLatency)), irq latency \(duration(a.irqLatency))"
    }
  }

  /// The longest latency an adapter may be given (what the machine definition allows too).
  static let maxLatency: UInt64 = 3_600_000_000_000

  /// Injects or clears a fault for the next resets of a queue or an adapter's queues.
  static func fault(_ c: ControlCommands.Fault, _ host: EmulatedHost) throws(ControlFailure) -> Change {
    let target: APMachine.FaultTarget
    if c.target.contains("."), let q = APQN(c.target) {
      target = .queue(q)
    } else if let a = parseID(c.target) {
      target = .adapter(a)
    } else {
      throw ControlFailure(
        "'\(c.target)' is neither an adapter (05, 0x05) nor a queue (05.0004)")
    }
    let known = APMachine.Fault.allCases.map(\.rawValue) + ["clear"]
    if c.fault == "clear" {
      if c.count != nil { throw ControlFailure("clear takes no count") }
      return try firmware(host) { m in
        guard let f = m.clearFault(on: target) else {
          return "\(target): no fault injected: nothing changed"
        }
        return "\(target): fault cleared (\(f.fault.rawValue), \(resets(f.remaining)) left)"
      }
    }
    guard let fault = APMachine.Fault(rawValue: c.fault) else {
      throw ControlFailure("unknown fault '\(c.fault)' (known: \(known.joined(separator: ", ")))")
    }
    let count = c.count ?? 1
    return try firmware(host) { m in
      try m.injectFault(fault, on: target, count: count)
      let resets = count == 1 ? "reset answers" : "\(count) resets answer"
      return switch fault {
      case .busy: "\(target): the next \(resets) rc 05 (busy)"
      case .resetInProgress: "\(target): the next \(resets) rc 02 (reset in progress)"
      case .checkstopDuringReset: "\(target): the next reset checkstops the adapter while it runs"
      }
    }
  }

  /// `1 reset`, `3 resets`.
  static func resets(_ n: Int) -> String { n == 1 ? "1 reset" : "\(n) resets" }

  /// `05`, `0x05`, `5`: an adapter number.
  static func parseID(_ text: String) -> Int? {
    let t = text.lowercased()
    let n = t.hasPrefix("0x") ? Int(t.dropFirst(2), radix: 16) : Int(t, radix: 16)
    guard let n, (0...255).contains(n) else { return nil }
    return n
  }

  /// `150ms`, `500us`, `20ns`, `0ms`: a latency as the machine definition writes it.
  static func duration(_ ns: UInt64) -> String {
    if ns % 1_000_000 == 0 { return "\(ns / 1_000_000)ms" }
    if ns % 1_000 == 0 { return "\(ns / 1_000)us" }
    return "\(ns)ns"
  }

  /// Runs an operation on the firmware alone (no configuration change) under the host's lock.
  static func firmware(_ host: EmulatedHost, _ op: (APMachine) throws -> String) throws(ControlFailure)
    -> Change
  {
    let result: Result<String, ControlFailure> = host.withKernel { k in
      do {
        return .success(try op(k.machine))
      } catch let e as ControlFailure {
        return .failure(e)
      } catch {
        return .failure(ControlFailure("\(error)"))
      }
    }
    switch result {
    case .success(let text): return Change(summary: text, changed: true, added: [], removed: [], updated: [])
    case .failure(let e): throw e
    }
  }

  /// What an operation did to the machine: nothing (it already was so, with the text that says
  /// it), or a change, with the text made from what the host then shows.
  enum Outcome {
    case unchanged(String)
    case done((DeviceDiff) -> String)
  }

  /// Runs a hardware operation under the host's lock; on a change, the notification and the
  /// host's devices before and after.
  static func change(_ host: EmulatedHost, _ op: (APMachine) throws -> Outcome) throws(ControlFailure)
    -> Change
  {
    let result: Result<Change, ControlFailure> = host.withKernel { k in
      let before = DeviceDiff.snapshot(k.apBus)
      let outcome: Outcome
      do {
        outcome = try op(k.machine)
      } catch let e as ControlFailure {
        return .failure(e)
      } catch {
        return .failure(ControlFailure("\(error)"))
      }
      switch outcome {
      case .unchanged(let text):
        return .success(Change(summary: text, changed: false, added: [], removed: [], updated: []))
      case .done(let text):
        k.notifyConfigurationChange()
        let diff = DeviceDiff(before: before, after: DeviceDiff.snapshot(k.apBus))
        return .success(
          Change(
            summary: text(diff), changed: true, added: diff.added, removed: diff.removed,
            updated: diff.updated))
      }
    }
    switch result {
    case .success(let c): return c
    case .failure(let e): throw e
    }
  }
}

/// The host's AP devices before and after a change: which appeared, left, or changed state.
struct DeviceDiff {
  var added: [String] = []
  var removed: [String] = []
  var updated: [String] = []

  /// Each card and queue device by name, with the state sysfs shows for it.
  static func snapshot(_ bus: APBus) -> [String: String] {
    var out: [String: String] = [:]
    for c in bus.cards.values { out[c.name] = "\(c.config) \(c.chkstop) \(c.online)" }
    for q in bus.queues.values { out[q.name] = "\(q.config) \(q.chkstop) \(q.online)" }
    return out
  }

  init(before: [String: String], after: [String: String]) {
    // Cards first, then queues, each ascending: `card05`, `05.0004`, ...
    func order(_ a: String, _ b: String) -> Bool {
      let ca = a.hasPrefix("card")
      let cb = b.hasPrefix("card")
      return ca != cb ? ca : a < b
    }
    added = after.keys.filter { before[$0] == nil }.sorted(by: order)
    removed = before.keys.filter { after[$0] == nil }.sorted(by: order)
    updated = after.keys.filter { before[$0] != nil && before[$0] != after[$0] }.sorted(by: order)
  }

  /// `card20 and its 256 queues`, `12 queues, 00.0007 to 0b.0007`, `queue 05.0007`.
  func describe(_ names: [String]) -> String {
    let cards = names.filter { $0.hasPrefix("card") }
    let queues = names.filter { !$0.hasPrefix("card") }
    let n = queues.count
    if cards.count == 1 {
      return n == 0 ? cards[0] : "\(cards[0]) and its \(n == 1 ? "queue" : "\(n) queues")"
    }
    let cardText = cards.isEmpty ? "" : "\(cards.count) cards and "
    switch n {
    case 0: return cards.isEmpty ? "no devices" : "\(cards.count) cards"
    case 1: return cardText + "queue \(queues[0])"
    default: return cardText + "\(n) queues, \(queues[0]) to \(queues[n - 1]),"
    }
  }

  /// What stayed but changed state, or that nothing did.
  func describeUpdated() -> String {
    updated.isEmpty ? "no host device changes" : describe(updated) + " stay on the host"
  }
}
