/// The host kernel's message buffer: what `dmesg` prints.
///
/// Each line carries the time it was logged on the kernel's clock, printed as dmesg does:
/// `[   12.345678] vfio_ap_mdev 62177883-...: Userspace may not assign queue 05.0004 ...`.
///
/// Like the kernel's printk ring (`kernel/printk/printk.c`), it is bounded in bytes, not lines:
/// `log_buf_len` bytes of text (``capacity``, 2^17 as with Debian's `CONFIG_LOG_BUF_SHIFT=17`)
/// and, as the ring's descriptor array holds one record per 32 bytes on average
/// (`PRB_AVGBITS`), at most `capacity / 32` lines. The oldest lines fall out first. Lines are
/// numbered from 0 as printk numbers its records (`seq`), so that a reader (the daemon's dmesg
/// file, a `/dev/kmsg` reader) can ask for what is new since it last looked, and learn how many
/// lines it missed, without formatting or copying the rest.
public struct KernelLog: Sendable {
  public struct Line: Hashable, Sendable {
    /// Nanoseconds since boot.
    public var time: UInt64
    public var text: String
    /// The line's sequence number: 0 for the first line since boot.
    public var seq: UInt64

    /// The line as `dmesg` prints it, with its newline: `[   12.345678] text`.
    public var formatted: String {
      let sec = String(time / 1_000_000_000)
      let usec = String(time % 1_000_000_000 / 1000)
      let s = String(repeating: " ", count: max(0, 5 - sec.count)) + sec
      let u = String(repeating: "0", count: max(0, 6 - usec.count)) + usec
      return "[\(s).\(u)] \(text)\n"
    }
  }

  /// What a reader following the log gets: the lines from its position on, how many lines it
  /// missed (fell out of the ring before it read them), and the position to ask for next.
  public struct Follow: Sendable {
    public var lines: [Line]
    public var missed: UInt64
    public var next: UInt64
  }

  /// The text bytes kept at most (`log_buf_len`). Lowering it drops the oldest lines at once.
  public var capacity: Int {
    didSet { trim() }
  }
  /// The bytes of text (UTF-8, without the newline) of the lines kept.
  public private(set) var byteCount = 0
  private var ring = SequenceRing<Entry>()

  struct Entry: Sendable {
    var time: UInt64
    var text: String
  }

  /// 2^17 bytes: `CONFIG_LOG_BUF_SHIFT=17`.
  public static let defaultCapacity = 1 << 17

  public init(capacity: Int = KernelLog.defaultCapacity) {
    self.capacity = capacity
  }

  /// The most lines kept: one per 32 bytes of capacity, as the printk ring's descriptors.
  public var lineCapacity: Int { max(1, capacity / 32) }

  public mutating func append(_ text: String, at time: UInt64) {
    // The line count's bound is kept before the line comes, so that the ring keeps no slot
    // beyond it.
    while ring.count >= lineCapacity { byteCount -= ring.removeOldest()?.text.utf8.count ?? 0 }
    ring.append(Entry(time: time, text: text))
    byteCount += text.utf8.count
    trim()
  }

  /// Drops the oldest lines until the text and the line count fit. A single line longer than the
  /// whole ring is kept alone (printk would truncate it; this log keeps messages intact).
  private mutating func trim() {
    while ring.count > 1 && (byteCount > capacity || ring.count > lineCapacity) {
      if let e = ring.removeOldest() { byteCount -= e.text.utf8.count }
    }
  }

  /// The sequence number of the oldest line kept.
  public var firstSeq: UInt64 { ring.firstSeq }
  /// The sequence number the next line gets: lines `from: nextSeq` are the ones logged later.
  public var nextSeq: UInt64 { ring.nextSeq }
  /// How many lines are kept.
  public var count: Int { ring.count }

  /// The lines kept, oldest first.
  public var lines: [Line] { ring.kept.map(Self.line) }

  /// The lines numbered `seq` or later still kept, and how many from `seq` on are gone.
  public func lines(from seq: UInt64) -> Follow {
    let f = ring.records(from: seq)
    return Follow(lines: f.records.map(Self.line), missed: f.missed, next: f.next)
  }

  /// The messages logged at or after `seq` and still kept, oldest first.
  public func messages(from seq: UInt64) -> [String] { ring.records(from: seq).records.map(\.element.text) }

  static func line(_ r: SequenceRing<Entry>.Record) -> Line {
    Line(time: r.element.time, text: r.element.text, seq: r.seq)
  }

  /// The messages only, oldest first.
  public var messages: [String] { ring.kept.map(\.element.text) }

  /// The log as `dmesg` prints it: every line kept.
  public var dmesgText: String { ring.kept.map { Self.line($0).formatted }.joined() }
}

/// A kobject uevent, as udev would receive it.
public struct UEvent: Hashable, Sendable {
  public enum Action: String, Sendable { case add, remove, change, move, online, offline, bind, unbind }
  public var action: Action
  /// The device path below `/sys`, `/devices/ap/card05`.
  public var devpath: String
  public var environment: [String]
  /// `SUBSYSTEM`, as `kobject_uevent_env` names the event: the device's bus, or `bus` and
  /// `drivers` for a bus's and a driver's own kobject.
  public var subsystem: String

