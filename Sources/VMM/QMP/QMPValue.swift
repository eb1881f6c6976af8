import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A JSON value that keeps the order of object members, written the way QEMU's JSON writer
/// writes it: `{"return": {}, "id": 1}`, with a space after `:` and `,`.
///
/// Numbers are QEMU's QNum kinds: `int` (QNUM_I64), `uint` (QNUM_U64, integers above
/// Int64.max) and `double` (QNUM_DOUBLE).
public indirect enum QMPValue: Sendable, Equatable {
  case object([(String, QMPValue)])
  case array([QMPValue])
  case string(String)
  case int(Int)
  case uint(UInt64)
  case double(Double)
  case bool(Bool)
  case null

  public static func == (a: QMPValue, b: QMPValue) -> Bool { a.json == b.json }

  public static let emptyObject = QMPValue.object([])

  /// The value as QEMU prints it.
  public var json: String {
    switch self {
    case .object(let members):
      return "{" + members.map { "\(Self.quote($0.0)): \($0.1.json)" }.joined(separator: ", ") + "}"
    case .array(let items):
      return "[" + items.map(\.json).joined(separator: ", ") + "]"
    case .string(let s):
      return Self.quote(s)
    case .int(let i):
      return String(i)
    case .uint(let u):
      return String(u)
    case .double(let d):
      return Self.formatDouble(d)
    case .bool(let b):
      return b ? "true" : "false"
    case .null:
      return "null"
    }
  }

  /// `json_writer_double`: C's `%.17g` (so 0.1 is `0.10000000000000001`, 1e400 `inf`).
  static func formatDouble(_ d: Double) -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    _ = withVaList([d]) { vsnprintf(&buffer, buffer.count, "%.17g", $0) }
    return String(cString: buffer)
  }

  /// QEMU's string quoting: `"` and `\` escaped, control characters and non-ASCII as \uXXXX.
  static func quote(_ s: String) -> String {
    var out = "\""
    for u in s.utf16 {
      switch u {
      case 0x22: out += "\\\""
      case 0x5C: out += "\\\\"
      case 0x08: out += "\\b"
      case 0x0C: out += "\\f"
      case 0x0A: out += "\\n"
      case 0x0D: out += "\\r"
      case 0x09: out += "\\t"
      case 0x20..<0x7F: out.append(Character(Unicode.Scalar(u)!))
      default: out += String(format: "\\u%04X", u)
      }
    }
    return out + "\""
  }

  /// Converts what JSONSerialization parsed. Member order of parsed objects is not kept (only
  /// the `id` a client sends is ever echoed).
  public init(_ any: Any) {
    switch any {
    case let d as [String: Any]:
      self = .object(d.keys.sorted().map { ($0, QMPValue(d[$0]!)) })
    case let a as [Any]:
      self = .array(a.map { QMPValue($0) })
    case let s as String:
      self = .string(s)
    case let n as NSNumber:
      // JSONSerialization's booleans are NSNumbers of type "c", its reals "d".
      switch String(cString: n.objCType) {
      case "c": self = .bool(n.boolValue)
      case "d", "f": self = .double(n.doubleValue)
      case "Q" where n.uint64Value > UInt64(Int.max): self = .uint(n.uint64Value)
      default: self = .int(n.intValue)
      }
    case is NSNull:
      self = .null
    default:
      self = .string("\(any)")
    }
  }

  public subscript(key: String) -> QMPValue? {
    if case .object(let m) = self { return m.first { $0.0 == key }?.1 }
    return nil
  }

  public var stringValue: String? {
    if case .string(let s) = self { return s }
    return nil
  }

  /// The JSON type name QEMU uses in "expected" errors.
  var typeName: String {
    switch self {
    case .object: "object"
    case .array: "array"
    case .string: "string"
    case .int, .uint, .double: "number"
    case .bool: "boolean"
    case .null: "null"
    }
  }

  /// The value as JSONSerialization would have produced it, for code that still works on
  /// Foundation objects.
  public var foundationObject: Any {
    switch self {
    case .object(let m):
      var d: [String: Any] = [:]
      for (k, v) in m { d[k] = v.foundationObject }
      return d
    case .array(let a): return a.map(\.foundationObject)
    case .string(let s): return s
    case .int(let i): return i
    case .uint(let u): return NSNumber(value: u)
    case .double(let d): return d
    case .bool(let b): return b
    case .null: return NSNull()
    }
  }

  /// The value with every object's members in the order a QDict built from them iterates:
  /// QEMU writes dictionaries in hash-bucket order, not in the order they were received or
  /// built, so an echoed `id` object comes back reordered (`{"b": 1, "a": 2}` as
  /// `{"a": 2, "b": 1}`), and a reply's `id` goes before `error` but after `return`.
  public var qdictOrdered: QMPValue {
    switch self {
    case .object(let m): return .object(Self.qdictOrder(m.map { ($0.0, $0.1.qdictOrdered) }))
    case .array(let a): return .array(a.map(\.qdictOrdered))
    default: return self
    }
  }

  /// `qdict_put_obj` then `qdict_first`/`qdict_next`: 512 buckets by `tdb_hash`, each bucket's
  /// newest entry first; putting a key again replaces its value in place.
  static func qdictOrder(_ members: [(String, QMPValue)]) -> [(String, QMPValue)] {
    var buckets: [Int: [(String, QMPValue)]] = [:]
    for (k, v) in members {
      let b = Int(tdbHash(k) % 512)
      if let i = buckets[b]?.firstIndex(where: { Array($0.0.utf8) == Array(k.utf8) }) {
        buckets[b]![i].1 = v
      } else {
        buckets[b, default: []].insert((k, v), at: 0)
      }
    }
    return buckets.keys.sorted().flatMap { buckets[$0]! }
  }

  /// `tdb_hash` of `qobject/qdict.c`, over the key's (modified) UTF-8 bytes as a C string.
  static func tdbHash(_ key: String) -> UInt32 {
    let bytes = Self.modifiedUTF8(key)
    var value = 0x238F_13AF &* UInt32(truncatingIfNeeded: bytes.count)
    for (i, c) in bytes.enumerated() {
      value = value &+ (UInt32(c) << UInt32(i * 5 % 24))
    }
    return 1_103_515_243 &* value &+ 12345
  }

  /// How QEMU holds a string: UTF-8 with U+0000 as C0 80.
  static func modifiedUTF8(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    for b in s.utf8 {
      if b == 0 { out += [0xC0, 0x80] } else { out.append(b) }
    }
    return out
  }
}
