import APModel

/// Who has one APQN, and in what state its queue is.
public struct APQNOwnership: Hashable, Sendable {
  public enum Owner: Hashable, Sendable {
    /// A host (zcrypt) driver is bound; the masks (or a `driver_override`) give it to the host.
    case host(driver: String)
    /// Bound to vfio_ap and no mdev holds it: free to assign.
    case free
    /// An mdev's assigned matrix holds it; `inUse` when its guest uses it now.
    case mdev(uuid: String, inUse: Bool)
    /// The queue exists but no driver is bound.
    case unbound
    /// No queue device and no mdev: not in the host's configuration.
    case none
  }

  public var apqn: APQN
  public var owner: Owner
  public var queue: SysfsSnapshot.Queue?
  /// Whether apmask bit apid and aqmask bit apqi are both set.
  public var reservedByMasks: Bool
  public var inHostConfiguration: Bool
  public var deconfigured: Bool
  public var checkstopped: Bool
  /// In the holding mdev's `guest_matrix`.
  public var inGuestMatrix: Bool

  public init(_ apqn: APQN, in s: SysfsSnapshot) {
    self.apqn = apqn
    queue = s.queues[apqn]
    reservedByMasks = s.isReservedByMasks(apqn)
    inHostConfiguration = s.hostConfiguration.contains(apqn)
    // A card's state says nothing of a domain that is no usage domain of the host's.
    let exists = queue != nil || inHostConfiguration
    deconfigured = exists && s.isDeconfigured(apqn)
    checkstopped = exists && s.isCheckstopped(apqn)
    if let m = s.holder(of: apqn) {
      let guest = m.guestMatrix ?? MatrixRules.filter(m.matrix, in: s).guest
      inGuestMatrix = guest.contains(apqn)
      owner = .mdev(uuid: m.uuid, inUse: queue?.inUse == true)
    } else {
      inGuestMatrix = false
      if let q = queue {
        switch q.driver {
        case nil: owner = .unbound
        case SysfsSnapshot.vfioAPDriver: owner = .free
        case let d?: owner = .host(driver: d)
        }
      } else {
        owner = .none
      }
    }
  }

  /// The state's name in `--json` and the HTML page's classes.
  public var kind: String {
    if checkstopped { return "checkstopped" }
    if deconfigured { return "deconfigured" }
    switch owner {
    case .host: return "host"
    case .free: return "free"
    case .mdev(_, let inUse): return inUse ? "in-use" : "mdev"
    case .unbound: return "unbound"
    case .none: return "absent"
    }
  }

  /// One line: `held by mdev 62177883-..., used by its guest; bound to vfio_ap`.
  public var summary: String {
    var parts: [String] = []
    switch owner {
    case .host(let d): parts.append("host: bound to \(d)")
    case .free: parts.append("free: bound to vfio_ap, no mdev holds it")
    case .mdev(let u, let inUse):
      parts.append(
        "held by mdev \(u)" + (inUse ? ", used by its guest" : inGuestMatrix ? ", in its guest_matrix" : ""))
      if let q = queue {
        parts.append(q.driver.map { "bound to \($0)" } ?? "unbound")
      } else {
        parts.append("no queue device (not in the host's configuration)")
      }
    case .unbound: parts.append("unbound: no driver has the queue")
    case .none: parts.append("not in the host's configuration")
    }
    if checkstopped { parts.append("checkstopped") }
    if deconfigured { parts.append("deconfigured") }
    return parts.joined(separator: "; ")
  }
}