  /// An event of `devpath`, whose subsystem is the one of its place in the tree unless given.
  public init(_ action: Action, _ devpath: String, _ environment: [String] = [], subsystem: String? = nil) {
    self.action = action
    self.devpath = devpath
    self.environment = environment
    self.subsystem = subsystem ?? Self.subsystem(of: devpath)
  }

  /// The subsystem of what the emulated kernel sends uevents for: AP devices and the AP root
  /// device (whose bus is set to the AP bus) are `ap`, the matrix device `matrix`, its mdevs
  /// `mdev`, `/bus/X` is `bus` and `/bus/X/drivers/Y` is `drivers`. Anything else has none
  /// (empty), and the kernel would drop its events.
  public static func subsystem(of devpath: String) -> String {
    let parts = devpath.split(separator: "/")
    if parts.count == 2 && parts[0] == "bus" { return "bus" }
    if parts.count == 4 && parts[0] == "bus" && parts[2] == "drivers" { return "drivers" }
    guard parts.count >= 2, parts[0] == "devices" else { return "" }
    switch parts[1] {
    case "ap": return "ap"
    case "vfio_ap" where parts.count == 3 && parts[2] == "matrix": return "matrix"
    case "vfio_ap" where parts.count == 4 && parts[2] == "matrix": return "mdev"
    default: return ""
    }
  }
}

/// The uevents the kernel sent, numbered as `kobject_uevent_env` numbers them (`SEQNUM`, from
/// `uevent_seqnum`, 1 for the first), of which the newest ``capacity`` are kept.
///
/// The kernel keeps no record: it broadcasts each uevent on netlink, and a listener that does not
/// read in time loses the overflow (`ENOBUFS`) and sees a gap in `SEQNUM`. This ring is what a
/// broadcaster can follow in the same way: ``events(after:)`` gives the events after the last
/// `SEQNUM` it sent and says how many it missed. The default of 4096 events is more than a
/// listener's default socket buffer (`rmem_default`, 208 KiB, each event costing a socket buffer
/// of its own) holds, so a broadcaster that follows the ring after every store loses no event a
/// real listener could have received. It holds the 513 uevents of an apmask flip of a
/// 256-domain adapter eight times over, in about a megabyte.
///
/// An AP device's event is kept as its parts (``APDeviceUEventVariables``) and put into words
/// when it is read: most of a boot's events fall out of the ring unread, and one that is read
/// reads exactly as it would have been built when it was sent.
///
/// Tests read it as a collection of the kept events, oldest first.
public struct UEventRing: Sendable, RandomAccessCollection {
  public typealias Record = SequenceRing<UEvent>.Record

  /// A kept event: built whole, or an AP device's event as its parts.
  enum Entry: Sendable {
    case event(UEvent)
    case apDevice(UEvent.Action, APDevicePath, APDeviceUEventVariables)

    var event: UEvent {
      switch self {
      case .event(let e): e
      case .apDevice(let action, let device, let variables):
        UEvent(action, device.string, variables.strings, subsystem: "ap")
      }
    }
  }

  /// What a follower gets: the events after its `SEQNUM`, how many it missed, and the last
  /// `SEQNUM` sent so far (what to pass next time).
  public struct Follow: Sendable {
    public var events: [Record]
    public var missed: UInt64
    public var lastSeqnum: UInt64
  }

  private var ring = SequenceRing<Entry>(firstSeq: 1)
  /// The events kept at most. Lowering it drops the oldest at once.
  public var capacity: Int {
    didSet { trim() }
  }

  public init(capacity: Int = 4096) {
    self.capacity = capacity
  }

  /// Records `event` and returns its `SEQNUM`.
  @discardableResult
  mutating func send(_ event: UEvent) -> UInt64 { send(.event(event)) }

  /// Records the event of the AP device `device` (subsystem `ap`) with its `dev_uevent`
  /// variables, and returns its `SEQNUM`.
  @discardableResult
  mutating func send(
    _ action: UEvent.Action, apDevice device: APDevicePath, _ variables: APDeviceUEventVariables
  )
    -> UInt64
  {
    send(.apDevice(action, device, variables))
  }

  private mutating func send(_ entry: Entry) -> UInt64 {
    // The oldest goes before the newest comes, so that the ring never holds more than
    // `capacity` events, nor keeps slots for more.
    guard capacity > 0 else {
      ring.skip()
      return lastSeqnum
    }
    while ring.count >= capacity { ring.removeOldest() }
    return ring.append(entry)
  }

  /// Numbers an event without keeping it (recording is off).
  mutating func sendUnrecorded() { ring.skip() }

  private mutating func trim() {
    while ring.count > Swift.max(0, capacity) { ring.removeOldest() }
  }

  /// The `SEQNUM` of the newest event sent (0 before the first).
  public var lastSeqnum: UInt64 { ring.nextSeq - 1 }

  /// The events with a `SEQNUM` greater than `seqnum` still kept, and how many of those sent
  /// after `seqnum` are gone (dropped from the ring, or sent while recording was off).
  public func events(after seqnum: UInt64) -> Follow {
    let f = ring.records(from: seqnum + 1)
    return Follow(
      events: f.records.map { Record(seq: $0.seq, element: $0.element.event) }, missed: f.missed,
      lastSeqnum: f.next - 1)
  }

  public var startIndex: Int { 0 }
  public var endIndex: Int { ring.count }
  public subscript(position: Int) -> UEvent { ring.kept[ring.kept.startIndex + position].element.event }
}
