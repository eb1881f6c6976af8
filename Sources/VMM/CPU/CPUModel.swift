import Machine

/// The s390x CPU model of a guest as far as AP goes: which of the AP features it has.
public struct CPUModel: Sendable, Equatable {
  public var name: String
  /// AP instructions installed.
  public var ap = false
  /// Query AP Configuration Information (facility 12).
  public var apqci = false
  /// AP Facilities Test (facility 15).
  public var apft = false
  /// AP queue interruption (facility 65).
  public var apqi = false
  /// AP instructions for secure guests, and their interruption support.
  public var appv = false
  public var appvi = false

  public static let knownModels = ["host", "max", "z13", "z14", "z15", "z16", "qemu"]
  static let featureNames = ["ap", "apqci", "apft", "apqi", "appv", "appvi"]

  /// A parse error, as QEMU prints it after `qemu-system-s390x: `.
  public struct Failure: Error, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
  }

  /// Parses `-cpu NAME[,feature=on|off]...` against what the machine offers. Returns the model
  /// and the warnings QEMU prints (`'apqci' requires 'ap'.`).
  public static func parse(_ text: String, machine: MachineDefinition) throws(Failure) -> (CPUModel, [String])
  {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    let name = parts[0]
    guard knownModels.contains(name) else { throw Failure(message: "unable to find CPU model '\(name)'") }
    var m = CPUModel(name: name)
    let host = hostFeatures(machine)
    if name == "host" || name == "max" { m = host.renamed(name) }
    var requested: Set<String> = []
    // QEMU cuts the features with strtok (cpu_common_parse_features): empty items are skipped,
    // and every other item must be key=value.
    for p in parts.dropFirst() where !p.isEmpty {
      guard let eq = p.firstIndex(of: "=") else {
        throw Failure(message: "Expected key=value format, found \(p).")
      }
      let key = String(p[..<eq])
      let value = String(p[p.index(after: eq)...])
      guard featureNames.contains(key) else {
        throw Failure(
          message:
            "can't apply global \(name)-s390x-cpu.\(key)=\(value): Property '\(name)-s390x-cpu.\(key)' not found"
        )
      }
      let on: Bool
      switch value {
      case "on", "true", "yes": on = true
      case "off", "false", "no": on = false
      default:
        throw Failure(
          message:
            "can't apply global \(name)-s390x-cpu.\(key)=\(value): Parameter '\(key)' expects 'on' or 'off'")
      }
      m.set(key, on)
      if on { requested.insert(key) }
    }
    // Features the host cannot give.
    let missing = featureNames.filter { m.get($0) && !host.get($0) }
    if !missing.isEmpty {
      throw Failure(
        message:
          "Some features requested in the CPU model are not available in the current configuration: \(missing.joined(separator: " "))"
      )
    }
    var warnings: [String] = []
    for (f, dep) in [("apqci", "ap"), ("apft", "ap"), ("apqi", "ap"), ("appv", "ap"), ("appvi", "appv")]
    where m.get(f) && !m.get(dep) {
      warnings.append("warning: '\(f)' requires '\(dep)'.")
    }
    return (m, warnings)
  }

  /// What `-cpu host` gets: every AP feature the machine (KVM) offers.
  static func hostFeatures(_ d: MachineDefinition) -> CPUModel {
    CPUModel(
      name: "host", ap: true, apqci: d.facilities.qci, apft: d.facilities.apft, apqi: d.facilities.aqic,
      appv: false, appvi: false)
  }

  func renamed(_ n: String) -> CPUModel {
    var c = self
    c.name = n
    return c
  }

  func get(_ f: String) -> Bool {
    switch f {
    case "ap": ap
    case "apqci": apqci
    case "apft": apft
    case "apqi": apqi
    case "appv": appv
    default: appvi
    }
  }

  mutating func set(_ f: String, _ v: Bool) {
    switch f {
    case "ap": ap = v
    case "apqci": apqci = v
    case "apft": apft = v
    case "apqi": apqi = v
    case "appv": appv = v
    default: appvi = v
    }
  }

  /// The guest's AP features in effect: without `ap` none of the others work.
  public var effectiveQCI: Bool { ap && apqci }
  public var effectiveAPFT: Bool { ap && apft }
}
