import Foundation

/// A device event as udevd re-broadcasts it to libudev listeners: the wire format of systemd's
/// `device_monitor_send_device` (src/libsystemd/sd-device/device-monitor.c), which libvirt's
/// node-device driver, `udevadm monitor --udev` and every other libudev monitor receive on
/// `NETLINK_KOBJECT_UEVENT` multicast group 2.
///
/// A 40-byte header, then the properties as `KEY=value` strings each ending in NUL:
///
/// | offset | field | byte order |
/// | --- | --- | --- |
/// | 0 | `"libudev\0"` | |
/// | 8 | magic `0xfeedcafe` | big endian (socket filters read it) |
/// | 12 | header size (40) | host |
/// | 16 | properties offset (40) | host |
/// | 20 | properties length | host |
/// | 24 | MurmurHash2 of `SUBSYSTEM` | big endian |
/// | 28 | MurmurHash2 of `DEVTYPE`, or 0 | big endian |
/// | 32 | tag bloom filter, high and low words (no tags: 0) | big endian |
///
/// A receiver drops a message that does not carry `ACTION`, `DEVPATH`, `SUBSYSTEM` and a
/// non-zero `SEQNUM`, and one whose sender is not root.
struct UdevMessage: Equatable {
  /// The properties in order: `ACTION`, `DEVPATH`, `SUBSYSTEM` first, `SEQNUM` among them.
  var properties: [(String, String)]

  static func == (a: UdevMessage, b: UdevMessage) -> Bool {
    a.properties.map { "\($0.0)=\($0.1)" } == b.properties.map { "\($0.0)=\($0.1)" }
  }

  static let magic: UInt32 = 0xfeed_cafe
  static let headerSize = 40

  func value(_ key: String) -> String? { properties.first { $0.0 == key }?.1 }

  /// The message's bytes.
  var bytes: [UInt8] {
    var props: [UInt8] = []
    for (k, v) in properties {
      props += Array(k.utf8) + [UInt8(ascii: "=")] + Array(v.utf8) + [0]
    }
    var out = Array("libudev".utf8) + [0]
    func host32(_ v: UInt32) { withUnsafeBytes(of: v) { out += $0 } }
    func big32(_ v: UInt32) { withUnsafeBytes(of: v.bigEndian) { out += $0 } }
    big32(Self.magic)
    host32(UInt32(Self.headerSize))
    host32(UInt32(Self.headerSize))
    host32(UInt32(props.count))
    big32(Self.murmurHash2(Array((value("SUBSYSTEM") ?? "").utf8)))
    big32(value("DEVTYPE").map { Self.murmurHash2(Array($0.utf8)) } ?? 0)
    big32(0)
    big32(0)
    return out + props
  }

  /// Reads a message back (what a libudev receiver checks: prefix, magic, offsets), or nil.
  init?(bytes: [UInt8]) {
    guard bytes.count >= Self.headerSize, Array(bytes[0..<8]) == Array("libudev".utf8) + [0] else {
      return nil
    }
    // In the host's byte order, as written.
    func word(_ at: Int) -> UInt32 {
      bytes[at..<(at + 4)].withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }
    }
    guard UInt32(bigEndian: word(8)) == Self.magic else { return nil }
    let off = Int(word(16))
    let len = Int(word(20))
    guard off + 32 <= bytes.count, off + len <= bytes.count else { return nil }
    var props: [(String, String)] = []
    for item in bytes[off..<(off + len)].split(separator: 0) {
      let s = String(decoding: item, as: UTF8.self)
      guard let eq = s.firstIndex(of: "=") else { return nil }
      props.append((String(s[..<eq]), String(s[s.index(after: eq)...])))
    }
    properties = props
  }

  init(properties: [(String, String)]) { self.properties = properties }

  /// Austin Appleby's MurmurHash2 (32 bits, seed 0), the hash systemd puts in the header for the
  /// listeners' socket filters. systemd reads the data's words in the host's byte order; this
  /// reads them little endian, the order of the hosts apvirt runs on (x86_64, aarch64).
  static func murmurHash2(_ data: [UInt8], seed: UInt32 = 0) -> UInt32 {
    let m: UInt32 = 0x5bd1_e995
    var h = seed ^ UInt32(truncatingIfNeeded: data.count)
    var i = 0
    while i + 4 <= data.count {
      var k =
        UInt32(data[i]) | UInt32(data[i + 1]) << 8 | UInt32(data[i + 2]) << 16 | UInt32(data[i + 3]) << 24
      k = k &* m
      k ^= k >> 24
      k = k &* m
      h = h &* m
      h ^= k
      i += 4
    }
    let rest = data.count - i
    if rest == 3 { h ^= UInt32(data[i + 2]) << 16 }
    if rest >= 2 { h ^= UInt32(data[i + 1]) << 8 }
    if rest >= 1 {
      h ^= UInt32(data[i])
      h = h &* m
    }
    h ^= h >> 13
    h = h &* m
    h ^= h >> 15
    return h
  }

  /// The message udevd sends for a kernel uevent: the kernel's `ACTION`, `DEVPATH`, `SUBSYSTEM`,
  /// the event's variables as the kernel recorded them (the caller's, then the device's own),
  /// `SEQNUM`, and udevd's `USEC_INITIALIZED`. A key given twice keeps its first value.
  static func forUEvent(
    action: String, devpath: String, subsystem: String, environment: [String],
    seqnum: UInt64, usecInitialized: UInt64
  ) -> UdevMessage? {
    // An event without a subsystem is one `kobject_uevent_env` drops.
    guard !subsystem.isEmpty else { return nil }
    var props: [(String, String)] = [("ACTION", action), ("DEVPATH", devpath), ("SUBSYSTEM", subsystem)]
    var seen: Set<String> = ["ACTION", "DEVPATH", "SUBSYSTEM", "SEQNUM", "USEC_INITIALIZED"]
    for item in environment {
      guard let eq = item.firstIndex(of: "=") else { continue }
      let key = String(item[..<eq])
      guard !key.isEmpty, seen.insert(key).inserted else { continue }
      props.append((key, String(item[item.index(after: eq)...])))
    }
    props.append(("SEQNUM", String(seqnum)))
    props.append(("USEC_INITIALIZED", String(usecInitialized)))
    return UdevMessage(properties: props)
  }
}
