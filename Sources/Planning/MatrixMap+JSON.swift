import APModel
import Foundation

/// `apvirt map --json`: the grid as data, for scripts.
public struct MatrixMapDocument: Codable, Hashable, Sendable {
  public var root: String
  public var apmask: String
  public var aqmask: String
  public var host: Host
  /// The rows and columns of the grid (`05`, `0004`).
  public var adapters: [String]
  public var domains: [String]
  public var mdevs: [Mdev]
  /// Every APQN of the grid that exists or that an mdev holds.
  public var apqns: [Cell]
  public var controlDomains: [ControlDomain]

  public struct Host: Codable, Hashable, Sendable {
    public var adapters: [String]
    public var usageDomains: [String]
    public var controlDomains: [String]
  }

  public struct Mdev: Codable, Hashable, Sendable {
    public var letter: String
    public var uuid: String
    public var adapters: [String]
    public var domains: [String]
    public var controlDomains: [String]
    public var guestMatrix: [String]?
    public var inUse: Bool
  }

  public struct Cell: Codable, Hashable, Sendable {
    public var apqn: String
    /// `host`, `free`, `mdev`, `in-use`, `unbound`, `absent`, `deconfigured`, `checkstopped`.
    public var state: String
    public var owner: String
    public var driver: String?
    public var mdev: String?
    public var inGuestMatrix: Bool
    public var reservedByMasks: Bool
    public var inHostConfiguration: Bool
    public var deconfigured: Bool
    public var checkstopped: Bool
    public var details: String
  }

  public struct ControlDomain: Codable, Hashable, Sendable {
    public var domain: String
    public var inHost: Bool
    public var mdevs: [String]
  }
}

extension MatrixMap {
  public var document: MatrixMapDocument {
    let s = snapshot
    let host = s.hostConfiguration
    func hex(_ m: APMask, _ f: (Int) -> String) -> [String] { m.map(f) }
    var cellsOut: [MatrixMapDocument.Cell] = []
    for a in adapters {
      for d in domains {
        let c = cells[APQN(a, d)]!
        if case .none = c.owner { continue }
        var owner = "none"
        var mdev: String?
        switch c.owner {
        case .host: owner = "host"
        case .free: owner = "free"
        case .mdev(let u, _):
          owner = "mdev"
          mdev = u
        case .unbound: owner = "unbound"
        case .none: break
        }
        cellsOut.append(
          .init(
            apqn: c.apqn.description, state: c.kind, owner: owner, driver: c.queue?.driver, mdev: mdev,
            inGuestMatrix: c.inGuestMatrix, reservedByMasks: c.reservedByMasks,
            inHostConfiguration: c.inHostConfiguration, deconfigured: c.deconfigured,
            checkstopped: c.checkstopped, details: c.summary))
      }
    }
    return MatrixMapDocument(
      root: s.root, apmask: s.apmask.hexString, aqmask: s.aqmask.hexString,
      host: .init(
        adapters: hex(host.apm, hex2), usageDomains: hex(host.aqm, hex4), controlDomains: hex(host.adm, hex4)),
      adapters: adapters.map(hex2), domains: domains.map(hex4),
      mdevs: s.mdevs.map { m in
        .init(
          letter: String(letters[m.uuid]!), uuid: m.uuid, adapters: hex(m.matrix.apm, hex2),
          domains: hex(m.matrix.aqm, hex4), controlDomains: hex(m.matrix.adm, hex4),
          guestMatrix: m.guestMatrix.map { $0.apqns.map(\.description) }, inUse: m.inUse)
      },
      apqns: cellsOut,
      controlDomains: domains.compactMap { d in
        let holders = s.mdevs.filter { $0.matrix.adm.contains(d) }.map(\.uuid)
        let inHost = host.adm.contains(d)
        return inHost || !holders.isEmpty ? .init(domain: hex4(d), inHost: inHost, mdevs: holders) : nil
      })
  }

  /// Pretty-printed JSON with sorted keys.
  public func json() -> String {
    let e = JSONEncoder()
    e.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try! e.encode(document), as: UTF8.self) + "\n"
  }
}
