import SystemPackage

/// The kernel's number parsers, byte for byte: what a sysfs `store` callback sees.
///
/// A sysfs store gets the written bytes with a NUL after them, and C string functions stop at
/// the first NUL, so every parser here reads up to the first NUL byte (see ``cString(_:)``).
public enum KernelNumber {
  /// The bytes a C string function sees: everything before the first NUL.
  public static func cString(_ bytes: some Collection<UInt8>) -> [UInt8] {
    Array(bytes.prefix { $0 != 0 })
  }

  /// The same of an array: the array itself when it holds no NUL (what nearly every store
  /// writes), without a copy.
  public static func cString(_ bytes: [UInt8]) -> [UInt8] {
    guard let nul = bytes.firstIndex(of: 0) else { return bytes }
    return Array(bytes[..<nul])
  }

  @inlinable
  public static func isHexDigit(_ c: UInt8) -> Bool { hexValue(c) != nil }

  /// `uuid_is_valid`: 36 characters, hex digits with hyphens at 8, 13, 18 and 23. Returns the
  /// text as given, or in lower case (`%pUl` of the parsed UUID, an mdev's name), made in the
  /// same pass over the bytes; nil when it is no UUID. Inlinable, so that each caller's
  /// collection type is specialized: unspecialized, the loop's generic iterator and tuple
  /// metadata were looked up at every byte (an mdev create took twice as long).
  @inlinable
  public static func uuid(_ s: some Collection<UInt8>, lowercased: Bool) -> String? {
    guard s.count == 36 else { return nil }
    var valid = true
    let text = String(unsafeUninitializedCapacity: 36) { out in
      for (i, c) in s.enumerated() {
        if i == 8 || i == 13 || i == 18 || i == 23 {
          valid = valid && c == UInt8(ascii: "-")
          out[i] = c
        } else {
          valid = valid && isHexDigit(c)
          out[i] = lowercased && c >= UInt8(ascii: "A") && c <= UInt8(ascii: "F") ? c + 32 : c
        }
      }
      return 36
    }
    return valid ? text : nil
  }

  @usableFromInline
  static func hexValue(_ c: UInt8) -> UInt64? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt64(c - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt64(c - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt64(c - UInt8(ascii: "A") + 10)
    default: nil
    }
  }

  static func lower(_ c: UInt8) -> UInt8 { c | 0x20 }

  /// `_parse_integer_fixup_radix` for base 0: `0x` followed by a hex digit is hex (the prefix is
  /// skipped), another leading `0` octal, anything else decimal. Returns (base, index after prefix).
  static func fixupRadix(_ s: [UInt8], at i: Int) -> (UInt64, Int) {
    func at(_ k: Int) -> UInt8 { k < s.count ? s[k] : 0 }
    if at(i) == UInt8(ascii: "0") {
      if lower(at(i + 1)) == UInt8(ascii: "x") && isHexDigit(at(i + 2)) { return (16, i + 2) }
      return (8, i)
    }
    return (10, i)
  }

  /// `_parse_integer`: digits of `base` from `i`; returns the wrapped value, the index after the
  /// last digit, and whether the value overflowed 64 bits.
  static func parseDigits(_ s: [UInt8], at start: Int, base: UInt64) -> (UInt64, Int, Bool) {
    var value: UInt64 = 0
    var overflow = false
    var i = start
    while i < s.count, let d = hexValue(s[i]), d < base {
      let (m, o1) = value.multipliedReportingOverflow(by: base)
      let (r, o2) = m.addingReportingOverflow(d)
      if o1 || o2 { overflow = true }
      value = r
      i += 1
    }
    return (value, i, overflow)
  }

  /// `kstrtoul(buf, 0, &val)`: an optional `+`, a decimal, `0x`/`0X` hex or leading-`0` octal
  /// number, at most one trailing newline, nothing else. Syntax errors are `EINVAL`, values over
  /// 64 bits `ERANGE`.
  public static func kstrtoul(_ bytes: some Collection<UInt8>) throws(Errno) -> UInt64 {
    try kstrtoul(cString: cString(bytes))
  }

