import APModel

/// Carries out a ``ConfigurationPlan`` on a host, one step at a time: each step is written, and
/// what it can change is read back and compared with the state the plan predicted after it.
/// When a write fails, or reads back other than predicted, the steps made so far are undone, last
/// first (``ConfigurationPlan/undo(through:)``), so that the host ends in its old state or in the
/// new one. A plan that cannot reach its target is not started: nothing is written.
///
/// The read-back after a step is ``ReadBack/read(from:)``: the masks and each mdev's files, not
/// the cards and queues, which no plan step writes (their drivers follow the masks, and the
/// masks are read back). Only a failure reads the whole AP state again, to say why the kernel
/// refused the write.
public enum ConfigurationApply {
  /// The step that failed: its index in the plan (from 0), the errno when the write itself
  /// failed (nil when it read back other than predicted) and why.
  public struct Failure: Sendable {
    public var step: PlanStep
    public var index: Int
    public var errno: Errno?
    public var reasons: [String]
  }

  /// A step of the undo that the kernel refused.
  public struct UndoError: Sendable, CustomStringConvertible {
    public var step: PlanStep
    public var errno: Errno

    public var description: String { "\(step): \(errno.symbolicName) (\(Explanation.strerror(errno)))" }
  }

  public struct Outcome: Sendable {
    public var plan: ConfigurationPlan
    /// Nil when every step was written and read back as predicted (or none was, refused).
    public var failure: Failure?
    /// How many of the plan's steps were written (and read back as predicted).
    public var written: Int
    /// After a failure, the steps written to undo them, in order.
    public var undone: [PlanStep]
    public var undoErrors: [UndoError]
    /// After a failure and its undo, how the host differs from the state before (empty: it is
    /// as before).
    public var differences: [String]

    /// The plan could not reach its target, so nothing was written.
    public var refused: Bool { !plan.reachable }
    /// Every step was written and read back as predicted.
    public var applied: Bool { plan.reachable && failure == nil }
  }

  /// Runs `plan` on `host`. `beforeWrite` runs before the write of step `n` (from 1), not before
  /// the undo's writes: the CLI's test hook, and tests' other writers.
  ///
  /// A read-back that cannot be read throws, with the steps written so far left as they are.
  public static func run(
    _ plan: ConfigurationPlan, on host: some SysfsHost, beforeWrite: (Int) -> Void = { _ in }
  ) throws(SnapshotError) -> Outcome {
    var outcome = Outcome(plan: plan, failure: nil, written: 0, undone: [], undoErrors: [], differences: [])
    guard plan.reachable else { return outcome }
    for (i, p) in plan.steps.enumerated() {
      beforeWrite(i + 1)
      if let e = host.write(p.step.path, p.step.bytes) {
        let now = try SysfsSnapshot.read(from: host)
        outcome.failure = Failure(
          step: p.step, index: i, errno: e, reasons: ConfigurationPlan.predict(p.step, in: now).reasons)
        break
      }
      outcome.written = i + 1
      let diffs = ReadBack(p.after).differences(from: try ReadBack.read(from: host))
      if !diffs.isEmpty {
        outcome.failure = Failure(
          step: p.step, index: i, errno: nil,
          reasons: ["what it reads back is not what the kernel's rules predict:"] + diffs)
        break
      }
    }
    guard outcome.failure != nil else { return outcome }
    outcome.undone = plan.undo(through: outcome.written)
    for step in outcome.undone {
      if let e = host.write(step.path, step.bytes) {
        outcome.undoErrors.append(UndoError(step: step, errno: e))
      }
    }
    outcome.differences = ReadBack(plan.before).differences(from: try ReadBack.read(from: host))
    return outcome
  }
}

extension ReadBack {
  /// Reads only what a plan's steps change: `bus/ap/apmask`, `bus/ap/aqmask`, and each mdev's
  /// `ap_config` (or `matrix` and `control_domains`) and `guest_matrix`. On the emulated host's
  /// mount this is a dozen files where a whole snapshot reads every card's and queue's.
  public static func read(from host: some SysfsHost) throws(SnapshotError) -> ReadBack {
    let r = SysfsReader(host: host)
    return ReadBack(
      apmask: try r.mask("bus/ap/apmask"), aqmask: try r.mask("bus/ap/aqmask"), mdevs: try r.mdevs() ?? [])
  }
}
