import Foundation

/// The control socket's protocol: typed requests and replies that the daemon and its clients
/// (`apvirt hw`, `status`, `qemu`, ...) share, so that both sides agree on every argument's type.
///
/// On the wire it has QMP's framing and shapes: `{"execute": NAME, "arguments": {...}}` in,
/// `{"return": REPLY}` or `{"error": {"class": CLASS, "desc": TEXT}}` out. Arguments are decoded
/// strictly: a missing one, an unknown one or one of the wrong JSON type is refused with QMP's
/// texts, and nothing is done (`{"apid": true}` is not adapter 1, `"configured": 0` is not false,
/// `"psmid": -1` is not representable).
protocol ControlCommand: Codable, Sendable {
  associatedtype Reply: Codable & Sendable
  /// The command's name on the wire.
  static var name: String { get }
  /// Every argument the command takes, for refusing the ones it does not.
  static var fields: [String] { get }
}

/// The reply of a command that returns nothing: `{}`.
struct NoReply: Codable, Sendable, Equatable {}

/// A command's failure, in QMP's shape.
struct ControlFailure: Error, Codable, Sendable, Equatable, CustomStringConvertible {
  var errorClass = "GenericError"
  var desc: String

  init(_ desc: String, errorClass: String = "GenericError") {
    self.desc = desc
    self.errorClass = errorClass
  }

  enum CodingKeys: String, CodingKey {
    case errorClass = "class"
    case desc
  }

  var description: String { desc }
}

enum ControlCommands {
  /// `status`: the host at a glance.
  struct Status: ControlCommand {
    static let name = "status"
    static let fields: [String] = []
    typealias Reply = HostStatus
  }

  /// `dmesg`: the host kernel's log as dmesg prints it.
  struct Dmesg: ControlCommand {
    static let name = "dmesg"
    static let fields: [String] = []
    typealias Reply = String
  }

  /// `quit`: the daemon stops (unmounts, quits its guests).
  struct Quit: ControlCommand {
    static let name = "quit"
    static let fields: [String] = []
    typealias Reply = NoReply
  }

  /// SCLP configure (on) or deconfigure (off) of an adapter.
  struct AdapterConfig: ControlCommand {
    static let name = "hw-adapter-config"
    static let fields = ["apid", "configured"]
    typealias Reply = HardwareChange
    var apid: Int
    var configured: Bool
  }

  struct AdapterCheckstop: ControlCommand {
    static let name = "hw-adapter-checkstop"
    static let fields = ["apid", "checkstopped"]
    typealias Reply = HardwareChange
    var apid: Int
    var checkstopped: Bool
  }

  struct AdapterAdd: ControlCommand {
    static let name = "hw-adapter-add"
    static let fields = ["apid", "type", "mode"]
    typealias Reply = HardwareChange
    var apid: Int
    /// CEX4 ... CEX8; CEX8 when absent.
    var type: String?
    /// cca, accel or ep11; cca when absent.
    var mode: String?
  }

  struct AdapterRemove: ControlCommand {
    static let name = "hw-adapter-remove"
    static let fields = ["apid"]
    typealias Reply = HardwareChange
    var apid: Int
  }

  /// Adds a domain to the LPAR as a usage and/or control domain (both when absent).
  struct DomainAdd: ControlCommand {
    static let name = "hw-domain-add"
    static let fields = ["domain", "usage", "control"]
    typealias Reply = HardwareChange
    var domain: Int
    var usage: Bool?
    var control: Bool?
  }

  struct DomainRemove: ControlCommand {
    static let name = "hw-domain-remove"
    static let fields = ["domain", "usage", "control"]
    typealias Reply = HardwareChange
    var domain: Int
    var usage: Bool?
    var control: Bool?
  }

