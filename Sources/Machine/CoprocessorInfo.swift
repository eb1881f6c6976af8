import APModel

/// What a coprocessor's firmware reports about itself and its domains when the kernel asks: a
/// CCA coprocessor's Query Crypto Facility (serial number; the AES, APKA and ASYM master key
/// registers of a domain), an EP11 coprocessor's module and domain queries (API ordinal,
/// firmware version, serial number, operational modes; a domain's wrapping keys). zcrypt shows
/// these in `serialnr`, `mkvps`, `API_ordinalnr`, `FW_version` and `op_modes`.
///
/// A machine definition may set all of it; what it leaves out comes from deterministic defaults
/// derived from the adapter's number (and type), so the embedded default machine shows plausible
/// values without saying anything.

/// A master key verification pattern (MKVP) or wrapping key verification pattern (WKVP): 8 bytes
/// for CCA's AES and APKA master keys, 16 for its ASYM master key, 32 for an EP11 wrapping key.
public typealias VerificationPattern = [UInt8]

/// One CCA master key (AES, APKA or ASYM) as Query Crypto Facility reports it for a domain: the
/// state of its NEW, CURRENT and OLD registers, with the verification pattern of a register that
/// holds a key. An `unreported` register is one the reply leaves out (zcrypt shows `- -`).
public struct CCAMasterKey: Hashable, Sendable {
  /// The NEW register: being loaded (empty, partially or fully loaded).
  public enum New: Hashable, Sendable {
    case unreported
    case empty
    case partial
    /// Fully loaded, waiting to be set: its pattern is reported.
    case full(VerificationPattern)
  }

  /// The CURRENT or OLD register.
  public enum Register: Hashable, Sendable {
    case unreported
    case invalid
    case valid(VerificationPattern)
  }

  public var new: New
  public var current: Register
  public var old: Register

  public init(new: New = .empty, current: Register, old: Register = .invalid) {
    self.new = new
    self.current = current
    self.old = old
  }

  /// Every register unreported: what a reply that could not be had leaves.
  public static let unreported = CCAMasterKey(new: .unreported, current: .unreported, old: .unreported)
}

/// The three CCA master keys of one domain.
public struct CCAMasterKeys: Hashable, Sendable {
  public var aes: CCAMasterKey
  public var apka: CCAMasterKey
  public var asym: CCAMasterKey

  public init(aes: CCAMasterKey, apka: CCAMasterKey, asym: CCAMasterKey) {
    self.aes = aes
    self.apka = apka
    self.asym = asym
  }

  /// The default of adapter `apid`: each master key set (CURRENT valid, NEW empty, OLD invalid),
  /// its pattern derived from the adapter number, the same in every domain.
  public static func defaultFor(apid: APID) -> CCAMasterKeys {
    CCAMasterKeys(
      aes: CCAMasterKey(current: .valid(derivedPattern(apid: apid, kind: 1, count: 8))),
      apka: CCAMasterKey(current: .valid(derivedPattern(apid: apid, kind: 2, count: 8))),
      asym: CCAMasterKey(current: .valid(derivedPattern(apid: apid, kind: 3, count: 16))))
  }

  /// The pattern length of each master key: AES and APKA 8 bytes, ASYM 16.
  public static func patternLength(_ kind: String) -> Int { kind == "asym" ? 16 : 8 }
}

/// The operational modes an EP11 coprocessor or domain reports (bits of its `op_mode`), in the
/// order zcrypt lists them.
public enum EP11OpMode: Int, CaseIterable, Hashable, Sendable {
  case fips2009 = 0
  case bsi2009 = 1
  case fips2011 = 2
  case bsi2011 = 3
  case siggImport = 4
  case sigg = 5
  case bsicc2017 = 6
  case fips2021 = 7
  case fips2024 = 8

  /// The name zcrypt's `op_modes` shows (`ep11_op_modes`).
  public var name: String {
    switch self {
    case .fips2009: "FIPS2009"
    case .bsi2009: "BSI2009"
    case .fips2011: "FIPS2011"
    case .bsi2011: "BSI2011"
    case .siggImport: "SIGG-IMPORT"
    case .sigg: "SIGG"
    case .bsicc2017: "BSICC2017"
    case .fips2021: "FIPS2021"
    case .fips2024: "FIPS2024"
    }
  }

