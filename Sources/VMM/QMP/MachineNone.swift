import Foundation
import Machine
import Synchronization

/// QEMU started with `-machine none`: no guest, only what the binary can do. libvirt starts its
/// emulator this way to learn its capabilities (`virQEMUCapsInitQMP`), once per binary, and asks
/// the versions, the target, KVM, the QOM types, the machine types and the CPU models with their
/// expansions. The answers describe what apvirt emulates, in the shapes QEMU gives them (checked
/// against Debian's qemu-system-s390x 7.2): the s390-ccw-virtio machine of the emulated version,
/// the CPU models `-cpu` takes with their AP features, and the types apvirt realizes (`vfio-ap`
/// on the AP bridge) or accepts as inert (accelerators, memory backends, secrets). Nothing else
/// is claimed: a device type apvirt cannot realize is "not found", as on a QEMU built without it.
public final class MachineNone: QMPTarget {
  public let version: QEMUVersion
  /// Whether the accelerator in use is KVM (`accel=kvm[:tcg]`): apvirt emulates an LPAR's KVM, so
  /// KVM is present, and in use unless `tcg` came first.
  public let kvm: Bool
  /// The CPU features `-cpu host` gets from the machine.
  let host: CPUModel
  private let quitFlag = Atomic<Bool>(false)

  /// `machine` gives the AP features of `host` (the embedded default when the emulator has no
  /// host to ask, as during a probe).
  public init(version: QEMUVersion, kvm: Bool, machine: MachineDefinition = .embeddedDefault) {
    self.version = version
    self.kvm = kvm
    host = CPUModel.hostFeatures(machine)
  }

  /// The accelerator QEMU picks from `accel=A:B` (the machine option) or `-accel`: the first it
  /// has, KVM here being present.
  public static func usesKVM(accelerators: [String]) -> Bool {
    for a in accelerators {
      if a == "kvm" { return true }
      if a == "tcg" { return false }
    }
    return true
  }

  public var commandNames: [String] {
    [
      "query-status", "query-target", "query-qmp-schema", "query-kvm", "qom-list-types",
      "device-list-properties", "qom-list-properties", "query-machines", "query-cpu-definitions",
      "query-cpu-model-expansion", "query-command-line-options", "query-migrate-capabilities",
    ]
  }

  public var isQuit: Bool { quitFlag.load(ordering: .relaxed) }

  /// The monitor's owner ends the process once the reply is out.
  public func quitFromMonitor() { quitFlag.store(true, ordering: .relaxed) }

  public func afterReply() {}

  public func addSink(_ key: ObjectIdentifier, _ sink: @escaping @Sendable (QMPValue) -> Void) {}
  public func removeSink(_ key: ObjectIdentifier) {}

  /// The machine type of the emulated version (`s390-ccw-virtio-10.2`).
  public var machineTypeName: String { "s390-ccw-virtio-\(version.major).\(version.minor)" }

  /// QOM types: (name, parent, abstract).
  var types: [(String, String, Bool)] {
    var t: [(String, String, Bool)] = [
      ("vfio-ap", "ap-device", false), ("ap-device", "device", true), ("ap-bridge", "sys-bus-device", false),
      ("ap-bus", "bus", false), ("kvm-accel", "accel", false), ("tcg-accel", "accel", false),
      ("none-machine", "machine", false), ("s390-ccw-virtio-machine", "machine", true),
      (machineTypeName + "-machine", "s390-ccw-virtio-machine", false), ("s390x-cpu", "cpu", true),
      ("secret", "secret_common", false), ("memory-backend-ram", "memory-backend", false),
      ("memory-backend-file", "memory-backend", false), ("memory-backend-memfd", "memory-backend", false),
      // Accepted and inert (``Guest/inertDrivers``): an ordinary domain XML has them.
      ("virtio-balloon-ccw", "virtio-ccw-device", false), ("sclpconsole", "sclp-event", false),
      ("sclplmconsole", "sclp-event", false), ("virtio-blk-ccw", "virtio-ccw-device", false),
    ]
    for m in cpuModels { t.append((m + "-s390x-cpu", "s390x-cpu", false)) }
    return t
  }

  /// The models `query-cpu-definitions` lists: those `-cpu` takes; `host` only with KVM.
  var cpuModels: [String] { CPUModel.knownModels.filter { $0 != "host" || kvm } }

