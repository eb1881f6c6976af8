import APModel

/// The answer of PQAP(QCI): the configuration's flags, limits and masks.
public struct QCIInfo: Hashable, Sendable {
  public var apsc: Bool
  public var apxa: Bool
  public var qact: Bool
  public var rc8a: Bool
  public var apsb: Bool
  /// Highest APID and domain number.
  public var na: Int
  public var nd: Int
  public var matrix: APMatrix

  public init(
    apsc: Bool = true, apxa: Bool, qact: Bool = true, rc8a: Bool = true, apsb: Bool = false, na: Int,
    nd: Int, matrix: APMatrix
  ) {
    self.apsc = apsc
    self.apxa = apxa
    self.qact = qact
    self.rc8a = rc8a
    self.apsb = apsb
    self.na = na
    self.nd = nd
    self.matrix = matrix
  }

  /// The `/sys/bus/ap/features` words in the kernel's order.
  public var featureNames: [String] {
    var f: [String] = []
    if apsc { f.append("APSC") }
    if apxa { f.append("APXA") }
    if qact { f.append("QACT") }
    if rc8a { f.append("RC8A") }
    if apsb { f.append("APSB") }
    return f
  }
}

/// The answer of TAPQ for a queue that exists.
public struct TAPQInfo: Hashable, Sendable {
  /// The raw device type.
  public var type: AdapterType
  public var mode: AdapterMode
  /// The function bits (`ap_functions`).
  public var functions: UInt32
  /// Queue depth (`QD`), as the kernel stores it (`depth` shows it).
  public var queueDepth: Int
  /// Maximum message length in 4 KiB units; 0 means the 12 KiB default.
  public var ml: Int
  public var adapterConfigured: Bool
  public var checkstopped: Bool
}
