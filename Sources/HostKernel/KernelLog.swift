/// The host kernel's message buffer: what `dmesg` prints.
///
/// Each line carries the time it was logged on the kernel's clock, printed as dmesg does:
/// `[   12.345678] vfio_ap_mdev 62177883-...: Userspace may not assign queue 05.0004 ...`.
public struct KernelLog: Sendable {
  public struct Line: Hashable, Sendable {
    /// Nanoseconds since boot.
    public var time: UInt64
    public var text: String
  }

  public private(set) var lines: [Line] = []
  /// The most lines kept; older ones fall out like a ring buffer's.
  public var capacity = 100_000

  public init() {}

  public mutating func append(_ text: String, at time: UInt64) {
    lines.append(Line(time: time, text: text))
    // Drop the oldest tenth at once, so that a full log does not shift every line per message.
    if lines.count > capacity { lines.removeFirst(lines.count - capacity * 9 / 10) }
  }

  /// The messages only, oldest first.
  public var messages: [String] { lines.map(\.text) }

  /// The log as `dmesg` prints it.
  public var dmesgText: String {
    lines.map { line in
      let sec = String(line.time / 1_000_000_000)
      let usec = String(line.time % 1_000_000_000 / 1000)
      let s = String(repeating: " ", count: max(0, 5 - sec.count)) + sec
      let u = String(repeating: "0", count: max(0, 6 - usec.count)) + usec
      return "[\(s).\(u)] \(line.text)\n"
    }.joined()
  }
}

/// A kobject uevent, as udev would receive it.
public struct UEvent: Hashable, Sendable {
  public enum Action: String, Sendable { case add, remove, change, bind, unbind }
  public var action: Action
  /// The device path below `/sys`, `/devices/ap/card05`.
  public var devpath: String
  public var environment: [String]

  public init(_ action: Action, _ devpath: String, _ environment: [String] = []) {
    self.action = action
    self.devpath = devpath
    self.environment = environment
  }
}
