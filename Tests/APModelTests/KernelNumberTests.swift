import APModel
import Testing

@Suite("KernelNumber")
struct KernelNumberTests {
  // MARK: kstrtoul(buf, 0)

  @Test(
    "kstrtoul accepts decimal, 0x/0X hex, leading-0 octal, a '+' and one newline",
    arguments: [
      ("0", 0), ("5", 5), ("5\n", 5), ("+5", 5), ("+5\n", 5), ("42", 42), ("255", 255), ("256", 256),
      ("0x10", 16), ("0X10", 16), ("0xff", 255), ("0xFF", 255), ("0x0", 0), ("+0x1f\n", 31),
      ("010", 8), ("0777", 511), ("00", 0), ("0\n", 0), ("+010", 8),
      ("18446744073709551615", UInt64.max), ("0xffffffffffffffff", UInt64.max),
      ("01777777777777777777777", UInt64.max),
    ] as [(String, UInt64)])
  func kstrtoulValid(text: String, value: UInt64) throws {
    #expect(try KernelNumber.kstrtoul(text) == value)
    #expect(try KernelNumber.kstrtoul(Array(text.utf8)) == value)
  }

  @Test(
    "kstrtoul rejects everything else with EINVAL",
    arguments: [
      "", "\n", "5\n\n", "5 ", " 5", "\n5", "-5", "-0", "0x", "0X", "0x\n", "08", "09", "019", "0xg", "0x1g",
      "++5",
      "+", "+\n", "5a", "a", "x10", "5\r", "5\t", "1.0", "1,000", "0b1", "+-5", "5\n5",
    ])
  func kstrtoulInvalid(text: String) {
    #expect(throws: Errno.invalidArgument) { try KernelNumber.kstrtoul(text) }
  }

  @Test(
    "kstrtoul reports values beyond 64 bits as ERANGE",
    arguments: [
      "18446744073709551616", "99999999999999999999", "0x10000000000000000", "02000000000000000000000",
      "+18446744073709551616\n", "99999999999999999999junk",
    ])
  func kstrtoulOverflow(text: String) {
    #expect(throws: Errno.outOfRange) { try KernelNumber.kstrtoul(text) }
  }

  @Test("kstrtoul stops at a NUL, as the C string the store sees")
  func kstrtoulNUL() throws {
    #expect(try KernelNumber.kstrtoul(Array("5\0junk".utf8)) == 5)
    #expect(try KernelNumber.kstrtoul("5\0junk") == 5)
    #expect(try KernelNumber.kstrtoul("0x10\n\0\n\n") == 16)
    #expect(throws: Errno.invalidArgument) { try KernelNumber.kstrtoul("\0" + "5") }
  }

  @Test("cString cuts at the first NUL")
  func cString() {
    #expect(KernelNumber.cString(Array("ab\0cd".utf8)) == Array("ab".utf8))
    #expect(KernelNumber.cString(Array("abc".utf8)) == Array("abc".utf8))
    #expect(KernelNumber.cString([0, 1, 2]).isEmpty)
  }

  @Test("isHexDigit")
  func hexDigit() {
    for c in "0123456789abcdefABCDEF".utf8 { #expect(KernelNumber.isHexDigit(c)) }
    for c in "gGxX -+\n".utf8 { #expect(!KernelNumber.isHexDigit(c)) }
    #expect(!KernelNumber.isHexDigit(0))
  }

  // MARK: simple_strtoul(.., 0)

  @Test("simpleStrtoul reads a prefix and reports where it stopped")
  func simpleStrtoul() {
    func parse(_ s: String, at i: Int = 0) -> (UInt64, Int) {
      let r = KernelNumber.simpleStrtoul(Array(s.utf8), at: i)
      return (r.value, r.end)
    }
    #expect(parse("15,") == (15, 2))
    #expect(parse("0x1f-") == (31, 4))
    #expect(parse("0X1f") == (31, 4))
    #expect(parse("010") == (8, 3))
    #expect(parse("08") == (0, 1))
    #expect(parse("0x") == (0, 1))
    #expect(parse("0") == (0, 1))
    #expect(parse("x") == (0, 0))
    #expect(parse("") == (0, 0))
    #expect(parse("+5-7", at: 1) == (5, 2))
    #expect(parse("+", at: 1) == (0, 1))
  }

  // MARK: kstrtobool

  @Test(
    "kstrtobool: the first character decides, 'on'/'off' by the second",
    arguments: [
      ("1", true), ("y", true), ("Y", true), ("t", true), ("T", true), ("yes", true), ("true\n", true),
      ("1junk", true), ("on", true), ("ON", true), ("oN\n", true),
      ("0", false), ("n", false), ("N", false), ("f", false), ("F", false), ("no", false), ("false", false),
      ("0\n", false), ("off", false), ("OFF", false), ("of", false),
    ])
  func kstrtoboolValid(text: String, value: Bool) throws {
    #expect(try KernelNumber.kstrtobool(Array(text.utf8)) == value)
  }

  @Test(
    "kstrtobool rejects the rest",
    arguments: ["", "\n", "2", " 1", "o", "o\n", "ox", "x", "-1", "+1", "\0" + "1"])
  func kstrtoboolInvalid(text: String) {
    #expect(throws: Errno.invalidArgument) { try KernelNumber.kstrtobool(Array(text.utf8)) }
  }

  // MARK: sscanf "%i" / "%d"

  @Test(
    "scanInt is sscanf(\"%i\"): white space, '-', base 0, trailing text ignored",
    arguments: [
      ("5", 5), ("5\n", 5), (" 5", 5), ("\t\n 7", 7), ("5junk", 5), ("5 6", 5), ("-1", -1), ("-0x10", -16),
      ("0x10", 16), ("0X10", 16), ("010", 8), ("08", 0), ("0", 0), ("0xg", 0), ("2147483647", 2_147_483_647),
      ("2147483648", -2_147_483_648), ("4294967297", 1), ("5\0" + "9", 5),
    ] as [(String, Int32)])
  func scanIntValid(text: String, value: Int32) {
    #expect(KernelNumber.scanInt(Array(text.utf8)) == value)
  }

  @Test(
    "scanInt finds no number",
    arguments: ["", "\n", " ", "x", "-", "--5", "- 5", "junk5", "+5", "+0x10", "\0" + "5"])
  func scanIntNone(text: String) {
    #expect(KernelNumber.scanInt(Array(text.utf8)) == nil)
  }

  @Test("scanInt base 10 only (\"%d\")")
  func scanIntDecimal() {
    #expect(KernelNumber.scanInt(Array("010".utf8), base10Only: true) == 10)
    #expect(KernelNumber.scanInt(Array("0x10".utf8), base10Only: true) == 0)
    #expect(KernelNumber.scanInt(Array(" 30\n".utf8), base10Only: true) == 30)
    #expect(KernelNumber.scanInt(Array("-7".utf8), base10Only: true) == -7)
    #expect(KernelNumber.scanInt(Array("a".utf8), base10Only: true) == nil)
    #expect(KernelNumber.scanInt(Array("+7".utf8), base10Only: true) == nil)
  }
}