  /// Sets an adapter's firmware timing: how long a reset (ZAPQ, RAPQ) and the enabling of
  /// interruptions (AQIC) of its queues take, in nanoseconds; an absent one stays as it is.
  struct AdapterLatency: ControlCommand {
    static let name = "hw-adapter-latency"
    static let fields = ["apid", "reset-ns", "irq-ns"]
    typealias Reply = HardwareChange
    var apid: Int
    var resetNs: UInt64?
    var irqNs: UInt64?
    enum CodingKeys: String, CodingKey {
      case apid
      case resetNs = "reset-ns"
      case irqNs = "irq-ns"
    }
  }

  /// Injects a response code for the next `count` resets (1 when absent) of a queue (`05.0004`)
  /// or of every queue of an adapter (`05`, `0x05`): `busy`, `reset-in-progress`,
  /// `checkstop-during-reset`; `clear` takes it away.
  struct Fault: ControlCommand {
    static let name = "hw-fault"
    static let fields = ["target", "fault", "count"]
    typealias Reply = HardwareChange
    var target: String
    var fault: String
    var count: Int?
  }

  /// What a hardware command (`hw-*`) changed: the line `apvirt hw` prints, and the host's AP
  /// devices (`card20`, `20.0004`) that appeared, left, or stayed with a new state (config,
  /// chkstop, online), cards first, each ascending.
  struct HardwareChange: Codable, Sendable, Equatable {
    var summary: String
    /// False when the LPAR already was as asked (`configure 5 on` of a configured adapter).
    var changed: Bool
    var added: [String]
    var removed: [String]
    var updated: [String]
  }

  /// What `qemu-system-s390x ARGS` does: a guest with QEMU's command line. The guest lives as
  /// long as the connection that started it, unless `daemonize`.
  struct GuestStart: ControlCommand {
    static let name = "guest-start"
    static let fields = ["argv", "version", "daemonize"]
    var argv: [String]
    /// The QEMU version emulated (`10.2.0`); the current one when absent.
    var version: String?
    var daemonize: Bool?

    struct Reply: Codable, Sendable, Equatable {
      var name: String
      var vm: Int
      /// What QEMU prints as warnings.
      var warnings: [String]
    }
  }

  /// Answered when the guests started on this connection have quit.
  struct GuestWait: ControlCommand {
    static let name = "guest-wait"
    static let fields: [String] = []

    struct Reply: Codable, Sendable, Equatable {
      /// Why the guests quit: a QMP SHUTDOWN reason (`host-qmp-quit`), or `host-stopped` when
      /// the daemon stopped under them.
      var reason: String
    }
  }

  struct GuestList: ControlCommand {
    static let name = "guest-list"
    static let fields: [String] = []
    typealias Reply = [String]
  }

  /// One AP instruction from a guest's CPU, against its APCB.
  struct GuestAP: ControlCommand {
    static let name = "guest-ap"
    static let fields = ["name", "instruction", "apqn", "payload", "psmid"]
    typealias Reply = [String: String]
    var name: String
    /// tapq (when absent), nqap, dqap or zapq.
    var instruction: String?
    var apqn: String
    /// The request, in hex, for nqap.
    var payload: String?
    /// The program-supplied message id, for nqap (1 when absent).
    var psmid: UInt64?
  }

  /// The guest's vfio-ap device, or null.
  struct GuestDevice: ControlCommand {
    static let name = "guest-device"
    static let fields = ["name"]
    var name: String
    typealias Reply = Device?

    struct Device: Codable, Sendable, Equatable {
      var id: String?
      var sysfsdev: String
      var uuid: String
      var path: String
    }
  }

  /// `device_add` of the guest's monitor, with flat string properties.
  struct GuestDeviceAdd: ControlCommand {
    static let name = "guest-device-add"
    static let fields = ["name", "props"]
    var name: String
    var props: [String: String]

    struct Reply: Codable, Sendable, Equatable {
      var path: String
    }
  }