  public func execute(_ name: String, _ args: QMPValue) throws(DeviceError) -> QMPValue {
    typealias S = QMPSession
    switch name {
    case "query-status":
      _ = try S.arguments(args, required: [])
      return .object([("running", .bool(false)), ("status", .string("prelaunch"))])
    case "query-target":
      _ = try S.arguments(args, required: [])
      return .object([("arch", .string("s390x"))])
    case "query-qmp-schema", "query-command-line-options", "query-migrate-capabilities":
      // An empty schema is one libvirt accepts (it then assumes the least of the binary); no
      // option or migration capability is described.
      _ = try S.arguments(
        args, required: [], optional: name == "query-command-line-options" ? ["option"] : [])
      return .array([])
    case "query-kvm":
      _ = try S.arguments(args, required: [])
      return .object([("enabled", .bool(kvm)), ("present", .bool(true))])
    case "qom-list-types":
      let a = try S.arguments(args, required: [], optional: ["implements", "abstract"])
      let implements = try S.string(a, "implements")
      let abstract =
        a["abstract"].flatMap { v -> Bool? in if case .bool(let b) = v { b } else { nil } } ?? false
      return .array(
        types.filter { t in (abstract || !t.2) && (implements.map { isA(t.0, $0) } ?? true) }.map {
          .object([("name", .string($0.0)), ("parent", .string($0.1))])
        })
    case "device-list-properties":
      let a = try S.arguments(args, required: ["typename"])
      let type = try S.string(a, "typename")!
      if Guest.inertDrivers.contains(type) { return .array([]) }
      guard type == "vfio-ap" else {
        throw DeviceError("Device '\(type)' not found", errorClass: "DeviceNotFound")
      }
      return .array([.object([("name", .string("sysfsdev")), ("type", .string("str"))])])
    case "qom-list-properties":
      let a = try S.arguments(args, required: ["typename"])
      let type = try S.string(a, "typename")!
      guard types.contains(where: { $0.0 == type }) else {
        throw DeviceError("Class '\(type)' not found", errorClass: "DeviceNotFound")
      }
      return .array([])
    case "query-machines":
      _ = try S.arguments(args, required: [], optional: ["compat-props"])
      return .array([
        .object([
          ("name", .string(machineTypeName)), ("alias", .string("s390-ccw-virtio")),
          ("is-default", .bool(true)),
          ("cpu-max", .int(248)), ("hotpluggable-cpus", .bool(true)), ("numa-mem-supported", .bool(false)),
          ("default-cpu-type", .string("qemu-s390x-cpu")), ("default-ram-id", .string("s390.ram")),
          ("deprecated", .bool(false)), ("acpi", .bool(false)),
        ]),
        .object([
          ("name", .string("none")), ("cpu-max", .int(1)), ("hotpluggable-cpus", .bool(false)),
          ("numa-mem-supported", .bool(false)), ("default-ram-id", .string("ram")),
          ("deprecated", .bool(false)),
          ("acpi", .bool(false)),
        ]),
      ])
    case "query-cpu-definitions":
      _ = try S.arguments(args, required: [])
      return .array(
        cpuModels.map {
          .object([
            ("name", .string($0)), ("typename", .string($0 + "-s390x-cpu")),
            ("unavailable-features", .array([])),
            ("static", .bool(false)), ("migration-safe", .bool($0 != "host")), ("deprecated", .bool(false)),
          ])
        })
    case "query-cpu-model-expansion":
      let a = try S.arguments(args, required: ["type", "model"])
      guard let type = try S.string(a, "type"), ["static", "full"].contains(type) else {
        throw DeviceError("Parameter 'type' does not accept value '\(a["type"]?.stringValue ?? "")'")
      }
      guard case .object = a["model"]!, let model = a["model"]?["name"]?.stringValue else {
        throw DeviceError("Parameter 'model.name' is missing")
      }
      return .object([("model", try expansion(model, props: a["model"]?["props"]))])
    default:
      throw DeviceError("The command \(name) has not been found", errorClass: "CommandNotFound")
    }
  }

  /// Whether `type` is `ancestor` or derives from it.
  func isA(_ type: String, _ ancestor: String) -> Bool {
    var t: String? = type
    var seen = 0
    while let current = t, seen < 16 {
      if current == ancestor { return true }
      t = types.first { $0.0 == current }?.1
      seen += 1
    }
    return false
  }

  /// A model with its AP features (`ap`, `apqci`, `apft`, `apqi`, `appv`, `appvi`), the ones
  /// asked for applied: what `-cpu MODEL,...` would give a guest.
  func expansion(_ model: String, props: QMPValue?) throws(DeviceError) -> QMPValue {
    guard cpuModels.contains(model) else {
      throw DeviceError("The CPU definition '\(model)' is unknown.")
    }
    // As `-cpu` takes them: host and max have what KVM gives; a named model has none of the AP
    // features unless they are asked for.
    var m = model == "host" || model == "max" ? host : CPUModel(name: model)
    if case .object(let asked) = props {
      for (k, v) in asked {
        guard CPUModel.featureNames.contains(k) else {
          throw DeviceError("Property '\(model)-s390x-cpu.\(k)' not found")
        }
        guard case .bool(let on) = v else {
          throw DeviceError("Invalid parameter type for '\(k)', expected: boolean")
        }
        m.set(k, on)
      }
    }
    return .object([
      ("name", .string(model)),
      ("props", .object(CPUModel.featureNames.map { ($0, .bool(m.get($0))) })),
    ])
  }
}
