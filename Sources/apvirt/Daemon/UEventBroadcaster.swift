import Foundation
import HostKernel
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Sends the host's uevents as udevd would re-broadcast them, so that libudev monitors
/// (libvirt's node-device driver, `udevadm monitor --udev`) see devices come and go.
///
/// It follows the kernel's uevent ring by `SEQNUM` and sends each new event as a ``UdevMessage``
/// on `NETLINK_KOBJECT_UEVENT` multicast group 2. Such messages reach every libudev listener in
/// the network namespace, the host's own included, which is why the daemon sends them only when
/// asked (`apvirt up --udev-events`). Each carries the variables the kernel recorded when it
/// raised the event, the device's own among them.
final class UEventBroadcaster: Sendable {
  let fd: Int32
  private let sent = Mutex<UInt64>(0)
  /// How many messages went out, and how many events were missed (dropped from the ring).
  let counts = Mutex<(sent: Int, missed: UInt64)>((0, 0))

  static let netlinkKObjectUEvent: Int32 = 15
  static let udevGroup: UInt32 = 2

  struct Failure: Error, CustomStringConvertible {
    var description: String
  }

  /// Opens the netlink socket; starts after the events already sent.
  init(after seqnum: UInt64) throws(Failure) {
    let fd = socket(
      AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Self.netlinkKObjectUEvent)
    guard fd >= 0 else {
      throw Failure(description: "cannot open a uevent netlink socket: \(String(cString: strerror(errno)))")
    }
    var addr = Self.address(groups: 0)
    let rc = addr.withUnsafeMutableBytes { p in
      bind(fd, p.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(p.count))
    }
    guard rc == 0 else {
      let m = String(cString: strerror(errno))
      close(fd)
      throw Failure(description: "cannot bind the uevent netlink socket: \(m)")
    }
    self.fd = fd
    sent.withLock { $0 = seqnum }
  }

  /// `struct sockaddr_nl`: family, padding, port id (0: the kernel's choice), groups.
  static func address(groups: UInt32) -> [UInt8] {
    var a: [UInt8] = []
    withUnsafeBytes(of: UInt16(AF_NETLINK)) { a += $0 }
    a += [0, 0]
    withUnsafeBytes(of: UInt32(0)) { a += $0 }
    withUnsafeBytes(of: groups) { a += $0 }
    return a
  }

  /// Sends what the kernel raised since the last call. Safe from any thread; the host's lock is
  /// held only to copy the events.
  func flush(_ host: EmulatedHost) {
    let messages: [UdevMessage] = sent.withLock { last in
      let follow = host.withKernel { $0.uevents.events(after: last) }
      last = follow.lastSeqnum
      if follow.missed > 0 { counts.withLock { $0.missed += follow.missed } }
      let usec = UInt64(clock_gettime_monotonic_usec())
      return follow.events.compactMap { r in
        UdevMessage.forUEvent(
          action: r.element.action.rawValue, devpath: r.element.devpath, subsystem: r.element.subsystem,
          environment: r.element.environment, seqnum: r.seq, usecInitialized: usec)
      }
    }
    var destination = Self.address(groups: Self.udevGroup)
    for m in messages {
      let bytes = m.bytes
      let n = destination.withUnsafeMutableBytes { d in
        bytes.withUnsafeBytes { b in
          sendto(
            fd, b.baseAddress, b.count, Int32(MSG_NOSIGNAL),
            d.baseAddress!.assumingMemoryBound(to: sockaddr.self),
            socklen_t(d.count))
        }
      }
      // ECONNREFUSED: nobody listens on the group, which is fine.
      if n >= 0 || errno == ECONNREFUSED { counts.withLock { $0.sent += 1 } }
    }
  }

  deinit { close(fd) }
}

/// CLOCK_MONOTONIC in microseconds: what udevd stores in USEC_INITIALIZED.
func clock_gettime_monotonic_usec() -> Int {
  var t = timespec()
  clock_gettime(CLOCK_MONOTONIC, &t)
  return t.tv_sec * 1_000_000 + t.tv_nsec / 1000
}
