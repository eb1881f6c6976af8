#if canImport(Glibc)
  import Glibc
#endif

/// QEMU's JSON parser (`qobject/json-parser.c`): recursive descent over one message's tokens,
/// building a ``QMPValue`` (object members in the order received).
///
/// Only the first error counts (`parse_error` keeps it), and its text is QEMU's,
/// `JSON parse error, <what>`. Integers are int64 when they fit, else uint64 when positive and
/// they fit (QNUM_U64), else doubles (`parse_literal`); duplicate keys are refused.
struct JSONParser {
  let tokens: [JSONStreamer.Token]
  let text: [UInt8]
  var position = 0
  /// The first error's message (after `JSON parse error, `), as bytes: QEMU prints token text
  /// into it unchecked.
  var error: [UInt8]?

  init(tokens: [JSONStreamer.Token], text: [UInt8]) {
    self.tokens = tokens
    self.text = text
  }

  /// `json_parser_parse`: the value, or the first error.
  mutating func parse() -> JSONStreamServer.Received {
    let v = parseValue()
    if let error { return .invalid(QEMUText.string(Array("JSON parse error, ".utf8) + error)) }
    guard let v else { return .invalid("JSON parse error, expecting value") }
    return .value(v)
  }

  func peek() -> JSONStreamer.Token? { position < tokens.count ? tokens[position] : nil }

  mutating func pop() -> JSONStreamer.Token? {
    defer { if position < tokens.count { position += 1 } }
    return peek()
  }

  func bytes(_ t: JSONStreamer.Token) -> ArraySlice<UInt8> { text[Int(t.start)..<Int(t.end)] }

  /// `parse_error`: keeps the first message, cut to what fits QEMU's 1024-byte buffer.
  mutating func fail(_ message: some Sequence<UInt8>) {
    if error == nil { error = Array(Array(message).prefix(1023)) }
  }

  mutating func fail(_ message: String) { fail(Array(message.utf8)) }

  /// `parse_value`: dispatches on the next token without consuming a bad one.
  mutating func parseValue() -> QMPValue? {
    guard let t = peek() else {
      fail("premature EOI")
      return nil
    }
    switch t.type {
    case .lcurly: return parseObject()
    case .lsquare: return parseArray()
    case .integer, .float, .string: return parseLiteral()
    case .keyword: return parseKeyword()
    default:
      fail("expecting value")
      return nil
    }
  }

  /// `parse_object`.
  mutating func parseObject() -> QMPValue? {
    _ = pop()
    var members: [(String, QMPValue)] = []
    var keys = Set<[UInt8]>()
    guard let first = peek() else {
      fail("premature EOI")
      return nil
    }
    if first.type == .rcurly {
      _ = pop()
      return .object(members)
    }
    guard parsePair(&members, &keys) else { return nil }
    guard var t = pop() else {
      fail("premature EOI")
      return nil
    }
    while t.type != .rcurly {
      guard t.type == .comma else {
        fail("expected separator in dict")
        return nil
      }
      guard parsePair(&members, &keys) else { return nil }
      guard let n = pop() else {
        fail("premature EOI")
        return nil
      }
      t = n
    }
    return .object(members)
  }

  /// `parse_pair`: key, colon, value; a key already present is an error (after its value
  /// parsed). Keys compare as bytes, as QEMU's C strings do.
  mutating func parsePair(_ members: inout [(String, QMPValue)], _ keys: inout Set<[UInt8]>) -> Bool {
    guard peek() != nil else {
      fail("premature EOI")
      return false
    }
    guard case .string(let key)? = parseValue() else {
      fail("key is not a string in object")
      return false
    }
    guard let colon = pop() else {
      fail("premature EOI")
      return false
    }
    guard colon.type == .colon else {
      fail("missing : in object pair")
      return false
    }
    guard let value = parseValue() else {
      fail("Missing value in dict")
      return false
    }
    guard keys.insert(Array(key.utf8)).inserted else {
      fail("duplicate key")
      return false
    }
    members.append((key, value))
    return true
  }

