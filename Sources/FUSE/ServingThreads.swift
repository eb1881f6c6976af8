import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// How a session's serving threads share the connection. One of them at a time, the holder,
/// reads it, and it keeps reading and answering for as long as it can: a request finds the
/// thread that answered the one before, awake or only just asleep, where the kernel, which wakes
/// the threads waiting in read(2) in turn, would wake the one that has waited longest (a
/// sequential caller's request then costs a switch to a cold thread, often on the other CPU:
/// an open/read/close took about 28 us with four threads reading, 19 us with one). The others
/// wait here, the last to arrive on top.
///
/// When requests keep the holder busy (its reads found a request waiting ``busyStreak`` times in
/// a row: parallel callers), it wakes a waiting thread, which reads beside it for as long as its
/// reads find requests waiting, and then waits for its turn again.
///
/// When the holder is stuck on one request (a store waiting for a VMM to release a device, or
/// for the host's lock), ``watch()`` notices that it has not moved for ``stuckAfter`` and hands
/// the connection to a waiting thread, so that whatever else comes (what the VMM does to release
/// the device) is answered; the stuck thread waits for its turn when it is done. With every
/// thread stuck, nobody reads until one is done, as when every thread of a server is busy.
final class ServingThreads: Sendable {
  struct State {
    /// The threads waiting for their turn, the last to arrive last.
    var waiting: [Int] = []
    var over = false
  }

  let state = Mutex(State())
  /// One per thread: its wake-up.
  let wakeups: [DispatchSemaphore]
  /// The thread that reads the connection; -1: none (the next thread to be done takes it). It
  /// changes under `state`'s lock; the holder checks it after each request without the lock.
  let holder = Atomic<Int>(-1)
  /// Each thread's progress, which only the thread changes: twice the requests it has
  /// answered, plus one while it answers one.
  let progress: [Progress]

  final class Progress: Sendable {
    let value = Atomic<UInt64>(0)
    func step() { value.add(1, ordering: .relaxed) }
  }

  /// How long the holder may answer one request before another thread reads, in seconds.
  static let stuckAfter = 0.01
  /// A read(2) that returned sooner found its request waiting (one that waited for it takes a
  /// switch away and back, several microseconds), in nanoseconds.
  static let waitingRequest: UInt64 = 4_000
  /// How many reads in a row must find their request waiting before another thread helps: a
  /// sequential caller's requests (an open, a read or write, a release sent after close)
  /// never make more than two in a row.
  static let busyStreak = 16

  init(count: Int) {
    wakeups = (0..<count).map { _ in DispatchSemaphore(value: 0) }
    progress = (0..<count).map { _ in Progress() }
  }

  /// Thread `i`'s turn: it holds the connection, or waits until it is handed the connection;
  /// false when the session is over.
  func take(_ i: Int) -> Bool {
    let wait: Bool? = state.withLock { s in
      if s.over { return nil }
      if holder.load(ordering: .relaxed) == -1 {
        holder.store(i, ordering: .relaxed)
        return false
      }
      s.waiting.append(i)
      return true
    }
    guard let wait else { return false }
    if wait { wakeups[i].wait() }
    return !state.withLock { $0.over }
  }

  /// Thread `stuck` holds the connection and is stuck: the last thread to wait holds it now
  /// (none waits: the next thread to be done takes it).
  func handOn(from stuck: Int) {
    let next: Int? = state.withLock { s in
      guard holder.load(ordering: .relaxed) == stuck else { return nil }
      let n = s.waiting.popLast()
      holder.store(n ?? -1, ordering: .relaxed)
      return n
    }
    if let next { wakeups[next].signal() }
  }

  /// A thread that keeps finding requests waiting wants help: the last thread to wait reads
  /// too, for as long as it finds requests waiting.
  func wakeHelper() {
    let next: Int? = state.withLock { $0.waiting.popLast() }
    if let next { wakeups[next].signal() }
  }

  /// CLOCK_MONOTONIC in nanoseconds (the vDSO's: no system call).
  static func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
  }

  /// The connection ended: every thread stops.
  func end() {
    let all: [Int] = state.withLock { s in
      s.over = true
      defer { s.waiting = [] }
      return s.waiting
    }
    for i in all { wakeups[i].signal() }
  }

  var isOver: Bool { state.withLock { $0.over } }

  /// Until the session ends: every ``stuckAfter``, hands the connection on if the holder is
  /// still answering the request it answered last time.
  func watch() {
    var last: (holder: Int, progress: UInt64) = (-1, 0)
    while !isOver {
      Thread.sleep(forTimeInterval: Self.stuckAfter)
      let h = holder.load(ordering: .relaxed)
      let p = h >= 0 ? progress[h].value.load(ordering: .relaxed) : 0
      if h >= 0 && p & 1 == 1 && (h, p) == last { handOn(from: h) }
      last = (h, p)
    }
  }
}
