import Foundation
import Machine

/// What a QEMU command line asks for, as far as an s390x guest with AP goes.
public struct GuestConfiguration: Sendable {
  public var name = "guest"
  public var machineType = "s390-ccw-virtio"
  public var cpu = "host"
  public var vcpus = 1
  public var memory = "128M"
  /// `-device` specifications in order, each a list of properties (`driver` among them).
  public var devices: [[(String, QMPValue)]] = []
  /// The original text of each `-device`, for error messages.
  public var deviceTexts: [String] = []
  /// QMP monitors: Unix socket paths.
  public var qmpSockets: [String] = []
  /// QMP monitors on listening sockets the caller passed (`-chardev socket,id=X,fd=N,server=on`
  /// with `-mon chardev=X,mode=control`, as libvirt starts QEMU): the descriptor numbers.
  public var monitorDescriptors: [Int32] = []
  /// `-uuid`.
  public var uuid: String?
  /// `-chardev pty,id=X`: the ids, in order (a console's; QEMU gives each a pseudo-terminal).
  public var ptyChardevs: [String] = []
  public var nographic = false
  public var daemonize = false
  /// `-S`: do not start the CPUs (run state "prelaunch").
  public var startPaused = false
  /// `-no-shutdown`: a guest that shuts down stops instead of ending QEMU (libvirt decides).
  public var noShutdown = false
  /// `-pidfile PATH`: where the emulator process writes its pid.
  public var pidfile: String?
  /// The accelerators asked for, in order (`-machine ...,accel=kvm:tcg`, `-accel kvm`).
  public var accelerators: [String] = []
  /// `-machine none`: no guest, as libvirt's capability probe starts QEMU.
  public var isMachineNone: Bool { machineType == "none" }
  /// What an informational option asks QEMU to print on its standard output before it exits
  /// with status 0, starting nothing: `-version`, `-machine help`, `-cpu help`, `-device help`,
  /// `-device DRIVER,help`.
  public var information: String?
  /// What such an option prints on the standard error instead (after `qemu-system-s390x: `):
  /// `-device nosuch,help` names no device, and QEMU says so and still exits with status 0.
  public var informationError: String?
  /// Where the host's sysfs is mounted besides `/sys` (the daemon's mount, `/run/apvirt/sys`):
  /// a `sysfsdev` under one of them names the same device as under `/sys`.
  public var sysfsMounts: [String] = []

  public init() {}
}

/// Parses QEMU's command line (the options an s390x vfio-ap guest and libvirt use) with QEMU's
/// error texts.
public enum QEMUCommandLine {
  public static let programName = "qemu-system-s390x"

  public struct Failure: Error, CustomStringConvertible {
    /// The text after `qemu-system-s390x: `.
    public var message: String
    public var description: String { "\(QEMUCommandLine.programName): \(message)" }
  }

  static let withArgument: Set<String> = [
    "name", "machine", "M", "cpu", "smp", "m", "device", "qmp", "chardev", "mon", "display", "serial",
    "monitor", "kernel", "initrd", "append", "drive", "netdev", "boot", "accel", "object", "global",
    "pidfile",
    // libvirt's: accepted, with no effect on what apvirt emulates (the guest has no RAM, clock,
    // firmware, audio, sandbox or message format of its own).
    "uuid", "overcommit", "rtc", "audiodev", "msg", "sandbox", "add-fd", "blockdev",
  ]
  static let flags: Set<String> = [
    "nographic", "daemonize", "S", "nodefaults", "no-shutdown", "enable-kvm", "no-reboot", "no-user-config",
  ]

  /// Options that print something and exit (`-version`).
  static let informational: Set<String> = ["version"]

  /// Whether an option's value asks for help (`help`, `?`), as QEMU's `is_help_option`.
  static func isHelp(_ value: String) -> Bool { value == "help" || value == "?" }

