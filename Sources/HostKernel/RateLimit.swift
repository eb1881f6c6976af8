/// `struct ratelimit_state` with `___ratelimit` (lib/ratelimit.c) on the kernel's clock: at most
/// `burst` calls in each `interval` from the first; when a new interval begins after calls were
/// suppressed, the caller's function name with how many (`%s: %d callbacks suppressed`).
struct RateLimit {
  /// `DEFAULT_RATELIMIT_INTERVAL`: 5 seconds, in ns.
  var interval: UInt64 = 5_000_000_000
  /// `DEFAULT_RATELIMIT_BURST`.
  var burst = 10
  private var begin: UInt64?
  private var left = 0
  private var missed = 0

  /// Whether the call at `now` may go ahead; `report` gets the suppression line when one is due.
  mutating func allow(at now: UInt64, function: String, report: (String) -> Void) -> Bool {
    if begin == nil {
      begin = now
      left = burst
    }
    if let b = begin, b + interval < now {
      left = burst
      begin = now
      if missed > 0 { report("\(function): \(missed) callbacks suppressed") }
      missed = 0
    }
    if left > 0 {
      left -= 1
      return true
    }
    missed += 1
    return false
  }
}
