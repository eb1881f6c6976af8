import APModel

/// Filtering: from an mdev's assigned matrix to the guest's APCB (`vfio_ap_mdev_filter_matrix`,
/// `vfio_ap_mdev_filter_cdoms`), and pushing the APCB into the guest.
extension VFIOAPDriver {
  /// `vfio_ap_mdev_filter_matrix`: recomputes the shadow APCB's adapters and domains from
  /// scratch by the shared rule (``VFIOAPFilter/filterMatrix(_:host:previous:queue:)``), where a
  /// usable queue is one linked to the mdev whose last reset completed (rc 00, 03 or 04).
  /// Returns whether the APCB changed and the adapters dropped that the guest had before.
  /// (A bulk change filters 255 mdevs of 256 APQNs each: the linked queue is found in the
  /// dense table, and the link told without retaining the mdev.)
  func filterMatrix(_ m: MediatedDevice) -> (changed: Bool, filtered: APMask) {
    let f = VFIOAPFilter.filterMatrix(m.matrix, host: info, previous: m.shadowAPCB) {
      apqn -> VFIOAPQueueFilterReason? in
      if let q = queues[apqn.rawValue], q.isLinked(to: m) {
        return q.resetResponseCode.isResetComplete ? nil : .resetIncomplete(q.resetResponseCode)
      }
      guard let device = bus.queue(apqn) else { return .missing }
      return .notBound(driver: device.driver?.name)
    }
    m.shadowAPCB.apm = f.apm
    m.shadowAPCB.aqm = f.aqm
    return (f.changed, f.filtered)
  }

  /// `vfio_ap_mdev_filter_cdoms`: control domains reach the guest when the host has them.
  func filterCdoms(_ m: MediatedDevice) -> Bool {
    let prev = m.shadowAPCB.adm
    m.shadowAPCB.adm = VFIOAPFilter.filterCdoms(m.matrix.adm, host: info)
    return prev != m.shadowAPCB.adm
  }

  /// `vfio_ap_mdev_update_guest_apcb`: when a guest is attached, write the shadow APCB into
  /// its CRYCB (one vCPU block cycle) and signal the config-change eventfd.
  func updateGuestAPCB(_ m: MediatedDevice) {
    guard let vm = m.kvm else { return }
    vm.setMasks(m.shadowAPCB)
    signalConfigChanged(m)
  }

  func signalConfigChanged(_ m: MediatedDevice) {
    if let t = m.configChangeTrigger { kernel.signal(t) }
  }
}