  /// Parses a command line for the QEMU `version` emulated (which the informational options
  /// print). As QEMU does, every option is checked to exist and to have its argument before any
  /// is taken; `-version` and `-machine help` print at once, where they are; `-cpu help`, then
  /// `-device ...,help`, once the whole line is read.
  public static func parse(_ args: [String], version: QEMUVersion = .current) throws(Failure)
    -> GuestConfiguration
  {
    var c = GuestConfiguration()
    var chardevs: [String: Chardev] = [:]
    var monitors: [String] = []
    var i = 0
    while i < args.count {
      let raw = args[i]
      guard raw.hasPrefix("-"), raw.count > 1 else {
        i += 1
        continue
      }
      let opt = String(raw.drop { $0 == "-" })
      if flags.contains(opt) || informational.contains(opt) {
        i += 1
        continue
      }
      guard withArgument.contains(opt) else { throw Failure(message: "\(raw): invalid option") }
      guard i + 1 < args.count else { throw Failure(message: "\(raw): requires an argument") }
      i += 2
    }
    var cpuHelp = false
    var deviceHelp: [(driver: String, text: String)?] = []
    i = 0
    while i < args.count {
      let raw = args[i]
      guard raw.hasPrefix("-"), raw.count > 1 else {
        throw Failure(message: "\(raw): drive with bus=0, unit=0 (index=0) exists")
      }
      let opt = String(raw.drop { $0 == "-" })
      if opt == "version" {
        c.information = QEMUInformation.version(version)
        return c
      }
      if flags.contains(opt) {
        switch opt {
        case "nographic": c.nographic = true
        case "daemonize": c.daemonize = true
        case "S": c.startPaused = true
        case "no-shutdown": c.noShutdown = true
        case "enable-kvm": c.accelerators.append("kvm")
        default: break
        }
        i += 1
        continue
      }
      guard withArgument.contains(opt) else { throw Failure(message: "\(raw): invalid option") }
      guard i + 1 < args.count else { throw Failure(message: "\(raw): requires an argument") }
      let value = args[i + 1]
      i += 2
      switch opt {
      case "name":
        // libvirt's form, `guest=NAME,debug-threads=on`, or the name alone.
        let p = options(value, implied: "guest")
        c.name = p.first { $0.0 == "guest" }?.1 ?? value
        if value.isEmpty { c.name = "" }
        if let problem = nameProblem(c.name) {
          throw Failure(message: "-name \(printable(value)): \(problem)")
        }
      case "machine", "M":
        let p = options(value, implied: "type")
        if p.first.map({ $0.0 == "type" && isHelp($0.1) }) == true || p.contains(where: { isHelp($0.0) }) {
          c.information = QEMUInformation.machines(version)
          return c
        }
        let type = p.first { $0.0 == "type" }?.1 ?? "s390-ccw-virtio"
        if let accel = p.first(where: { $0.0 == "accel" })?.1 {
          c.accelerators += accel.split(separator: ":").map(String.init)
        }
        guard type.hasPrefix("s390-ccw-virtio") || type == "none" else {
          throw Failure(
            message: "unsupported machine type: \"\(type)\"\nUse -machine help to list supported machines")
        }
        c.machineType = type
      case "cpu":
        if isHelp(value) { cpuHelp = true }
        c.cpu = value
      case "smp":
        let p = options(value, implied: "cpus")
        guard let n = Int(p.first { $0.0 == "cpus" }?.1 ?? ""), n > 0 else {
          throw Failure(message: "\(raw) \(value): Parameter 'cpus' expects a number")
        }
        c.vcpus = n
      case "m":
        c.memory = value
      case "pidfile":
        c.pidfile = value
      case "accel":
        if let a = options(value, implied: "accel").first(where: { $0.0 == "accel" })?.1 {
          c.accelerators.append(a)
        }
      case "device":
        let spec: [(String, QMPValue)]
        if value.hasPrefix("{") {
          let obj = try jsonOption(value, "-device")
          spec = obj.keys.sorted(by: driverFirst).map {
            ($0, QMPValue(obj[$0]!))
          }
        } else {
          let p = options(value, implied: "driver")
          let driver = p.first { $0.0 == "driver" }?.1
          if let driver, isHelp(driver) {
            deviceHelp.append(nil)
          } else if p.contains(where: { isHelp($0.0) }) {
            guard let driver else {
              throw Failure(message: "-device \(value): Parameter 'driver' is missing")
            }
            deviceHelp.append((driver, value))
          }
          spec = p.map { ($0.0, .string($0.1)) }
        }
        c.devices.append(spec)
        c.deviceTexts.append(value)
      case "qmp":
        c.qmpSockets.append(try socketPath(value, raw))
      case "uuid":
        c.uuid = value
      case "chardev":
        let p = options(value, implied: "backend")
        let backend = p.first { $0.0 == "backend" }?.1 ?? ""
        guard let id = p.first(where: { $0.0 == "id" })?.1 else {
          throw Failure(message: "-chardev \(value): Parameter 'id' is missing")
        }
        if backend == "pty" || backend == "null" {
          chardevs[id] = .inert
          if backend == "pty" { c.ptyChardevs.append(id) }
          break
        }
        guard backend == "socket" else {
          throw Failure(message: "-chardev \(value): only socket, pty and null chardevs are emulated")
        }
        if let path = p.first(where: { $0.0 == "path" })?.1 {
          chardevs[id] = .path(path)
        } else if let fd = p.first(where: { $0.0 == "fd" })?.1 {
          guard let n = Int32(fd), n >= 0 else {
            throw Failure(message: "-chardev \(value): Parameter 'fd' expects a file descriptor number")
          }
          chardevs[id] = .descriptor(n)
        } else {
          throw Failure(message: "-chardev \(value): chardev: socket: no path or fd given")
        }
      case "mon":
        let p = options(value, implied: "chardev")
        guard let dev = p.first(where: { $0.0 == "chardev" })?.1 else {
          throw Failure(message: "-mon \(value): Parameter 'chardev' is missing")
        }
        let mode = p.first { $0.0 == "mode" }?.1 ?? "readline"
        if mode == "control" { monitors.append(dev) }
      case "object":
        // A QMP monitor as an object (`monitor-qmp`, which newer libvirt uses instead of -mon);
        // every other object (secrets, memory backends) changes nothing apvirt emulates.
        var p: [(String, String)]
        if value.hasPrefix("{") {
          p = try jsonOption(value, "-object").compactMap { k, v in (v as? String).map { (k, $0) } }
        } else {
          p = options(value, implied: "qom-type")
        }
        if p.first(where: { $0.0 == "qom-type" })?.1 == "monitor-qmp" {
          guard let dev = p.first(where: { $0.0 == "chardev" })?.1 else {
            throw Failure(message: "-object \(value): Parameter 'chardev' is missing")
          }
          monitors.append(dev)
        }
      default:
        break  // accepted and ignored: they do not concern AP
      }
    }
    if cpuHelp {
      c.information = QEMUInformation.cpus(version)
      return c
    }
    if let first = deviceHelp.first {
      guard let (driver, text) = first else {
        c.information = QEMUInformation.devices()
        return c
      }
      if let properties = QEMUInformation.deviceProperties(driver, version) {
        c.information = properties
      } else {
        c.information = ""
        c.informationError = "-device \(text): Device '\(driver)' not found"
      }
      return c
    }
    for m in monitors {
      switch chardevs[m] {
      case .path(let path): c.qmpSockets.append(path)
      case .descriptor(let fd): c.monitorDescriptors.append(fd)
      case .inert: throw Failure(message: "-mon chardev=\(m): a QMP monitor needs a socket chardev")
      case nil: throw Failure(message: "-mon chardev=\(m): chardev \"\(m)\" not found")
      }
    }
    return c
  }

