import APModel

/// The firmware state of one AP queue: messages waiting, replies waiting, interruptions, and who
/// put the state there. A zeroize (ZAPQ) clears all of it.
public struct APQueueState: Sendable {
  public struct Message: Hashable, Sendable {
    public var psmid: UInt64
    public var payload: [UInt8]
  }

  public var requests: [Message] = []
  public var replies: [Message] = []
  public var interruptsEnabled = false
  public var notificationAddress: UInt64 = 0
  /// Who has state in this queue since the last zeroize, or nil when it is clean.
  public var owner: APQueueOwner?
  /// How many times the queue was zeroized (ZAPQ); a reset without zeroize (RAPQ) does not count.
  public var zeroizeCount = 0
  /// When the reset under way completes (machine time, ns); nil when none was started.
  public var resetCompletesAt: UInt64?
  /// When the enabling of interruptions under way completes (machine time, ns).
  public var interruptsEnabledAt: UInt64?

  public init() {}

  public var isEmpty: Bool { requests.isEmpty && replies.isEmpty }
}
