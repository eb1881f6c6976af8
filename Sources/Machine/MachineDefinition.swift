import APModel

/// What an IBM Z machine offers one LPAR for AP: the architecture limits, the facilities, the
/// CRYCB format KVM will use, the adapters in the LPAR's configuration and its usage and control
/// domains. Read from YAML (``MachineDefinitionLoader``) or taken from ``embeddedDefault``.
public struct MachineDefinition: Hashable, Sendable {
  /// One adapter in the LPAR's configuration.
  public struct Adapter: Hashable, Sendable {
    public var apid: APID
    public var type: AdapterType
    public var mode: AdapterMode
    /// Queue depth reported by TAPQ (the card's `depth` attribute shows it).
    public var queueDepth: Int
    /// Whether the adapter starts configured (SCLP); a deconfigured one answers TAPQ with rc 03.
    public var configured: Bool
    /// The serial number a coprocessor reports (`serialnr`): up to 8 characters for CCA, up to
    /// 16 for EP11 (blank-padded to 16 as the module query reports it). Default `93AADFnn`.
    public var serial: String
    /// CCA: the master keys each domain reports (`mkvps` of its queues).
    public var masterKeys: PerDomain<CCAMasterKeys>
    /// EP11: what the module query reports (`API_ordinalnr`, `FW_version`, card `op_modes`).
    public var ep11Module: EP11ModuleInfo
    /// EP11: what each domain's query reports (`mkvps`, queue `op_modes`).
    public var ep11Domains: PerDomain<EP11DomainInfo>
    /// How long a reset (ZAPQ, RAPQ) of one of its queues takes, in nanoseconds: meanwhile TAPQ
    /// answers rc 02. 0, the default, completes at once.
    public var resetLatency: UInt64 = 0
    /// How long enabling interruptions (AQIC) takes, in nanoseconds: meanwhile TAPQ shows them
    /// still disabled. 0, the default, completes at once.
    public var irqLatency: UInt64 = 0

    /// What is not given is derived from `apid` and `type`: ``CCAMasterKeys/defaultFor(apid:)``,
    /// ``EP11ModuleInfo/defaultFor(type:)``, ``EP11DomainInfo/defaultFor(apid:opModes:)``.
    public init(
      apid: APID, type: AdapterType = .cex8, mode: AdapterMode = .cca, queueDepth: Int = 8,
      configured: Bool = true, serial: String? = nil, masterKeys: PerDomain<CCAMasterKeys>? = nil,
      ep11Module: EP11ModuleInfo? = nil, ep11Domains: PerDomain<EP11DomainInfo>? = nil
    ) {
      self.apid = apid
      self.type = type
      self.mode = mode
      self.queueDepth = queueDepth
      self.configured = configured
      self.serial = serial ?? Self.defaultSerial(apid: apid)
      self.masterKeys = masterKeys ?? PerDomain(.defaultFor(apid: apid))
      let module = ep11Module ?? .defaultFor(type: type)
      self.ep11Module = module
      self.ep11Domains = ep11Domains ?? PerDomain(.defaultFor(apid: apid, opModes: module.opModes))
    }

    /// `93AADF05` for adapter 0x05.
    public static func defaultSerial(apid: APID) -> String { "93AADF\(padHex(apid, 2, uppercase: true))" }
  }

  public var name: String
  /// The highest adapter number (QCI `Na`).
  public var na: Int
  /// The highest domain number (QCI `Nd`).
  public var nd: Int
  /// AP extended addressing: without it the kernel addresses adapters 0-63 and domains 0-15.
  public var apxa: Bool
  public var facilities: APFacilities
  /// The CRYCB format KVM uses for guests: 0 (no MSAX3), 1 (MSAX3 without APXA), 2 (both).
  public var crycbFormat: Int
  public var adapters: [Adapter]
  public var usageDomains: APMask
  public var controlDomains: APMask
  /// The upstream kernel the host runs (`kernel: 6.12`), or nil for apvirt's default; the host
  /// kernel checks it against the versions it models.
  public var kernel: String?

  public init(
    name: String, na: Int = 255, nd: Int = 255, apxa: Bool = true,
    facilities: APFacilities = .all, crycbFormat: Int = 2, adapters: [Adapter],
    usageDomains: APMask, controlDomains: APMask
  ) {
    self.name = name
    self.na = na
    self.nd = nd
    self.apxa = apxa
    self.facilities = facilities
    self.crycbFormat = crycbFormat
    self.adapters = adapters
    self.usageDomains = usageDomains
    self.controlDomains = controlDomains
  }

  /// The embedded default: Na = Nd = 255, APXA, QCI, APFT and AQIC, CRYCB format 2, twelve CEX8
  /// adapters 0x00-0x0b (0x00-0x05 CCA, 0x06-0x09 EP11, 0x0a-0x0b accelerator), every domain a
  /// usage and a control domain. `Examples/default.yaml` is the same machine as a file.
  /// Built here rather than parsed from ``embeddedDefaultYAML`` (what `apvirt machine` prints),
  /// so that a daemon on the default machine never runs the YAML parser: the code it would run
  /// once stays resident for the daemon's life (about 1 MB). A test keeps the two equal.
  public static var embeddedDefault: MachineDefinition {
    func adapters(_ apids: ClosedRange<Int>, _ mode: AdapterMode) -> [Adapter] {
      apids.map { Adapter(apid: APID($0), type: .cex8, mode: mode) }
    }
    return MachineDefinition(
      name: "default", na: 255, nd: 255, apxa: true, facilities: .all, crycbFormat: 2,
      adapters: adapters(0x00...0x05, .cca) + adapters(0x06...0x09, .ep11) + adapters(0x0a...0x0b, .accel),
      usageDomains: .all(), controlDomains: .all())
  }

  /// The full architecture: 256 adapters x 256 domains, used by the benchmarks.
  public static func fullArchitecture(type: AdapterType = .cex8) -> MachineDefinition {
    MachineDefinition(
      name: "full-architecture",
      adapters: (0...255).map { Adapter(apid: $0, type: type, mode: .cca) },
      usageDomains: .all(), controlDomains: .all())
  }

  /// The APM of the LPAR's configuration.
  public var adapterMask: APMask { APMask(adapters.map(\.apid)) }
}

/// The AP facilities the machine offers (STFLE bits).
public struct APFacilities: Hashable, Sendable {
  /// 12: Query AP Configuration Information.
  public var qci: Bool
  /// 15: AP Facilities Test (TAPQ with T bit); without it CEX4+ adapters are not detected.
  public var apft: Bool
  /// 65: AP queue interruption control.
  public var aqic: Bool

  public init(qci: Bool, apft: Bool, aqic: Bool) {
    self.qci = qci
    self.apft = apft
    self.aqic = aqic
  }

  public static let all = APFacilities(qci: true, apft: true, aqic: true)
}

/// The embedded default machine, as YAML.
public let embeddedDefaultYAML = """
  # apvirt's embedded default machine: what `apvirt` boots without --machine.
  name: default
  na: 255
  nd: 255
  apxa: true
  facilities: [qci, apft, aqic]
  crycb-format: 2
  usage-domains: 0-255
  control-domains: 0-255
  adapters:
    - { apids: 0x00-0x05, type: CEX8, mode: cca }
    - { apids: 0x06-0x09, type: CEX8, mode: ep11 }
    - { apids: 0x0a-0x0b, type: CEX8, mode: accel }

  """