  /// `parse_array`.
  mutating func parseArray() -> QMPValue? {
    _ = pop()
    var items: [QMPValue] = []
    guard let first = peek() else {
      fail("premature EOI")
      return nil
    }
    if first.type == .rsquare {
      _ = pop()
      return .array(items)
    }
    guard let v = parseValue() else {
      fail("expecting value")
      return nil
    }
    items.append(v)
    guard var t = pop() else {
      fail("premature EOI")
      return nil
    }
    while t.type != .rsquare {
      guard t.type == .comma else {
        fail("expected separator in list")
        return nil
      }
      guard let v = parseValue() else {
        fail("expecting value")
        return nil
      }
      items.append(v)
      guard let n = pop() else {
        fail("premature EOI")
        return nil
      }
      t = n
    }
    return .array(items)
  }

  /// `parse_keyword`: the lexer passes any `[a-z]+`.
  mutating func parseKeyword() -> QMPValue? {
    let t = pop()!
    let word = bytes(t)
    if word.elementsEqual("true".utf8) { return .bool(true) }
    if word.elementsEqual("false".utf8) { return .bool(false) }
    if word.elementsEqual("null".utf8) { return .null }
    fail(Array("invalid keyword '".utf8) + word + [0x27])
    return nil
  }

  /// `parse_literal`: strings, and numbers as QEMU's QNum kinds.
  mutating func parseLiteral() -> QMPValue? {
    let t = pop()!
    switch t.type {
    case .string:
      return parseString(Array(bytes(t)))
    case .integer:
      let s = String(decoding: bytes(t), as: UTF8.self)
      if let i = Int64(s) { return .int(Int(i)) }
      if !s.hasPrefix("-"), let u = UInt64(s) { return .uint(u) }
      return .double(Self.strtod(s))
    default:
      return .double(Self.strtod(String(decoding: bytes(t), as: UTF8.self)))
    }
  }

  /// C's `strtod`, which QEMU uses: out of range gives ±inf or a denormal, never an error.
  static func strtod(_ s: String) -> Double {
    s.withCString { Glibc.strtod($0, nil) }
  }

  /// `cvt4hex`: four hex digits, or -1. Bytes past the token read as NUL, like the C string's
  /// terminator and what follows it.
  static func hex4(_ s: [UInt8], _ i: Int) -> Int {
    var cp = 0
    for k in i..<i + 4 {
      let c = k < s.count ? s[k] : 0
      switch c {
      case UInt8(ascii: "0")...UInt8(ascii: "9"): cp = cp << 4 | Int(c - UInt8(ascii: "0"))
      case UInt8(ascii: "a")...UInt8(ascii: "f"): cp = cp << 4 | Int(c - UInt8(ascii: "a") + 10)
      case UInt8(ascii: "A")...UInt8(ascii: "F"): cp = cp << 4 | Int(c - UInt8(ascii: "A") + 10)
      default: return -1
      }
    }
    return cp
  }

