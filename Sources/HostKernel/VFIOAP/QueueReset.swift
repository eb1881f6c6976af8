import APModel
import Machine

/// Queue resets (`vfio_ap_mdev_reset_queue`, `apq_reset_check`, `vfio_ap_mdev_reset_queues`).
/// vfio_ap always zeroizes (ZAPQ), so a queue that leaves a guest carries nothing to its next
/// user.
///
/// The kernel verifies each reset on a work queue: every 20 ms (`AP_RESET_INTERVAL`) a TAPQ,
/// until the queue answers that the reset is done. The works of a bulk reset run side by side,
/// and the caller waits for all of them (`flush_work`). Here the waiting happens inside the
/// operation, under the host's one lock: each 20 ms is ``HostKernel/sleep(milliseconds:)``,
/// which moves the kernel's and the machine's clocks without running any timer, so nothing
/// re-enters the operation; the timers that fell due meanwhile run at the next `advance`.
extension VFIOAPDriver {
  /// `AP_RESET_INTERVAL`, ms.
  static let resetInterval: UInt64 = 20
  /// A bound on one wait that the kernel does not have (it waits as long as the queue answers
  /// 02 or 05): the longest latency a machine can be given, one hour, and as long again.
  static let resetWaitLimitMs: UInt64 = 2 * 3_600_000

  /// Resets one queue and waits for it; the response code it ends with.
  @discardableResult
  func resetQueue(_ q: VFIOAPQueue) -> APResponseCode {
    resetQList([q])
    return q.resetResponseCode
  }

  /// Resets a list of queues: issue every ZAPQ, then wait for all.
  func resetQList(_ qs: [VFIOAPQueue]) {
    waitForResets(qs.filter { startReset($0) })
  }

  /// Resets the linked queues of the given adapters (`reset_queues_for_apids`).
  func resetQueues(_ m: MediatedDevice, apids: APMask) {
    guard !apids.isEmpty else { return }
    resetQList(m.queues.filter { apids.contains($0.apqn.apid) })
  }

  /// Resets every linked queue (`vfio_ap_mdev_reset_queues`); false (EIO) when any queue's
  /// `reset_status` is not 00. That status is the last ZAPQ's answer (a 03 is kept as 00), not
  /// what the verifying TAPQ saw: a queue whose adapter checkstops after it accepted the ZAPQ
  /// only gets the warning, as in Linux 6.6 and later.
  @discardableResult
  func resetQueues(_ m: MediatedDevice) -> Bool {
    let qs = m.queues
    resetQList(qs)
    return qs.allSatisfy { $0.resetResponseCode == .normal }
  }

  /// `vfio_ap_mdev_reset_queue`: the ZAPQ. True when its answer (00, 02, 05, 0A) is to be
  /// verified; 03 is final and counts as a reset done (00); anything else, 04 included, is final
  /// with the kernel's warning.
  private func startReset(_ q: VFIOAPQueue) -> Bool {
    let rc = kernel.cpu.zapq(q.apqn).responseCode
    q.resetResponseCode = rc
    switch rc {
    case .normal, .resetInProgress, .busy, .stateChangeInProgress:
      return true
    case .deconfigured:
      // The adapter left the configuration: nothing to verify, and nothing failed.
      q.resetResponseCode = .normal
      return false
    default:
      kernel.printk("vfio_ap: PQAP/ZAPQ for \(q.apqn) failed with invalid rc=\(rc.rawValue)")
      return false
    }
  }

  /// The reset checks of `qs`, side by side: each 20 ms every queue still waiting is tested.
  private func waitForResets(_ qs: [VFIOAPQueue]) {
    var waiting = qs
    var elapsed: UInt64 = 0
    while !waiting.isEmpty && elapsed < Self.resetWaitLimitMs {
      kernel.sleep(milliseconds: Self.resetInterval)
      elapsed += Self.resetInterval
      waiting = waiting.filter { checkReset($0, elapsedMs: elapsed) }
    }
  }

  /// One round of `apq_reset_check` (TAPQ, `apq_status_check`); true while the queue is still
  /// to be waited for.
  private func checkReset(_ q: VFIOAPQueue, elapsedMs: UInt64) -> Bool {
    let (t, _) = kernel.cpu.tapq(q.apqn)
    switch t.responseCode {
    case .resetInProgress, .busy:
      // -EBUSY: the notice, rate-limited as pr_notice_ratelimited is (one state for the call site).
      let allowed = resetWaitNotices.allow(at: kernel.now, function: "apq_reset_check") { kernel.printk($0) }
      if allowed {
        kernel.printk(
          "vfio_ap: Waited \(elapsedMs)ms for reset of queue \(q.apqn) (\(t.responseCode.rawValue), \(t.queueEmpty ? 1 : 0), \(t.irqEnabled ? 1 : 0))"
        )
      }
      return true
    case .normal, .deconfigured, .associationSecretNotUnique, .associationFailed:
      // A reset that was not taken (busy, one in progress, a state change) is issued again.
      let retry: Set<APResponseCode> = [.resetInProgress, .busy, .stateChangeInProgress]
      let eagain = t.responseCode == .associationSecretNotUnique || t.responseCode == .associationFailed
      if retry.contains(q.resetResponseCode) || eagain {
        q.resetResponseCode = kernel.cpu.zapq(q.apqn).responseCode
        return true
      }
      // The ZAPQ's status stands; a queue that left the configuration meanwhile reads 00.
      if t.responseCode == .deconfigured { q.resetResponseCode = .normal }
      return false
    default:
      // -EIO: the queue cannot be verified (a checkstop during the reset). The work ends with
      // the warning and leaves `reset_status` as the last ZAPQ answered.
      kernel.printk(
        "vfio_ap: failed to verify reset of queue \(q.apqn): TAPQ rc=\(t.responseCode.rawValue)")
      return false
    }
  }
}
