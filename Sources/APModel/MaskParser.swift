import SystemPackage

/// The AP bus's mask grammar (`ap_parse_mask_str`), used by `/sys/bus/ap/apmask`, `aqmask` and
/// the three pieces of an mdev's `ap_config`.
///
/// The first character picks the mode:
/// - **relative** (`+` or `-`): `term (sep term)*` with `term := sign num ['-' num]`, applied to
///   a copy of the current mask; numbers as `simple_strtoul(.., 0)` reads them (decimal, `0x` hex,
///   leading-`0` octal); after each term any run of `,` and `\n` is skipped.
/// - **absolute** (anything else): hex digits, optionally after `0x` or `x`, filling bits from
///   bit 0 on; at most 64 digits and one trailing newline. Upper-case `0X` is rejected.
public enum MaskParser {
  /// Parses `text` against the mask it would modify. Throws `EINVAL` for any syntax error.
  public static func parse(_ bytes: some Collection<UInt8>, current: APMask) throws(Errno) -> APMask {
    let s = KernelNumber.cString(bytes)
    if let c = s.first, c == UInt8(ascii: "+") || c == UInt8(ascii: "-") {
      return try modifyBitmap(s, current)
    }
    return try hexToBitmap(s)
  }

  public static func parse(_ text: String, current: APMask) throws(Errno) -> APMask {
    try parse(Array(text.utf8), current: current)
  }

  /// The pieces of an `ap_config` write (`ap_config_store`): the first `length` bytes, cut at
  /// each `,` or newline (`strsep`), at most `count` pieces; fewer when the text runs out.
  public static func apConfigPieces(_ bytes: some Collection<UInt8>, length: Int = 201, count: Int = 3)
    -> [ArraySlice<UInt8>]
  {
    var rest: ArraySlice<UInt8>? = ArraySlice(KernelNumber.cString(Array(bytes.prefix(length))))
    var pieces: [ArraySlice<UInt8>] = []
    while pieces.count < count, let r = rest {
      if let i = r.firstIndex(where: { $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "\n") }) {
        pieces.append(r[r.startIndex..<i])
        rest = r[(i + 1)...]
      } else {
        pieces.append(r)
        rest = nil
      }
    }
    return pieces
  }

  /// `hex2bitmap`: absolute hex, left-aligned.
  public static func hexToBitmap(_ s: [UInt8]) throws(Errno) -> APMask {
    var i = 0
    func at(_ k: Int) -> UInt8 { k < s.count ? s[k] : 0 }
    if at(0) == UInt8(ascii: "0") && at(1) == UInt8(ascii: "x") { i += 1 }
    if at(i) == UInt8(ascii: "x") { i += 1 }
    var mask = APMask()
    var bit = 0
    while bit < APMask.bitCount, let d = KernelNumber.hexValue(at(i)) {
      for n in 0..<4 where d & (0x8 >> UInt64(n)) != 0 { mask.insert(bit + n) }
      bit += 4
      i += 1
    }
    if at(i) == UInt8(ascii: "\n") { i += 1 }
    if i < s.count { throw .invalidArgument }
    return mask
  }

  /// `modify_bitmap`: relative `+a[-z]` / `-a[-z]` terms.
  public static func modifyBitmap(_ s: [UInt8], _ current: APMask) throws(Errno) -> APMask {
    var mask = current
    var i = 0
    while i < s.count {
      let sign = s[i]
      i += 1
      guard sign == UInt8(ascii: "+") || sign == UInt8(ascii: "-") else { throw .invalidArgument }
      let (a, aEnd) = KernelNumber.simpleStrtoul(s, at: i)
      if aEnd == i || a >= 256 { throw .invalidArgument }
      var z = a
      i = aEnd
      if i < s.count && s[i] == UInt8(ascii: "-") {
        i += 1
        let (zz, zEnd) = KernelNumber.simpleStrtoul(s, at: i)
        if zEnd == i || a > zz || zz >= 256 { throw .invalidArgument }
        z = zz
        i = zEnd
      }
      for b in Int(a)...Int(z) { mask[b] = sign == UInt8(ascii: "+") }
      while i < s.count && (s[i] == UInt8(ascii: ",") || s[i] == UInt8(ascii: "\n")) { i += 1 }
    }
    return mask
  }
}
