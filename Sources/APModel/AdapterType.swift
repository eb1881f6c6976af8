/// The AP device type a TAPQ reports. The Crypto Express generations CEX4 to CEX8 are types 10
/// to 14; below 10 the kernel creates no device, above 14 it maps to a compatible type.
public struct AdapterType: Hashable, Sendable, Comparable, CustomStringConvertible {
  public var rawValue: Int
  public init(rawValue: Int) { self.rawValue = rawValue }

  public static let cex4 = AdapterType(rawValue: 10)
  public static let cex5 = AdapterType(rawValue: 11)
  public static let cex6 = AdapterType(rawValue: 12)
  public static let cex7 = AdapterType(rawValue: 13)
  public static let cex8 = AdapterType(rawValue: 14)

  /// The newest type this kernel knows; newer hardware is shown as this type (`hwtype`) through
  /// QACT, with the real type in `raw_hwtype`.
  public static let newestKnown = cex8

  /// `CEX8`, `CEX4`; unknown generations as their number.
  public var name: String {
    (10...14).contains(rawValue) ? "CEX\(rawValue - 6)" : "type\(rawValue)"
  }

  /// Parses `CEX8`, `cex8`, `14`.
  public init?(name: String) {
    let l = name.lowercased()
    if l.hasPrefix("cex"), let g = Int(l.dropFirst(3)), (4...20).contains(g) {
      self.init(rawValue: g + 6)
    } else if let n = Int(l), (1...255).contains(n) {
      self.init(rawValue: n)
    } else {
      return nil
    }
  }

  /// The generations a machine definition or `apvirt hw add-adapter` may name: CEX4 ... CEX8.
  public static let known: [AdapterType] = [.cex4, .cex5, .cex6, .cex7, .cex8]

  /// `CEX4, CEX5, CEX6, CEX7, CEX8`, for messages that list what is accepted.
  public static var knownNames: String { known.map(\.name).joined(separator: ", ") }

  /// Parses a known generation only: `CEX7`, `cex7`, or its TAPQ type number `13`.
  public init?(knownName name: String) {
    guard let t = AdapterType(name: name), Self.known.contains(t) else { return nil }
    self = t
  }

  /// Whether the kernel has a driver for it (vfio_ap and zcrypt bind types 10 and up).
  public var isSupported: Bool { rawValue >= 10 }

  /// The type the kernel shows: a newer type maps to the newest known one.
  public var compatible: AdapterType { rawValue > Self.newestKnown.rawValue ? Self.newestKnown : self }

  public var description: String { name }
  public static func < (a: AdapterType, b: AdapterType) -> Bool { a.rawValue < b.rawValue }
}

/// What an adapter is configured as: CCA coprocessor, accelerator or EP11 coprocessor.
public enum AdapterMode: String, Hashable, Sendable, CaseIterable {
  case cca
  case accel
  case ep11

  /// The letter ending zcrypt's `type` string: `CEX8C`, `CEX8A`, `CEX8P`.
  public var typeSuffix: String {
    switch self {
    case .cca: "C"
    case .accel: "A"
    case .ep11: "P"
    }
  }

  /// The uevent `MODE=` value.
  public var ueventName: String { rawValue }

  /// lszcrypt's MODE column.
  public var lszcryptName: String {
    switch self {
    case .cca: "CCA-Coproc"
    case .accel: "Accelerator"
    case .ep11: "EP11-Coproc"
    }
  }

  /// The facility bits TAPQ reports in GR2 (`ap_functions`, ap_bus.h's `AP_FUNC_*`), counted
  /// from the leftmost bit: 0 APSC (S), 1 MEX4K (M) and 2 CRT4K (C), the 4096-bit RSA
  /// modular-exponentiation and CRT functions of an accelerator (CEX4A and later), 3 CCA
  /// coprocessor (D), 4 accelerator (A), 5 EP11 coprocessor (X), 6 APXA (N), set when the
  /// machine has AP extended addressing.
  public func functions(apxa: Bool) -> UInt32 {
    let mode: UInt32 =
      switch self {
      case .cca: Self.funcCOPRO
      case .accel: Self.funcMEX4K | Self.funcCRT4K | Self.funcACCEL
      case .ep11: Self.funcEP11
      }
    return Self.funcAPSC | mode | (apxa ? Self.funcAPXA : 0)
  }

  public static let funcAPSC: UInt32 = 0x8000_0000
  public static let funcMEX4K: UInt32 = 0x4000_0000
  public static let funcCRT4K: UInt32 = 0x2000_0000
  public static let funcCOPRO: UInt32 = 0x1000_0000
  public static let funcACCEL: UInt32 = 0x0800_0000
  public static let funcEP11: UInt32 = 0x0400_0000
  public static let funcAPXA: UInt32 = 0x0200_0000

  public init?(name: String) {
    switch name.lowercased() {
    case "cca", "coprocessor", "c": self = .cca
    case "accel", "accelerator", "a": self = .accel
    case "ep11", "p", "x": self = .ep11
    default: return nil
    }
  }
}
