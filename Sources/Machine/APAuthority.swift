import APModel

/// On whose behalf an AP instruction runs, and so which APQNs it may reach.
///
/// The host (LPAR) reaches what the LPAR's configuration holds. A guest's instructions are
/// interpreted by the hardware against its APCB in the CRYCB: an APQN outside the APCB answers
/// rc 01 (Q_NOT_AVAIL), exactly as if the queue did not exist.
public enum APAuthority: Hashable, Sendable {
  case lpar
  /// A guest, identified by the KVM VM id, with the APCB its CRYCB holds now.
  case guest(vm: Int, apcb: APMatrix)

  /// A stable identity for "who last used this queue".
  public var owner: APQueueOwner {
    switch self {
    case .lpar: .lpar
    case .guest(let vm, _): .guest(vm)
    }
  }
}

/// Who put state into a queue.
public enum APQueueOwner: Hashable, Sendable, CustomStringConvertible {
  case lpar
  case guest(Int)
  public var description: String {
    switch self {
    case .lpar: "host"
    case .guest(let id): "guest \(id)"
    }
  }
}
