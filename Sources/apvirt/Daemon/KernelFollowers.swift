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
  /// The kernel's counters as the last complete follow found them (`UInt64.max` each before the
  /// first), in three atomics rather than behind a lock: every store asks ``isDue(_:)``, and a
  /// lock taken and released is two atomic read-modify-writes where these are three plain loads.
  /// A follow stores them after it has followed. Read one by one, they may mix two follows'
  /// stores; the counters only grow, so a mix equal to the kernel's counters has all of them
  /// from a follow that saw those counters (the latest), and any other mix is a follow more.
  private let followedLogLine = Atomic<UInt64>(.max)
  private let followedUEvent = Atomic<UInt64>(.max)
  private let followedGroupChanges = Atomic<UInt64>(.max)

  init(log: KernelLogFile, nodes: VFIODeviceNodes?, events: UEventBroadcaster?) {
    self.log = log
    self.nodes = nodes
    self.events = events
  }

  /// Whether ``follow(_:)`` has anything to do, asked with the kernel's lock held (a store asks
  /// in the hold it stored in).
  func isDue(_ k: HostKernel) -> Bool { followed != k.changeCounters }

  /// The counters as the last follow found them.
  private var followed: HostKernel.ChangeCounters {
    HostKernel.ChangeCounters(
      logLines: followedLogLine.load(ordering: .acquiring),
      uevents: followedUEvent.load(ordering: .acquiring),
      iommuGroupChanges: followedGroupChanges.load(ordering: .acquiring))
  }

  func follow(_ host: EmulatedHost) {
    let now = host.withKernel { $0.changeCounters }
    // Followed already, by a follow that looked after the same counters: nothing changed since.
    if followed == now { return }
    log.sync()
    if let nodes { nodes.sync(groups: host.withKernel { Set($0.iommuGroups.keys) }) }
    events?.flush(host)
    followedLogLine.store(now.logLines, ordering: .releasing)
    followedUEvent.store(now.uevents, ordering: .releasing)
    followedGroupChanges.store(now.iommuGroupChanges, ordering: .releasing)
  }
}
