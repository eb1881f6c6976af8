import APModel
import Machine
import Sysfs
import SystemPackage

/// How vfio_ap follows the host: queues that come to it and go from it (probe and remove), and
/// changes of the host's AP configuration, batched so that each guest sees one APCB update per
/// change however many queues it brings. These are vfio_ap's AP driver operations (`vfio_ap_drv`
/// in `vfio_ap_drv.c`), the only way the AP bus reaches vfio_ap.
extension VFIOAPDriver: APDriverOperations {
  var driver: APDriver { .vfioAP }
  /// vfio_ap takes the queues the masks do not reserve for the host.
  var isDefault: Bool { false }
  /// `ap_queue_ids`: queue devices of CEX4 onwards.
  var ids: APDeviceIDTable { Self.apQueueIDs }
  static let apQueueIDs = APDeviceID.cex4Onwards(.queue)

  func probe(_ device: APDevice) throws(Errno) {
    guard case .queue(let q) = device else { throw .noSuchDevice }
    probeQueue(q)
  }

  func remove(_ device: APDevice) {
    if case .queue(let q) = device { removeQueue(q) }
  }

  /// The `status` attribute of a queue bound to vfio_ap, showing vfio_ap's record of it.
  func queueGroups(_ q: APQueue) -> [SysfsBoundGroup] {
    guard let v = queues[q.apqn.rawValue] else { return [] }
    return [SysfsBoundGroup(MdevAttributes.queueGroup, owner: v)]
  }

  /// `vfio_ap_mdev_resource_in_use`.
  func inUse(apm: APMask, aqm: APMask) -> Bool { resourceInUse(apm: apm, aqm: aqm) }

  /// `vfio_ap_mdev_probe_queue`: vfio_ap's record of the queue, its `status` attribute (served
  /// from the record when the queue's directory is looked up: ``queueGroups(_:)``), and the
  /// link to the mdev that holds its APQN. Unless a configuration change for that mdev is in
  /// progress (then `onScanComplete` handles it once), the mdev is filtered again and its guest
  /// updated.
  func probeQueue(_ q: APQueue) {
    let v = VFIOAPQueue(apqn: q.apqn, driver: self)
    queues[q.apqn.rawValue] = v
    guard let m = owner(of: q.apqn) else { return }
    link(m, v)
    if m.hasPendingAdditions { return }
    let (changed, filtered) = filterMatrix(m)
    if changed {
      updateGuestAPCB(m)
      resetQueues(m, apids: filtered)
    }
  }

  /// `vfio_ap_mdev_remove_queue`: a queue in a guest's APCB takes its whole adapter out of the
  /// guest (one update) and the adapter's other linked queues are reset; a queue not in a guest
  /// is reset if it is still in the host's configuration. Then it is unlinked.
  func removeQueue(_ q: APQueue) {
    q.groupRemoved(MdevAttributes.queueGroup)
    guard let v = queues[q.apqn.rawValue] else { return }
    let m = v.matrixMdev
    let apid = q.apqn.apid
    let apqi = q.apqn.apqi
    var done = false
    if let m, m.shadowAPCB.apm.contains(apid) && m.shadowAPCB.aqm.contains(apqi) {
      m.shadowAPCB.apm.remove(apid)
      updateGuestAPCB(m)
      resetQueues(m, apids: APMask([apid]))
      done = true
    }
    if !done && info.apm.contains(apid) && info.aqm.contains(apqi) {
      resetQueue(v)
    }
    // The record, and with it the link, goes.
    queues[q.apqn.rawValue] = nil
  }

  /// `vfio_ap_on_cfg_changed` (vfio_ap's `on_config_changed`), before the AP bus scan: what
  /// left the configuration leaves every guest at once (one update per affected guest, no reset:
  /// those queues are gone); what came is remembered per mdev so the scan's queue probes only
  /// link, and `onScanComplete` filters.
  func onConfigChanged(old oldInfo: QCIInfo, new newInfo: QCIInfo) {
    let old = oldInfo.matrix
    let new = newInfo.matrix
    let removed = APMatrix(
      apm: old.apm.subtracting(new.apm), aqm: old.aqm.subtracting(new.aqm), adm: old.adm.subtracting(new.adm))
    var added = APMatrix(
      apm: new.apm.subtracting(old.apm), aqm: new.aqm.subtracting(old.aqm), adm: new.adm.subtracting(old.adm))
    // Adapters of a type vfio_ap does not drive are ignored.
    for apid in added.apm {
      if let a = machine.adapters[apid], !a.definition.type.isSupported { added.apm.remove(apid) }
    }
    for m in mdevList {
      var hotplug = false
      for (mask, kind) in [(removed.apm, 0), (removed.aqm, 1), (removed.adm, 2)] where !mask.isEmpty {
        switch kind {
        case 0:
          if m.shadowAPCB.apm.intersects(mask) {
            m.shadowAPCB.apm = m.shadowAPCB.apm.subtracting(mask)
            hotplug = true
          }
        case 1:
          if m.shadowAPCB.aqm.intersects(mask) {
            m.shadowAPCB.aqm = m.shadowAPCB.aqm.subtracting(mask)
            hotplug = true
          }
        default:
          if m.shadowAPCB.adm.intersects(mask) {
            m.shadowAPCB.adm = m.shadowAPCB.adm.subtracting(mask)
            hotplug = true
          }
        }
      }
      if hotplug { updateGuestAPCB(m) }
      m.apmAdd = m.matrix.apm.intersection(added.apm)
      m.aqmAdd = m.matrix.aqm.intersection(added.aqm)
      m.admAdd = m.matrix.adm.intersection(added.adm)
    }
    info = new
  }

  /// `vfio_ap_on_scan_complete` (vfio_ap's `on_scan_complete`): each mdev the change added to
  /// is filtered once and its guest updated once.
  func onScanComplete(old: QCIInfo, new: QCIInfo) {
    for m in mdevList where m.hasPendingAdditions {
      var update = false
      var filtered = APMask()
      if m.matrix.apm.intersects(m.apmAdd) || m.matrix.aqm.intersects(m.aqmAdd) {
        (update, filtered) = filterMatrix(m)
      }
      if m.matrix.adm.intersects(m.admAdd) { update = filterCdoms(m) || update }
      if update { updateGuestAPCB(m) }
      resetQueues(m, apids: filtered)
      m.apmAdd = APMask()
      m.aqmAdd = APMask()
      m.admAdd = APMask()
    }
  }
}
