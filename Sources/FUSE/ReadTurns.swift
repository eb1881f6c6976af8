import CFUSEDevice
import Foundation

/// How many of a session's serving threads read the connection at once, and the turns they
/// take at it.
///
/// Every thread blocked in read(2) on `/dev/fuse` is a waiter the kernel may wake: each request
/// queued wakes one. A close queues its RELEASE and lets the caller go on at once, so the caller's
/// next OPEN is queued right behind it, and wakes a second thread while the first has not run
/// yet; the first then answers both, and the second finds nothing and sleeps again. On one CPU
/// that second thread could never have answered sooner, and its wake costs a switch in and out
/// per open/write/close. So where the serving threads may run on one CPU only (the process's
/// affinity: `taskset -c 0`, a one-CPU cgroup or machine), one thread at a time reads: it keeps
/// its turn while it answers, and reads the next request itself. The other threads wait for the
/// turn, which a thread hands on before a request of its own waits for something outside the
/// session, so that the requests behind it are read meanwhile: a sysfs `remove` waiting for a
/// VMM to release its device (see ``FileSystem/store(_:_:beforeWaiting:)``), and the kernel's
/// invalidation of what a store removed, which waits for the parent directory's lock that
/// another caller's LOOKUP in it holds until it is answered.
/// Where the threads may run on several CPUs, every thread reads, as libfuse's do.
///
/// A turn is taken and given only when a thread starts, stops, or waits in a request: the
/// thread that reads keeps its turn from one request to the next without touching this object.
final class ReadTurns: @unchecked Sendable {
  /// How many threads read at once.
  let limit: Int
  /// Guards `free`.
  private let condition = NSCondition()
  /// Turns no thread holds.
  private var free: Int

  init(limit: Int) {
    self.limit = max(1, limit)
    free = self.limit
  }

  /// Waits for a turn and takes it.
  func take() {
    condition.lock()
    while free == 0 { condition.wait() }
    free -= 1
    condition.unlock()
  }

  /// Gives a turn back: a waiting thread takes it.
  func give() {
    condition.lock()
    free += 1
    condition.signal()
    condition.unlock()
  }

  /// How many threads read at once when `threads` serve: one where the calling thread (whose
  /// affinity the serving threads inherit) may run on one CPU only, else all of them.
  static func readers(threads: Int) -> Int {
    cpusAvailable() == 1 ? 1 : threads
  }

  /// The CPUs the calling thread may run on (sched_getaffinity(2)); nil when it cannot be told.
  static func cpusAvailable() -> Int? {
    let n = cfuse_cpus_available()
    return n > 0 ? Int(n) : nil
  }
}

/// A serving thread's hold on a turn of ``ReadTurns``. Only its thread touches it.
final class ReadTurn {
  let turns: ReadTurns
  /// Whether the thread holds a turn.
  private(set) var held = false

  init(_ turns: ReadTurns) { self.turns = turns }

  /// Before a read: waits for a turn unless the thread holds one.
  @inline(__always)
  func take() {
    if !held {
      turns.take()
      held = true
    }
  }

  /// Before the thread waits in a request, or when it stops: another thread reads meanwhile.
  func handOn() {
    if held {
      held = false
      turns.give()
    }
  }
}