  struct GuestDeviceDel: ControlCommand {
    static let name = "guest-device-del"
    static let fields = ["name", "id"]
    typealias Reply = NoReply
    var name: String
    var id: String
  }
}

/// `status`'s reply.
struct HostStatus: Codable, Sendable, Equatable {
  struct Adapter: Codable, Sendable, Equatable {
    var apid: Int
    var type: String
    /// `cca`, `ep11` or `accel`, as lszcrypt names the mode.
    var mode: String
    var configured: Bool
    var checkstopped: Bool
    /// The firmware's reset and interrupt-enable latencies (ms; 0: instant).
    var resetLatencyMs: Double
    var irqLatencyMs: Double

    enum CodingKeys: String, CodingKey {
      case apid, type, mode, configured, checkstopped
      case resetLatencyMs = "reset_latency_ms"
      case irqLatencyMs = "irq_latency_ms"
    }
  }

  /// A fault injected with `apvirt hw fault`, and how many resets it still answers.
  struct Fault: Codable, Sendable, Equatable {
    var target: String
    var fault: String
    var remaining: Int
  }

  struct Mdev: Codable, Sendable, Equatable {
    var uuid: String
    var matrix: [String]
    var controlDomains: [String]
    var guestMatrix: [String]
    var open: Bool
    var vm: String?

    enum CodingKeys: String, CodingKey {
      case uuid, matrix, open, vm
      case controlDomains = "control_domains"
      case guestMatrix = "guest_matrix"
    }
  }

  struct VM: Codable, Sendable, Equatable {
    var id: Int
    var name: String
    var apcb: [String]
    var apcbUpdates: Int
    /// The emulator process (`apvirt qemu`), when known.
    var pid: Int32?
    /// QEMU's run state (`running`, `paused`, ...).
    var status: String?
    /// The guest's QMP sockets.
    var qmp: [String]
    /// Its `-cpu` as given (`host,ap=on,apft=on`) and the mdev of its vfio-ap device: what
    /// `apvirt capture` names a guest by, which sysfs does not show. Absent from older daemons.
    var cpu: String?
    var mdev: String?

    enum CodingKeys: String, CodingKey {
      case id, name, apcb, pid, status, qmp, cpu, mdev
      case apcbUpdates = "apcb_updates"
    }
  }

  var machine: String
  /// The upstream kernel the host behaves as (`6.19`).
  var kernel: String
  var crycbFormat: Int
  var adapters: [Adapter]
  var usageDomains: Int
  var controlDomains: Int
  var queues: Int
  var bound: Int
  /// Queues per driver bound (`cex4queue`, `vfio_ap`), and `none` for the unbound.
  var drivers: [String: Int]
  var scans: Int
  var mdevs: [Mdev]
  var vms: [VM]
  var apmask: String
  var aqmask: String
  /// What ran at boot besides the kernel, and how it went.
  var boot: [HostDaemon.BootStep]
  var faults: [Fault]
  /// The state directory, absolute: its `etc/mdevctl.d` holds the mdevs' definitions (`apvirt
  /// capture` reads their start modes there). Absent from older daemons.
  var state: String?

  enum CodingKeys: String, CodingKey {
    case machine, kernel, adapters, queues, bound, drivers, scans, mdevs, vms, apmask, aqmask, boot, faults,
      state
    case crycbFormat = "crycb_format"
    case usageDomains = "usage_domains"
    case controlDomains = "control_domains"
  }
}

/// The wire form of requests and replies.
enum ControlWire {
  struct Request<C: ControlCommand>: Codable {
    var execute: String
    var arguments: C
  }

  /// What every request has: its name, and the names of its arguments.
  struct Head: Decodable {
    var execute: String
    var argumentNames: [String]?

    enum CodingKeys: String, CodingKey { case execute, arguments }

