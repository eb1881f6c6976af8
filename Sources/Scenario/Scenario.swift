import APModel
import Machine

/// A whole AP configuration as one value: the machine, the kernel's masks, the mediated devices
/// with their matrices and start modes, and the guests that use them. Read from a scenario file
/// (``ScenarioLoader``), written as one (``yamlText``), booted by `apvirt up --config FILE`, and
/// captured from a sysfs root (``ScenarioCapture``).
///
/// ```yaml
/// machine: z15-lab.yaml        # a machine definition file, relative to the scenario, or inline:
/// # machine: { name: lab, adapters: [ { apids: 5-6, type: CEX8, mode: cca } ] }
/// kernel:
///   apmask: -5,-6              # 0x-hex (the kernel's), a list of bits that are on (chzdev's,
///   aqmask: -4,-0x47           # 0-4,7-255), or +/- changes to the boot default (all on)
/// mdevs:
///   - uuid: 62177883-f1bb-47f0-914d-32a22e3a8804
///     adapters: 5,6            # id lists as in a machine definition: 0x05-0x06, [5, 6]
///     domains: 4,0xab
///     control-domains: 0xab    # optional
///     start: auto              # auto or manual (default manual, as mdevctl define)
/// guests:
///   - name: guest1
///     cpu: host                # QEMU's -cpu (default host)
///     mdev: 62177883-f1bb-47f0-914d-32a22e3a8804   # optional: a guest without AP
/// ```
///
/// Two scenarios are equal when they describe the same configuration: where a file said it
/// (``Mdev/line``, ``Guest/line``, ``machineFile``) does not count, nor the order of the mdevs
/// (mdevctl starts the `auto` ones at boot in its own order, whatever the file's) or of the
/// guests (each has its own mdev and name).
public struct Scenario: Sendable {
  public var machine: MachineDefinition
  /// The machine's file as the scenario names it (relative to the scenario), or nil when the
  /// machine is inline.
  public var machineFile: String?
  /// What the AP bus's masks are once the host has booted (chzdev's persistent masks): all bits
  /// on, the kernel's default, unless the scenario says otherwise.
  public var apmask: APMask
  public var aqmask: APMask
  /// The mediated devices, in the file's order.
  public var mdevs: [Mdev]
  public var guests: [Guest]
  /// Lines a capture could not fill in from what it read (a guest's name is not in sysfs),
  /// written as comments at the top of the file; not part of the configuration.
  public var notes: [String] = []

  public init(
    machine: MachineDefinition, machineFile: String? = nil, apmask: APMask = .all(), aqmask: APMask = .all(),
    mdevs: [Mdev] = [], guests: [Guest] = []
  ) {
    self.machine = machine
    self.machineFile = machineFile
    self.apmask = apmask
    self.aqmask = aqmask
    self.mdevs = mdevs
    self.guests = guests
  }

  /// When mdevctl starts a defined mdev: at boot (`auto`) or when asked (`manual`).
  public enum StartMode: String, Hashable, Sendable {
    case auto
    case manual
  }

  /// One mediated device of type `vfio_ap-passthrough` on the matrix parent.
  public struct Mdev: Hashable, Sendable {
    /// Lower case, as sysfs names it.
    public var uuid: String
    /// Its assigned matrix (adapters, usage domains, control domains).
    public var matrix: APMatrix
    public var start: StartMode
    /// The line of its entry in the scenario file, if it came from one.
    public var line: Int?

    public init(uuid: String, matrix: APMatrix, start: StartMode = .manual, line: Int? = nil) {
      self.uuid = uuid.lowercased()
      self.matrix = matrix
      self.start = start
      self.line = line
    }

    public static func == (a: Mdev, b: Mdev) -> Bool {
      a.uuid == b.uuid && a.matrix == b.matrix && a.start == b.start
    }

    public func hash(into h: inout Hasher) {
      h.combine(uuid)
      h.combine(matrix)
      h.combine(start)
    }

    /// The writes that build it, in mdevctl's order: adapters, domains, control domains (the
    /// attribute and the value as mdevctl's definition keeps them).
    public var attributes: [(String, String)] {
      matrix.apm.map { ("assign_adapter", "0x\(padHex($0, 2))") }
        + matrix.aqm.map { ("assign_domain", "0x\(padHex($0, 4))") }
        + matrix.adm.map { ("assign_control_domain", "0x\(padHex($0, 4))") }
    }

    /// Its mdevctl definition (`/etc/mdevctl.d/matrix/UUID`), as `mdevctl define` writes it.
    public var mdevctlJSON: String {
      var t =
        "{\n  \"mdev_type\": \"vfio_ap-passthrough\",\n  \"start\": \"\(start.rawValue)\",\n  \"attrs\": ["
      t += attributes.map { "\n    {\n      \"\($0.0)\": \"\($0.1)\"\n    }" }.joined(separator: ",")
      t += attributes.isEmpty ? "]\n}\n" : "\n  ]\n}\n"
      return t
    }
  }

  /// One guest: QEMU started with `-name NAME -cpu CPU -device vfio-ap,sysfsdev=...` on its mdev.
  public struct Guest: Hashable, Sendable {
    public var name: String
    public var cpu: String
    /// The UUID of the mdev it uses, or nil for a guest without AP.
    public var mdev: String?
    public var line: Int?

    public init(name: String, cpu: String = "host", mdev: String? = nil, line: Int? = nil) {
      self.name = name
      self.cpu = cpu
      self.mdev = mdev?.lowercased()
      self.line = line
    }

    public static func == (a: Guest, b: Guest) -> Bool {
      a.name == b.name && a.cpu == b.cpu && a.mdev == b.mdev
    }

    public func hash(into h: inout Hasher) {
      h.combine(name)
      h.combine(cpu)
      h.combine(mdev)
    }

    /// What `apvirt qemu` (QEMU's command line, without the program) gets for it.
    public var qemuArguments: [String] {
      var argv = ["-name", name, "-cpu", cpu]
      if let mdev { argv += ["-device", "vfio-ap,sysfsdev=/sys/bus/mdev/devices/\(mdev)"] }
      return argv
    }
  }

  public func mdev(_ uuid: String) -> Mdev? {
    let u = uuid.lowercased()
    return mdevs.first { $0.uuid == u }
  }
}

extension Scenario: Hashable {
  public static func == (a: Scenario, b: Scenario) -> Bool {
    a.machine == b.machine && a.apmask == b.apmask && a.aqmask == b.aqmask && a.sortedMdevs == b.sortedMdevs
      && a.sortedGuests == b.sortedGuests
  }

  public func hash(into h: inout Hasher) {
    h.combine(machine)
    h.combine(apmask)
    h.combine(aqmask)
    h.combine(sortedMdevs)
    h.combine(sortedGuests)
  }

  /// The mdevs by UUID and the guests by name: the lists as equality sees them.
  var sortedMdevs: [Mdev] { mdevs.sorted { $0.uuid < $1.uuid } }
  var sortedGuests: [Guest] { guests.sorted { ($0.name, $0.mdev ?? "") < ($1.name, $1.mdev ?? "") } }
}
