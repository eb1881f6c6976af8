import Foundation
import Machine
import Synchronization
import Sysfs
import SystemPackage

/// The emulated host as a shared, thread-safe service: one ``HostKernel`` behind one lock.
///
/// Every entry point (a FUSE thread's sysfs write, a QMP session's vfio call, the scan timer)
/// takes the lock, runs the kernel to completion, and then, outside the lock, delivers the
/// signals the kernel raised (eventfd writes to VMMs), so that a VMM reacting to a signal can
/// call back in. A `remove` of an mdev that a VMM holds open waits with the lock released, as the
/// kernel waits holding nothing, and repeats its request to the VMM about every 10 seconds.
public final class EmulatedHost: Sendable {
  @usableFromInline let kernel: Mutex<HostKernel>
  /// Wakes a blocked `remove` when a device is closed; `releases` counts the closes, so that a
  /// close between the kernel's answer and the wait is not missed. A store reads the count
  /// without the condition's lock (every store does; only a blocked one waits); a close adds to
  /// it under the lock, so a waiter that checks it under the lock misses no close.
  private let released = NSCondition()
  private let releases = Atomic<Int>(0)
  /// How long a blocked `remove` waits between two requests to the VMM.
  public let requestInterval: Duration

  public init(kernel: sending HostKernel, requestInterval: Duration = .seconds(10)) {
    self.kernel = Mutex(kernel)
    self.requestInterval = requestInterval
  }

  public convenience init(definition: MachineDefinition = .embeddedDefault) {
    self.init(kernel: HostKernel(definition: definition))
  }

  /// Runs `body` on the kernel under the lock, then delivers the signals it raised. Inlinable,
  /// so that a caller in another module (a FUSE request) runs it specialized for its types.
  @inlinable
  public func withKernel<T: Sendable, E: Error>(_ body: (HostKernel) throws(E) -> T) throws(E) -> T {
    // Nil when none were raised, as for nearly every entry: then no array is passed out.
    var signals: [@Sendable () -> Void]? = nil
    let result: Result<T, E> = kernel.withLock { k in
      defer { signals = k.takePendingSignals() }
      do throws(E) {
        return .success(try body(k))
      } catch {
        return .failure(error)
      }
    }
    if let signals { for s in signals { s() } }
    return try result.get()
  }

  /// Reads a sysfs attribute.
  public func read(_ path: String) throws(Errno) -> [UInt8] {
    try withKernel { (k) throws(Errno) in try k.sysfs.read(path) }
  }

  /// Writes a sysfs attribute. A write that the kernel would block (an open mdev's `remove`)
  /// waits here, without the lock, until the VMM releases the device.
  @discardableResult
  public func write(_ path: String, _ bytes: [UInt8]) throws(Errno) -> Int {
    try store(
      bytes, { (k) throws(Errno) in try k.sysfs.write(path, bytes) }, beforeWaiting: {}, then: { _ in }
    )
    .get()
  }

  /// Writes a sysfs attribute node (resolved once, as a FUSE LOOKUP resolves it), as
  /// ``write(_:_:)`` writes a path: a blocked write waits the same way. Then runs `then` on the
  /// kernel in the same hold of the lock (to take what the store removed, to look whether it
  /// logged), so that a FUSE WRITE takes the lock once. Not generic: the caller's closure
  /// keeps what it takes, and the store runs as compiled here, in any module. A blocked store
  /// calls `beforeWaiting` before each wait (a FUSE thread lets another read meanwhile).
  public func write(
    _ node: SysfsNode, _ bytes: [UInt8], beforeWaiting: () -> Void = {}, then: (HostKernel) -> Void
  ) -> Result<Int, Errno> {
    store(
      bytes, { (k) throws(Errno) in try k.sysfs.write(node, bytes) }, beforeWaiting: beforeWaiting, then: then
    )
  }

  /// One store, repeated while the kernel blocks it (see ``write(_:_:)``), and
  /// `then` after each try, under the same hold of the lock. The first try comes before the
  /// loop: nearly every store ends with it, and then pays nothing of what a blocked one needs.
  @inline(__always)
  private func store(
    _ bytes: [UInt8], _ write: (HostKernel) throws(Errno) -> Int, beforeWaiting: () -> Void,
    then: (HostKernel) -> Void
  ) -> Result<Int, Errno> {
    let seen = releases.load(ordering: .acquiring)
    let first = attempt(write, then: then)
    guard case .failure(VFIOAPDriver.blockedUntilReleased) = first else { return first }
    beforeWaiting()
    waitForRelease(after: seen)
    while true {
      let seen = releases.load(ordering: .acquiring)
      let result = attempt(write, then: then)
      switch result {
      case .failure(.noSuchFileOrDirectory):
        // The device was released and the kernel finished the remove we were waiting for.
        return .success(bytes.count)
      case .failure(VFIOAPDriver.blockedUntilReleased):
        beforeWaiting()
        waitForRelease(after: seen)
      default:
        return result
      }
    }
  }

  /// One try of a store, and `then`, in one hold of the lock.
  @inline(__always)
  private func attempt(
    _ write: (HostKernel) throws(Errno) -> Int, then: (HostKernel) -> Void
  ) -> Result<Int, Errno> {
    withKernel { k -> Result<Int, Errno> in
      defer { then(k) }
      return Result { () throws(Errno) in try write(k) }
    }
  }

  /// Waits for a close after the `seen`th, or for the time to ask the VMM again.
  private func waitForRelease(after seen: Int) {
    let deadline = Date(timeIntervalSinceNow: requestInterval.seconds)
    released.lock()
    while releases.load(ordering: .acquiring) == seen && released.wait(until: deadline) {}
    released.unlock()
  }

  /// Closes a vfio device and wakes any `remove` waiting for it.
  public func closeDevice(uuid: String) {
    withKernel { k in
      if let m = k.vfioAP.mdev(uuid) { k.vfioAP.closeDevice(m) }
    }
    released.lock()
    releases.add(1, ordering: .releasing)
    released.broadcast()
    released.unlock()
  }
}

extension Duration {
  var seconds: Double {
    let (s, a) = components
    return Double(s) + Double(a) / 1e18
  }
}

/// Where a guest (its VMM) keeps its own kernel. That kernel runs on the host's machine, which
/// the host's lock guards, so the slot is reached only under that lock, through
/// ``EmulatedHost/withGuestKernel(_:_:)``.
public final class GuestKernelSlot: @unchecked Sendable {
  fileprivate var kernel: HostKernel?
  public init() {}
}

extension EmulatedHost {
  /// Runs `body` under the host's lock with the host's kernel and the guest's kernel in `slot`
  /// (nil before it boots and after it shuts down), which `body` may set; then delivers the
  /// signals raised.
  public func withGuestKernel<T: Sendable, E: Error>(
    _ slot: GuestKernelSlot, _ body: (HostKernel, inout HostKernel?) throws(E) -> T
  ) throws(E) -> T {
    try withKernel { (k) throws(E) -> T in try body(k, &slot.kernel) }
  }
}
