import HostKernel
import Synchronization

/// What follows the kernel outside it, brought up to date after anything that may have logged,
/// raised uevents or made or removed an IOMMU group (a store, a timer tick, a control request):
/// the log file, `/dev/vfio`'s group nodes and the uevent listeners.
///
/// Nearly every store changes none of the three (an assignment that changes nothing, a read-only
/// attribute refused), so one look under the kernel's lock at three counters decides whether
/// there is anything to follow: a store looks in the hold of the lock it stored in
/// (``isDue(_:)``), and builds no set of group ids.
final class KernelFollowers: Sendable {
  let log: KernelLogFile
  let nodes: VFIODeviceNodes?
  let events: UEventBroadcaster?
  /// The kernel's counters as the last complete follow found them.
  private let followed = Mutex<Marks?>(nil)

  /// The counters that move when there is something to follow.
  struct Marks: Equatable {
    var nextLogLine: UInt64
    var lastUEvent: UInt64
    var iommuGroupChanges: UInt64
  }

  init(log: KernelLogFile, nodes: VFIODeviceNodes?, events: UEventBroadcaster?) {
    self.log = log
    self.nodes = nodes
    self.events = events
  }

  static func marks(_ k: HostKernel) -> Marks {
    Marks(
      nextLogLine: k.log.nextSeq, lastUEvent: k.uevents.lastSeqnum, iommuGroupChanges: k.iommuGroupChanges)
  }

  /// Whether ``follow(_:)`` has anything to do, asked with the kernel's lock held (a store asks
  /// in the hold it stored in).
  func isDue(_ k: HostKernel) -> Bool {
    let now = Self.marks(k)
    return followed.withLock { $0 != now }
  }

  func follow(_ host: EmulatedHost) {
    let now = host.withKernel { Self.marks($0) }
    // Followed already, by a follow that looked after the same counters: nothing changed since.
    if followed.withLock({ $0 == now }) { return }
    log.sync()
    if let nodes { nodes.sync(groups: host.withKernel { Set($0.iommuGroups.keys) }) }
    events?.flush(host)
    followed.withLock { $0 = now }
  }
}