  /// `parse_string`: escapes (`\'` too), `\u` with surrogate pairs (`\u0000` is accepted:
  /// QEMU keeps it as modified UTF-8), and the raw bytes checked as modified UTF-8.
  mutating func parseString(_ s: [UInt8]) -> QMPValue? {
    func at(_ i: Int) -> UInt8 { i < s.count ? s[i] : 0 }
    let quote = s[0]
    var i = 1
    var out = String.UnicodeScalarView()
    while at(i) != quote {
      guard at(i) != 0 else { break }
      if at(i) == UInt8(ascii: "\\") {
        let begin = i
        i += 1
        let e = at(i)
        i += 1
        switch e {
        case UInt8(ascii: "\""): out.append("\"")
        case UInt8(ascii: "'"): out.append("'")
        case UInt8(ascii: "\\"): out.append("\\")
        case UInt8(ascii: "/"): out.append("/")
        case UInt8(ascii: "b"): out.append("\u{08}")
        case UInt8(ascii: "f"): out.append("\u{0C}")
        case UInt8(ascii: "n"): out.append("\n")
        case UInt8(ascii: "r"): out.append("\r")
        case UInt8(ascii: "t"): out.append("\t")
        case UInt8(ascii: "u"):
          var cp = Self.hex4(s, i)
          i += 4
          if cp >= 0xD800 && cp <= 0xDBFF && at(i) == UInt8(ascii: "\\") && at(i + 1) == UInt8(ascii: "u") {
            cp = 0x10000 + ((cp & 0x3FF) << 10)
            let trailing = Self.hex4(s, i + 2)
            if trailing >= 0xDC00 && trailing <= 0xDFFF {
              cp |= trailing & 0x3FF
              i += 6
            } else {
              cp = -1
            }
          }
          guard QEMUText.isValidCodepoint(cp), let scalar = Unicode.Scalar(UInt32(cp)) else {
            // `%.*s` of the escape: stops at the string's end (its NUL).
            let escape = (begin..<i).lazy.map { at($0) }.prefix { $0 != 0 }
            fail(Array(escape) + Array(" is not a valid Unicode character".utf8))
            return nil
          }
          out.append(scalar)
        default:
          fail("invalid escape sequence in string")
          return nil
        }
      } else {
        let (cp, end) = QEMUText.codepoint(s, at: i)
        guard cp >= 0, let scalar = Unicode.Scalar(UInt32(cp)) else {
          fail("invalid UTF-8 sequence in string")
          return nil
        }
        out.append(scalar)
        i = end
      }
    }
    return .string(String(out))
  }
}

/// QEMU's view of text (`util/unicode.c`): modified UTF-8 (U+0000 may be written C0 80), and
/// byte strings that end at their first NUL, as C strings do.
enum QEMUText {
  /// `mod_utf8_codepoint`: the code point at `i` (-1 if invalid) and where the sequence ends.
  /// Noncharacters, surrogates, overlong forms (except C0 80) and values past U+10FFFF are
  /// invalid.
  static func codepoint(_ s: [UInt8], at i: Int, limit n: Int = 6) -> (Int, Int) {
    func at(_ k: Int) -> UInt8 { k < s.count ? s[k] : 0 }
    let first = at(i)
    guard first != 0 else { return (-1, i) }
    var p = i + 1
    if first < 0x80 { return (Int(first), p) }
    if first >= 0xFE || first & 0x40 == 0 { return (-1, p) }
    var length = 0
    var mask: UInt8 = 0x80
    while first & mask != 0 {
      length += 1
      mask >>= 1
    }
    var cp = Int(first & (mask &- 1))
    for k in 1..<length {
      let b = k < n ? at(p) : 0
      guard b & 0xC0 == 0x80 else { return (-1, p) }
      p += 1
      cp = cp << 6 | Int(b & 0x3F)
    }
    let minimum = [0x80, 0x800, 0x10000, 0x20_0000, 0x400_0000][length - 2]
    if cp > 0x10FFFF || !isValidCodepoint(cp) || (cp < minimum && !(cp == 0 && length == 2)) {
      return (-1, p)
    }
    return (cp, p)
  }

  /// What `mod_utf8_encode` accepts: U+0000...U+10FFFF without surrogates and noncharacters.
  static func isValidCodepoint(_ cp: Int) -> Bool {
    if cp < 0 || cp > 0x10FFFF { return false }
    if (cp >= 0xFDD0 && cp <= 0xFDEF) || cp & 0xFFFE == 0xFFFE { return false }
    return !(cp >= 0xD800 && cp <= 0xDFFF)
  }

  /// Bytes as QEMU's JSON writer would print them (`quoted_str`): up to the first NUL, each
  /// invalid sequence one U+FFFD.
  static func string(_ bytes: [UInt8]) -> String {
    var out = String.UnicodeScalarView()
    var i = 0
    while i < bytes.count && bytes[i] != 0 {
      let (cp, end) = codepoint(bytes, at: i)
      out.append(cp >= 0 ? Unicode.Scalar(UInt32(cp))! : "\u{FFFD}")
      i = end
    }
    return String(out)
  }
}
