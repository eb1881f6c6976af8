import APModel

/// Filtering: from an mdev's assigned matrix to the guest's APCB (`vfio_ap_mdev_filter_matrix`,
/// `vfio_ap_mdev_filter_cdoms`), and pushing the APCB into the guest.
extension VFIOAPDriver {
  /// Recomputes the shadow APCB from scratch: adapters and domains the host's configuration
  /// lacks are dropped, and an adapter is dropped whole when any of its APQNs (over the kept
  /// domains) has no linked queue or a queue whose last reset did not complete (rc other than
  /// 00, 03, 04): one queue cannot be taken from a guest, only an adapter. Returns whether the
  /// APCB changed and the adapters dropped that the guest had before.
  func filterMatrix(_ m: MediatedDevice) -> (changed: Bool, filtered: APMask) {
    let prev = m.shadowAPCB
    var filtered = APMask()
    var apm = m.matrix.apm.intersection(info.apm)
    let aqm = m.matrix.aqm.intersection(info.aqm)
    for apid in apm {
      for apqi in aqm {
        let raw = APQN(apid, apqi).rawValue
        let ok = m.queues[raw].map { $0.resetResponseCode.isResetComplete } ?? false
        if !ok {
          apm.remove(apid)
          if prev.apm.contains(apid) { filtered.insert(apid) }
          break
        }
      }
    }
    m.shadowAPCB.apm = apm
    m.shadowAPCB.aqm = aqm
    return (prev.apm != apm || prev.aqm != aqm, filtered)
  }

  /// Control domains reach the guest when the host has them.
  func filterCdoms(_ m: MediatedDevice) -> Bool {
    let prev = m.shadowAPCB.adm
    m.shadowAPCB.adm = m.matrix.adm.intersection(info.adm)
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