    init(from decoder: any Decoder) throws {
      let c = try decoder.container(keyedBy: CodingKeys.self)
      execute = try c.decode(String.self, forKey: .execute)
      if c.contains(.arguments) {
        argumentNames = try c.nestedContainer(keyedBy: AnyKey.self, forKey: .arguments).allKeys.map(
          \.stringValue)
      }
    }
  }

  struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
  }

  enum Reply<R: Codable>: Codable {
    case success(R)
    case failure(ControlFailure)

    enum CodingKeys: String, CodingKey {
      case success = "return"
      case failure = "error"
    }

    init(from decoder: any Decoder) throws {
      let c = try decoder.container(keyedBy: CodingKeys.self)
      if c.contains(.failure) {
        self = .failure(try c.decode(ControlFailure.self, forKey: .failure))
      } else {
        self = .success(try c.decode(R.self, forKey: .success))
      }
    }

    func encode(to encoder: any Encoder) throws {
      var c = encoder.container(keyedBy: CodingKeys.self)
      switch self {
      case .success(let r): try c.encode(r, forKey: .success)
      case .failure(let f): try c.encode(f, forKey: .failure)
      }
    }
  }

  static func encoder() -> JSONEncoder {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    return e
  }

  static func encode<C: ControlCommand>(_ command: C) -> Data {
    // Encoding plain structs of strings, numbers and arrays does not fail.
    (try? encoder().encode(Request(execute: C.name, arguments: command))) ?? Data()
  }

  /// Decodes the arguments of a request for `C`, refusing unknown ones and wrong types with
  /// QMP's texts.
  static func decode<C: ControlCommand>(_: C.Type, _ data: Data, head: Head, numbers: [String: String] = [:])
    throws(ControlFailure) -> C
  {
    for name in head.argumentNames ?? [] where !C.fields.contains(name) {
      throw ControlFailure("Parameter '\(name)' is unexpected")
    }
    do {
      if head.argumentNames == nil {
        // No arguments at all: decode from an empty object, so that required ones are missing.
        return try JSONDecoder().decode(C.self, from: Data("{}".utf8))
      }
      return try JSONDecoder().decode(Request<C>.self, from: data).arguments
    } catch let e as DecodingError {
      if case .dataCorrupted(let ctx) = e, ctx.codingPath.isEmpty,
        let name = head.argumentNames?.first(where: { numbers[$0] != nil })
      {
        // The decoder does not say which number it could not take; the request does.
        throw ControlFailure("Parameter '\(name)' is out of range or not an integer: \(numbers[name]!)")
      }
      throw failure(e)
    } catch {
      throw ControlFailure("\(error)")
    }
  }

  /// QMP's texts for what a decoder found wrong.
  static func failure(_ e: DecodingError) -> ControlFailure {
    func name(_ path: [any CodingKey]) -> String {
      path.filter { $0.stringValue != "arguments" }.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
        .joined(separator: ".")
    }
    switch e {
    case .typeMismatch(let type, let ctx):
      return ControlFailure(
        "Invalid parameter type for '\(name(ctx.codingPath))', expected: \(typeName(type))")
    case .valueNotFound(let type, let ctx):
      return ControlFailure(
        "Invalid parameter type for '\(name(ctx.codingPath))', expected: \(typeName(type))")
    case .keyNotFound(let key, let ctx):
      return ControlFailure("Parameter '\(name(ctx.codingPath + [key]))' is missing")
    case .dataCorrupted(let ctx):
      let where_ = ctx.codingPath.isEmpty ? "" : " for '\(name(ctx.codingPath))'"
      return ControlFailure("Invalid parameter value\(where_): a number out of range or not an integer")
    @unknown default:
      return ControlFailure("Invalid arguments")
    }
  }

  static func typeName(_ type: Any.Type) -> String {
    switch type {
    case is Bool.Type: "boolean"
    case is String.Type: "string"
    case is Int.Type, is UInt64.Type, is Int64.Type: "integer"
    default: String(describing: type).hasPrefix("Array") ? "array" : "object"
    }
  }
}
