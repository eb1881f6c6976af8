import APModel
import Machine

/// Queue resets (`vfio_ap_mdev_reset_queue` and friends). vfio_ap always zeroizes (ZAPQ), so a
/// queue that leaves a guest carries nothing to its next user.
extension VFIOAPDriver {
  /// Resets one queue: ZAPQ; rc 00/02/05/0A are verified by polling TAPQ every 20 ms until it
  /// answers 00, 03 or 04 (re-issuing the ZAPQ after 02/05/0A); 03 and 04 are done at once.
  /// The emulated firmware completes a ZAPQ at once, so the poll ends on its first TAPQ.
  @discardableResult
  func resetQueue(_ q: VFIOAPQueue) -> APResponseCode {
    var status = machine.zapq(q.apqn, .lpar)
    var waitedMs = 0
    switch status.responseCode {
    case .normal, .resetInProgress, .busy, .stateChangeInProgress:
      var reissue = status.responseCode != .normal
      while true {
        if reissue {
          status = machine.zapq(q.apqn, .lpar)
          reissue = false
        }
        let (t, _) = machine.tapq(q.apqn, .lpar)
        if t.responseCode.isResetComplete && !(t.responseCode == .normal && (!t.queueEmpty || t.irqEnabled)) {
          status = t
          break
        }
        waitedMs += 20
        if t.responseCode == .resetInProgress || t.responseCode == .busy {
          if waitedMs % 1000 == 0 {
            kernel.printk(
              "vfio_ap: Waited \(waitedMs)ms for reset of queue \(q.apqn) (\(t.responseCode), 0, 0)")
          }
        } else if !t.responseCode.isResetComplete {
          reissue = true
        }
        if waitedMs > 10_000 { break }
      }
    case .deconfigured, .checkstopped:
      break
    default:
      kernel.printk("vfio_ap: PQAP/ZAPQ for \(q.apqn) failed with invalid rc=\(status.responseCode.rawValue)")
    }
    q.resetResponseCode = status.responseCode
    return status.responseCode
  }

  /// Resets a list of queues: issue every ZAPQ, then wait for all.
  func resetQList(_ qs: [VFIOAPQueue]) {
    for q in qs { resetQueue(q) }
  }

  /// Resets the linked queues of the given adapters (`reset_queues_for_apids`).
  func resetQueues(_ m: MediatedDevice, apids: APMask) {
    guard !apids.isEmpty else { return }
    resetQList(m.queues.values.filter { apids.contains($0.apqn.apid) }.sorted { $0.apqn < $1.apqn })
  }

  /// Resets every linked queue (`vfio_ap_mdev_reset_queues`); false (EIO) when any queue's last
  /// reset answered anything but 00, 03 and 04 included.
  @discardableResult
  func resetQueues(_ m: MediatedDevice) -> Bool {
    let qs = m.queues.values.sorted { $0.apqn < $1.apqn }
    var ok = true
    for q in qs where resetQueue(q) != .normal { ok = false }
    return ok
  }
}
