import APModel

/// Every queue's firmware state in one dense table indexed by the APQN's 16-bit number
/// (`apid << 8 | apqi`), so that an instruction finds and changes its queue in place: a boot of
/// the full architecture runs four instructions on each of 65,536 queues, and a dictionary
/// would hash each APQN twice and copy the state out and back every time.
///
/// A queue never touched reads as a fresh ``APQueueState``, exactly as one that was cleared:
/// the table grows on the first change beyond its end and never holds anything else.
struct APQueueTable {
  private var states: [APQueueState] = []

  /// The state of `apqn` (a fresh one when it was never changed).
  subscript(apqn: APQN) -> APQueueState {
    let i = apqn.rawValue
    return i >= 0 && i < states.count ? states[i] : APQueueState()
  }

  /// Reads the state of `apqn` where it is, without copying it out (its message arrays and
  /// owner would be retained and released at every instruction).
  func read<R>(_ apqn: APQN, _ body: (APQueueState) -> R) -> R {
    let i = apqn.rawValue
    return i >= 0 && i < states.count ? body(states[i]) : body(Self.fresh)
  }

  /// What a queue never changed reads as.
  private static let fresh = APQueueState()

  /// Changes the state of `apqn` in place.
  mutating func update<R>(_ apqn: APQN, _ body: (inout APQueueState) -> R) -> R {
    let i = apqn.rawValue
    precondition(i >= 0 && i <= 0xffff, "APQN out of range")
    if i >= states.count {
      // By whole adapters: a boot changes every queue of an adapter in turn.
      states.append(contentsOf: repeatElement(APQueueState(), count: (i | 0xff) + 1 - states.count))
    }
    return body(&states[i])
  }

  /// Forgets the state of `apqn`: it reads as fresh again.
  mutating func clear(_ apqn: APQN) {
    let i = apqn.rawValue
    if i >= 0 && i < states.count { states[i] = APQueueState() }
  }

  /// The queues that hold someone's state, ascending.
  var owned: [(APQN, APQueueOwner)] {
    states.indices.compactMap { i in states[i].owner.map { (APQN(rawValue: i), $0) } }
  }
}
