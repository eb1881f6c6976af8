import APModel
import Machine

/// What vfio_ap keeps of a queue bound to it (`struct vfio_ap_queue`), from
/// `vfio_ap_mdev_probe_queue` to `vfio_ap_mdev_remove_queue`. vfio_ap holds these itself, by
/// APQN (``VFIOAPDriver/queue(_:)``, the kernel's `vfio_ap_find_queue`); the AP bus's queue
/// device knows nothing of them.
final class VFIOAPQueue {
  let apqn: APQN
  /// vfio_ap, whose tables alone hold the record. Unchecked (`unowned(unsafe)`), as is the mdev:
  /// a bulk configuration change makes and drops 65,280 records, and a checked or weak
  /// reference costs atomic count changes (on objects with side tables) at each.
  unowned(unsafe) let driver: VFIOAPDriver
  /// The mdev the queue is linked to (`q->matrix_mdev`), if any: set by the link, cleared by
  /// every unlink, and an mdev is dropped only after it has unlinked its queues
  /// (``VFIOAPDriver/removeMdev(_:)``). This is the one record of the link: an mdev's linked
  /// queues are the records of its assigned APQNs that name it (``MediatedDevice/queues``).
  var matrixMdev: MediatedDevice? {
    get { link?.takeUnretainedValue() }
    set { link = newValue.map { Unmanaged.passUnretained($0) } }
  }
  private var link: Unmanaged<MediatedDevice>?

  /// Whether the queue is linked to `m`, told without retaining either mdev (an mdev has a side
  /// table, which makes every count change slow): filtering asks it for every APQN of every mdev.
  func isLinked(to m: MediatedDevice) -> Bool {
    link.map { $0.toOpaque() == Unmanaged.passUnretained(m).toOpaque() } ?? false
  }
  /// The response code of the last reset (ZAPQ) vfio_ap issued; 00 until the first.
  var resetResponseCode: APResponseCode = .normal

  init(apqn: APQN, driver: VFIOAPDriver) {
    self.apqn = apqn
    self.driver = driver
  }
}
