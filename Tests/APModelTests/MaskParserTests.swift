import APModel
import Testing

@Suite("MaskParser")
struct MaskParserTests {
  func parse(_ text: String, _ current: APMask = .empty) throws(Errno) -> APMask {
    try MaskParser.parse(text, current: current)
  }

  // MARK: Absolute

  @Test(
    "absolute hex fills bits from bit 0 on, left-aligned",
    arguments: [
      ("0x41", [1, 7]), ("41", [1, 7]), ("x41", [1, 7]), ("0x4", [1]), ("4", [1]), ("0x8", [0]), ("0x1", [3]),
      ("0xAB", [0, 2, 4, 6, 7]), ("0xab", [0, 2, 4, 6, 7]), ("0x41\n", [1, 7]), ("0x0", []), ("0", []),
      ("0x", []), ("x", []), ("\n", []), ("", []), ("0x\n", []), ("0x00000000000000008", [64]),
      ("0x8" + String(repeating: "0", count: 62) + "1", [0, 255]), ("0xffff", Array(0...15)),
    ] as [(String, [Int])])
  func absolute(text: String, bits: [Int]) throws {
    #expect(try parse(text) == APMask(bits))
    // The current mask does not matter: absolute starts from an empty mask.
    #expect(try parse(text, .all()) == APMask(bits))
  }

  @Test("64 hex digits fill the whole mask; with or without a prefix")
  func sixtyFourDigits() throws {
    let f64 = String(repeating: "f", count: 64)
    #expect(try parse(f64) == .all())
    #expect(try parse("0x" + f64) == .all())
    #expect(try parse("x" + f64 + "\n") == .all())
    #expect(try parse("0x" + String(repeating: "F", count: 64)) == .all())
  }

  @Test(
    "absolute syntax errors are EINVAL",
    arguments: [
      "0X41", "0X", "0x41\n\n", "\n\n", "0xg", "g", "0x41 ", " 0x41", "0x41,", "xx41", "0xx41", "00x41",
      "0x" + String(repeating: "f", count: 65), String(repeating: "0", count: 65), "0x4\n1", "0x41\r\n",
    ])
  func absoluteInvalid(text: String) {
    #expect(throws: Errno.invalidArgument) { try parse(text) }
  }

  @Test("hexString round-trips")
  func roundTrip() throws {
    for m in [
      APMask.empty, APMask([0]), APMask([255]), APMask([1, 7, 64, 128, 200]), .all(through: 84), .all(),
    ] {
      #expect(try parse(m.hexString) == m)
      #expect(try parse(m.hexString + "\n", APMask([3])) == m)
    }
  }

  // MARK: Relative

  @Test("relative terms apply left to right to a copy of the current mask")
  func relativeExamples() throws {
    #expect(try parse("+0-15,+32,-128,-0xFF", APMask([100, 128, 255])) == APMask(Array(0...15) + [32, 100]))
    #expect(try parse("+1,+2,+3,+4,-5,-7-10", .empty) == APMask([1, 2, 3, 4]))
    #expect(
      try parse("+1,+2,+3,+4,-5,-7-10", .all()) == APMask.all().subtracting(APMask([5, 7, 8, 9, 10])))
    #expect(try parse("-0-255,+1-16", .all()) == APMask(1...16))
    #expect(try parse("+5-5", .empty) == APMask([5]))
    #expect(try parse("-5-7", APMask(0...9)) == APMask([0, 1, 2, 3, 4, 8, 9]))
    #expect(try parse("+0-255", .empty) == .all())
    #expect(try parse("+255", .empty) == APMask([255]))
    #expect(try parse("-3", APMask([3, 4])) == APMask([4]))
    #expect(try parse("-3", .empty) == .empty)
    #expect(try parse("+3,-3", .empty) == .empty)
    #expect(try parse("-3,+3", .empty) == APMask([3]))
    // After a range, a '-' starts the next term: +1-2 then -3.
    #expect(try parse("+1-2-3", APMask([3])) == APMask([1, 2]))
  }

  @Test("relative numbers are simple_strtoul(.., 0): decimal, 0x/0X hex, leading-0 octal")
  func relativeNumbers() throws {
    #expect(try parse("+010") == APMask([8]))
    #expect(try parse("+0x10") == APMask([16]))
    #expect(try parse("+0X10") == APMask([16]))
    #expect(try parse("+0") == APMask([0]))
    #expect(try parse("+0x0a-0x0b") == APMask([10, 11]))
    #expect(try parse("+07-010") == APMask([7, 8]))
  }

  @Test("runs of ',' and newline separate terms")
  func relativeSeparators() throws {
    #expect(try parse("+5,\n,+6") == APMask([5, 6]))
    #expect(try parse("+5,+6\n") == APMask([5, 6]))
    #expect(try parse("+5\n+6") == APMask([5, 6]))
    #expect(try parse("+5,,,") == APMask([5]))
    #expect(try parse("+5\n\n") == APMask([5]))
    #expect(try parse("+5-6,\n") == APMask([5, 6]))
  }

  @Test(
    "relative syntax errors are EINVAL",
    arguments: [
      "-0-255,+1-16,+0x128",  // 0x128 = 296
      "+5 ,+6", "+5, +6", "+5;+6", "+", "-", "+\n", "+5-3", "+256", "+0-256", "+0x100", "+5-", "+5-x", "+x",
      "+-5", "++5", "+08", "+0x", "+5,6", "+5,,x", "+5 ", "+0400",
    ])
  func relativeInvalid(text: String) {
    #expect(throws: Errno.invalidArgument) { try parse(text, APMask([42])) }
  }

  @Test("bytes after a NUL are ignored")
  func nul() throws {
    #expect(try MaskParser.parse(Array("0x41\0junk".utf8), current: .empty) == APMask([1, 7]))
    #expect(try MaskParser.parse(Array("+5\0junk".utf8), current: .empty) == APMask([5]))
    #expect(try MaskParser.parse(Array("\0+5".utf8), current: APMask([1])) == .empty)
  }

  @Test("errors are EINVAL (not ERANGE) even for huge numbers")
  func hugeRelative() {
    #expect(throws: Errno.invalidArgument) { try parse("+99999999999999999999999") }
    #expect(throws: Errno.invalidArgument) { try parse("+0-99999999999999999999999") }
  }
}
