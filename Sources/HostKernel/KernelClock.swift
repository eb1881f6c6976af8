/// The host kernel's clock as the kernels of its guests see it. They run on the host's machine,
/// so the host's time is theirs: a guest's kernel boots at ``now`` and follows the clock,
/// running its own timers (its AP bus's scan and poll) each time the host's clock has moved.
///
/// The host knows no guest: the clock holds its followers weakly, and a guest's kernel that its
/// guest drops stops following. Like the kernels, it has no lock of its own: the host's lock,
/// under which every guest's kernel runs too, covers it.
public final class KernelClock {
  /// The host's time (ns since its boot).
  public internal(set) var now: UInt64 = 0
  private var followers: [Follower] = []

  private struct Follower {
    weak var kernel: HostKernel?
  }

  init() {}

  /// `kernel` follows the clock from now on.
  func follow(_ kernel: HostKernel) { followers.append(Follower(kernel: kernel)) }

  /// The host's clock has moved to `time`: every follower's moves there, in boot order.
  func runFollowers(to time: UInt64) {
    followers.removeAll { $0.kernel == nil }
    for f in followers { f.kernel?.advance(to: time) }
  }
}
