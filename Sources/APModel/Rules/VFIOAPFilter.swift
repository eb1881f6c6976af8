/// Why vfio_ap keeps one queue's adapter out of a guest (the standard answer of a queue lookup
/// for ``VFIOAPFilter/filterMatrix(_:host:previous:queue:)``; a caller that knows less, such as
/// a sysfs snapshot that shows no reset results, may use its own).
public enum VFIOAPQueueFilterReason: Hashable, Sendable {
  /// No queue device has the APQN.
  case missing
  /// The queue device is bound to another driver (or none), so vfio_ap has no queue for it.
  case notBound(driver: String?)
  /// vfio_ap's last reset of the queue did not complete (`reset_status.response_code`).
  case resetIncomplete(APResponseCode)
}

/// One adapter the filtering dropped for one of its queues.
public struct VFIOAPDroppedAdapter<Reason> {
  public var apid: APID
  /// The first APQN of the adapter (over the kept domains) that failed.
  public var apqn: APQN
  public var reason: Reason

  public init(apid: APID, apqn: APQN, reason: Reason) {
    self.apid = apid
    self.apqn = apqn
    self.reason = reason
  }
}

extension VFIOAPDroppedAdapter: Equatable where Reason: Equatable {}
extension VFIOAPDroppedAdapter: Hashable where Reason: Hashable {}
extension VFIOAPDroppedAdapter: Sendable where Reason: Sendable {}

/// What `vfio_ap_mdev_filter_matrix` makes of an assigned matrix: the guest's adapters and
/// domains (the shadow APCB's `apm` and `aqm`) and why each of the others stays out.
public struct VFIOAPFilteredMatrix<Reason> {
  /// The adapters and domains the guest gets.
  public var apm: APMask
  public var aqm: APMask
  /// `apm_filtered`: the adapters dropped that the previous APCB had, whose queues the kernel
  /// resets.
  public var filtered: APMask
  /// Whether `apm` or `aqm` differ from the previous APCB's (the guest needs an update).
  public var changed: Bool
  /// The assigned adapters and domains the host's AP configuration lacks (over-provisioned).
  public var adaptersNotInConfiguration: APMask
  public var domainsNotInConfiguration: APMask
  /// The adapters dropped for a queue, ascending. Empty (and unallocated) when none is.
  public var droppedByQueue: [VFIOAPDroppedAdapter<Reason>]

  public init(
    apm: APMask, aqm: APMask, filtered: APMask, changed: Bool, adaptersNotInConfiguration: APMask,
    domainsNotInConfiguration: APMask, droppedByQueue: [VFIOAPDroppedAdapter<Reason>]
  ) {
    self.apm = apm
    self.aqm = aqm
    self.filtered = filtered
    self.changed = changed
    self.adaptersNotInConfiguration = adaptersNotInConfiguration
    self.domainsNotInConfiguration = domainsNotInConfiguration
    self.droppedByQueue = droppedByQueue
  }
}

extension VFIOAPFilteredMatrix: Equatable where Reason: Equatable {}
extension VFIOAPFilteredMatrix: Sendable where Reason: Sendable {}

/// vfio_ap's filtering of an mdev's assigned matrix into its guest's APCB, value in, result out
/// (the kernel keeps the shadow APCB, the guest's update and the resets).
public enum VFIOAPFilter {
  /// `vfio_ap_mdev_filter_matrix`: adapters and domains the host's configuration (`info`)
  /// lacks are dropped, and an adapter is dropped whole when any of its APQNs over the kept
  /// domains has no usable queue: one queue cannot be taken from a guest, only an adapter.
  ///
  /// `queue` answers for one APQN of the matrix: nil when vfio_ap has a usable queue for it
  /// (linked to the mdev, its last reset complete), else why not. It is asked adapter by adapter,
  /// domains ascending, until an adapter's first failure. `previous` is the APCB before.
  @inlinable
  public static func filterMatrix<Reason>(
    _ matrix: APMatrix, host: APMatrix, previous: APMatrix, queue: (APQN) -> Reason?
  ) -> VFIOAPFilteredMatrix<Reason> {
    var apm = matrix.apm.intersection(host.apm)
    let aqm = matrix.aqm.intersection(host.aqm)
    var filtered = APMask()
    var dropped: [VFIOAPDroppedAdapter<Reason>] = []
    if !aqm.isEmpty {
      for apid in apm {
        for apqi in aqm {
          let apqn = APQN(apid, apqi)
          guard let why = queue(apqn) else { continue }
          apm.remove(apid)
          if previous.apm.contains(apid) { filtered.insert(apid) }
          dropped.append(VFIOAPDroppedAdapter(apid: apid, apqn: apqn, reason: why))
          break
        }
      }
    }
    return VFIOAPFilteredMatrix(
      apm: apm, aqm: aqm, filtered: filtered, changed: previous.apm != apm || previous.aqm != aqm,
      adaptersNotInConfiguration: matrix.apm.subtracting(host.apm),
      domainsNotInConfiguration: matrix.aqm.subtracting(host.aqm), droppedByQueue: dropped)
  }

  /// `vfio_ap_mdev_filter_cdoms`: the guest gets the assigned control domains the host has.
  @inlinable
  public static func filterCdoms(_ adm: APMask, host: APMatrix) -> APMask { adm.intersection(host.adm) }
}