  /// Why a guest cannot have this name, or nil. apvirt makes a guest's name a directory of the
  /// host's guests mount (`RUNTIME/guests/NAME`, `/run/apvirt/guests/NAME` by default), which
  /// `apvirt exec --guest NAME` enters, so it must be a plain, visible file name: not empty, not
  /// starting with `.` (`.`, `..`, hidden names), without `/`, NUL or control characters, at
  /// most 255 bytes. QEMU itself takes any `-name`; every libvirt domain name passes (libvirt
  /// refuses `/` in them).
  public static func nameProblem(_ name: String) -> String? {
    let why: String
    if name.isEmpty {
      why = "is empty"
    } else if name.contains("/") {
      why = "contains '/'"
    } else if name.hasPrefix(".") {
      why = "starts with '.'"
    } else if name.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f }) {
      why = "contains control characters"
    } else if name.utf8.count > 255 {
      why = "is longer than 255 bytes"
    } else {
      return nil
    }
    return
      "apvirt cannot serve a guest whose name \(why): a guest's name is a directory of the host's guests mount (/run/apvirt/guests/NAME by default) and must be a file name"
  }

  /// Text with its control characters shown as escapes (`\n`, `\u{1B}`), for messages.
  public static func printable(_ text: String) -> String {
    var out = ""
    for u in text.unicodeScalars {
      switch u.value {
      case 0x0a: out += "\\n"
      case 0x09: out += "\\t"
      case 0..<0x20, 0x7f: out += "\\u{" + String(u.value, radix: 16, uppercase: true) + "}"
      default: out.unicodeScalars.append(u)
      }
    }
    return out
  }

  /// The order in which a device's properties are taken: `driver` first, as QEMU's
  /// `device_add` reads it, then by name.
  public static func driverFirst(_ a: String, _ b: String) -> Bool {
    a != b && (a == "driver" || (b != "driver" && a < b))
  }

  /// An option's value in its JSON form (`-device {"driver":...}`, `-object {"qom-type":...}`).
  static func jsonOption(_ value: String, _ option: String) throws(Failure) -> [String: Any] {
    guard let data = value.data(using: .utf8),
      let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else { throw Failure(message: "\(option) \(value): JSON parse error, expecting value") }
    return obj
  }

  /// `-m SIZE` (or `size=SIZE`): MiB without a suffix, else k, M, G or T (case as QEMU takes it).
  public static func memoryBytes(_ text: String) -> Int? {
    var t = options(text, implied: "size").first { $0.0 == "size" }?.1 ?? text
    var unit = 1 << 20
    if let last = t.last, !last.isNumber {
      switch last {
      case "k", "K": unit = 1 << 10
      case "M", "m": unit = 1 << 20
      case "G", "g": unit = 1 << 30
      case "T", "t": unit = 1 << 40
      default: return nil
      }
      t.removeLast()
    }
    guard let n = Int(t), n >= 0, n <= Int.max / unit else { return nil }
    return n * unit
  }

  /// What a `-chardev` connects: a socket path, a passed descriptor, or nothing apvirt serves
  /// (a pty console, a null device).
  enum Chardev {
    case path(String)
    case descriptor(Int32)
    case inert
  }

  /// `unix:PATH,server=on,wait=off` (also `server,nowait`).
  static func socketPath(_ value: String, _ opt: String) throws(Failure) -> String {
    guard value.hasPrefix("unix:") else {
      throw Failure(message: "\(opt) \(value): only unix: sockets are emulated")
    }
    let rest = String(value.dropFirst(5))
    return String(rest.split(separator: ",", maxSplits: 1, omittingEmptySubsequences: false)[0])
  }

  /// QemuOpts: `a=b,c=d` with `,,` for a literal comma; a first item without `=` is the implied
  /// key (`vfio-ap,sysfsdev=...` has driver=vfio-ap).
  public static func options(_ text: String, implied: String?) -> [(String, String)] {
    var items: [String] = []
    var cur = ""
    var chars = Array(text)
    var i = 0
    while i < chars.count {
      if chars[i] == "," {
        if i + 1 < chars.count && chars[i + 1] == "," {
          cur.append(",")
          i += 2
          continue
        }
        items.append(cur)
        cur = ""
      } else {
        cur.append(chars[i])
      }
      i += 1
    }
    items.append(cur)
    chars = []
    var out: [(String, String)] = []
    for (n, item) in items.enumerated() where !item.isEmpty {
      if let eq = item.firstIndex(of: "=") {
        out.append((String(item[..<eq]), String(item[item.index(after: eq)...])))
      } else if n == 0, let implied {
        out.append((implied, item))
      } else {
        out.append((item, "on"))
      }
    }
    return out
  }
}