  public init?(name: String) {
    guard let m = Self.allCases.first(where: { $0.name.lowercased() == name.lowercased() }) else {
      return nil
    }
    self = m
  }

  /// `FIPS2009, BSI2009, ...`, for messages that list what is accepted.
  public static var knownNames: String { allCases.map(\.name).joined(separator: ", ") }

  /// The `op_mode` bits of a set of modes.
  public static func bits(_ modes: Set<EP11OpMode>) -> UInt64 {
    modes.reduce(0) { $0 | (1 << UInt64($1.rawValue)) }
  }
}

/// What an EP11 coprocessor's module query reports about the card.
public struct EP11ModuleInfo: Hashable, Sendable {
  /// The API ordinal number; 0 reads as an empty `API_ordinalnr`.
  public var apiOrdinal: UInt32
  /// Firmware major and minor version; 0.0 reads as an empty `FW_version`.
  public var firmwareMajor: UInt8
  public var firmwareMinor: UInt8
  public var opModes: Set<EP11OpMode>

  public init(apiOrdinal: UInt32, firmwareMajor: UInt8, firmwareMinor: UInt8, opModes: Set<EP11OpMode> = []) {
    self.apiOrdinal = apiOrdinal
    self.firmwareMajor = firmwareMajor
    self.firmwareMinor = firmwareMinor
    self.opModes = opModes
  }

  /// The default for a type: the API ordinal and firmware major version of the generation
  /// (CEX8P: 8 and 8.0), no operational mode (a card not in a compliance mode).
  public static func defaultFor(type: AdapterType) -> EP11ModuleInfo {
    let generation = UInt8(clamping: max(type.rawValue - 6, 1))
    return EP11ModuleInfo(apiOrdinal: UInt32(generation), firmwareMajor: generation, firmwareMinor: 0)
  }
}

/// What an EP11 coprocessor's domain query reports about one domain: its CURRENT and NEW
/// wrapping keys and its operational modes.
public struct EP11DomainInfo: Hashable, Sendable {
  public enum Current: Hashable, Sendable {
    case invalid
    case valid(VerificationPattern)
  }

  public enum New: Hashable, Sendable {
    case empty
    case uncommitted(VerificationPattern)
    case committed(VerificationPattern)
  }

  public var current: Current
  public var new: New
  public var opModes: Set<EP11OpMode>

  public init(current: Current, new: New = .empty, opModes: Set<EP11OpMode> = []) {
    self.current = current
    self.new = new
    self.opModes = opModes
  }

  /// The default of adapter `apid`: a valid CURRENT wrapping key whose pattern is derived from
  /// the adapter number, the NEW register empty, the card's operational modes.
  public static func defaultFor(apid: APID, opModes: Set<EP11OpMode>) -> EP11DomainInfo {
    EP11DomainInfo(current: .valid(derivedPattern(apid: apid, kind: 4, count: 32)), opModes: opModes)
  }

  public static let patternLength = 32
}

/// A per-domain setting: one value for every domain, and the domains that differ.
public struct PerDomain<Value: Hashable & Sendable>: Hashable, Sendable {
  public var all: Value
  public var overrides: [APQI: Value]

  public init(_ all: Value, overrides: [APQI: Value] = [:]) {
    self.all = all
    self.overrides = overrides
  }

  public subscript(domain: APQI) -> Value { overrides[domain] ?? all }
}

/// `count` bytes that look random, always the same for one adapter and kind (splitmix64 of both).
func derivedPattern(apid: APID, kind: UInt64, count: Int) -> VerificationPattern {
  var state = (kind << 8 | UInt64(apid & 0xff)) &* 0x9E37_79B9_7F4A_7C15
  var bytes: [UInt8] = []
  while bytes.count < count {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    z ^= z >> 31
    for i in (0..<8).reversed() where bytes.count < count {
      bytes.append(UInt8(truncatingIfNeeded: z >> (8 * UInt64(i))))
    }
  }
  return bytes
}
