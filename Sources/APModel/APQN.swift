/// An adapter number (APID), 0...255. Plain `Int` so that mask arithmetic and loops stay simple;
/// the kernel, too, passes APIDs around as `unsigned long`.
public typealias APID = Int

/// A domain or queue index (APQI), 0...255.
public typealias APQI = Int

/// An AP queue number: one adapter and one domain, `(apid << 8) | apqi`.
///
/// Its text form is the kernel's `"%02x.%04x"`, lower case (`05.0004`); that is also the name of
/// the queue device in sysfs.
public struct APQN: Hashable, Comparable, Sendable, CustomStringConvertible {
  public var apid: APID
  public var apqi: APQI

  public init(_ apid: APID, _ apqi: APQI) {
    precondition((0...255).contains(apid) && (0...255).contains(apqi), "APQN out of range")
    self.apid = apid
    self.apqi = apqi
  }

  /// The 16-bit queue number, `(apid << 8) | apqi`.
  public var rawValue: Int { apid << 8 | apqi }

  public init(rawValue: Int) { self.init(rawValue >> 8 & 0xff, rawValue & 0xff) }

  /// `05.0004`: the seven bytes written in place (a queue's name is asked for every device the
  /// bus creates, links or removes), which Swift keeps inline as a small string.
  public var description: String {
    // The fields are mutable: out of range, the kernel's format as printf writes it.
    guard (0...255).contains(apid), (0...255).contains(apqi) else { return hex2(apid) + "." + hex4(apqi) }
    return String(unsafeUninitializedCapacity: 7) { b in
      func digit(_ v: Int) -> UInt8 { v < 10 ? 0x30 + UInt8(v) : 0x57 + UInt8(v) }
      b[0] = digit(apid >> 4)
      b[1] = digit(apid & 0xf)
      b[2] = UInt8(ascii: ".")
      b[3] = 0x30
      b[4] = 0x30
      b[5] = digit(apqi >> 4)
      b[6] = digit(apqi & 0xf)
      return 7
    }
  }

  /// The decimal form ap-check prints: `5.4`.
  public var decimal: String { "\(apid).\(apqi)" }

  public static func < (a: APQN, b: APQN) -> Bool { a.rawValue < b.rawValue }

  /// Parses `05.0004` (the sysfs queue name).
  public init?(_ text: some StringProtocol) {
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 2, let a = Int(parts[0], radix: 16), let q = Int(parts[1], radix: 16),
      (0...255).contains(a), (0...255).contains(q)
    else { return nil }
    self.init(a, q)
  }
}

/// `%02x`, lower case.
@inlinable public func hex2(_ value: Int) -> String { padHex(value, 2) }
/// `%04x`, lower case.
@inlinable public func hex4(_ value: Int) -> String { padHex(value, 4) }

@inlinable public func padHex(_ value: Int, _ width: Int, uppercase: Bool = false) -> String {
  let s = String(value, radix: 16, uppercase: uppercase)
  return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}