  /// `kstrtoul` of a store's bytes as they come (an array: see ``cString(_:)-([UInt8])``).
  public static func kstrtoul(_ bytes: [UInt8]) throws(Errno) -> UInt64 {
    try kstrtoul(cString: cString(bytes))
  }

  static func kstrtoul(cString s: [UInt8]) throws(Errno) -> UInt64 {
    var i = 0
    if i < s.count && s[i] == UInt8(ascii: "+") { i += 1 }
    let (base, start) = fixupRadix(s, at: i)
    let (value, end, overflow) = parseDigits(s, at: start, base: base)
    if overflow { throw .outOfRange }
    if end == start { throw .invalidArgument }
    var j = end
    if j < s.count && s[j] == UInt8(ascii: "\n") { j += 1 }
    if j != s.count { throw .invalidArgument }
    return value
  }

  /// `kstrtoul` on a Swift string, for tests and the CLI.
  public static func kstrtoul(_ text: String) throws(Errno) -> UInt64 {
    try kstrtoul(Array(text.utf8))
  }

  /// `simple_strtoul(s + i, &end, 0)`: never fails, wraps on overflow; `end == i` when no digit
  /// was read.
  public static func simpleStrtoul(_ s: [UInt8], at i: Int) -> (value: UInt64, end: Int) {
    let (base, start) = fixupRadix(s, at: i)
    let (value, end, _) = parseDigits(s, at: start, base: base)
    // A leading "0" is read as an octal digit, so `end == start` only when nothing was read.
    return (value, end == start ? i : end)
  }

  /// `kstrtobool`: the first character decides (`1yYtT` true, `0nNfF` false, `on`/`off`).
  public static func kstrtobool(_ bytes: some Collection<UInt8>) throws(Errno) -> Bool {
    let s = cString(bytes)
    guard let c = s.first else { throw .invalidArgument }
    switch c {
    case UInt8(ascii: "y"), UInt8(ascii: "Y"), UInt8(ascii: "1"), UInt8(ascii: "t"), UInt8(ascii: "T"):
      return true
    case UInt8(ascii: "n"), UInt8(ascii: "N"), UInt8(ascii: "0"), UInt8(ascii: "f"), UInt8(ascii: "F"):
      return false
    case UInt8(ascii: "o"), UInt8(ascii: "O"):
      if s.count > 1 {
        switch s[1] {
        case UInt8(ascii: "n"), UInt8(ascii: "N"): return true
        case UInt8(ascii: "f"), UInt8(ascii: "F"): return false
        default: break
        }
      }
      throw .invalidArgument
    default:
      throw .invalidArgument
    }
  }

  /// `sscanf(buf, "%i", &v)` (or `"%d"` with `base10Only`): skips leading white space, an
  /// optional `-` (the kernel's `vsscanf` takes no `+`), then digits; trailing text is ignored.
  /// Returns nil when no number was read (sscanf's 0 conversions). The value is truncated to 32
  /// bits like an `int`.
  public static func scanInt(_ bytes: some Collection<UInt8>, base10Only: Bool = false) -> Int32? {
    let s = cString(bytes)
    var i = 0
    while i < s.count, [9, 10, 11, 12, 13, 32].contains(s[i]) { i += 1 }
    var negative = false
    if i < s.count, s[i] == UInt8(ascii: "-") {
      negative = true
      i += 1
    }
    let base: UInt64
    let start: Int
    if base10Only {
      (base, start) = (10, i)
    } else {
      (base, start) = fixupRadix(s, at: i)
    }
    let (value, end, _) = parseDigits(s, at: start, base: base)
    if end == start { return nil }
    let v = Int32(truncatingIfNeeded: value)
    return negative ? 0 &- v : v
  }
}
