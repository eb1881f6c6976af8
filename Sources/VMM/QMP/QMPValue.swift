import Foundation

/// A JSON value that keeps the order of object members, written the way QEMU's JSON writer
/// writes it: `{"return": {}, "id": 1}`, with a space after `:` and `,`.
public indirect enum QMPValue: Sendable, Equatable {
  case object([(String, QMPValue)])
  case array([QMPValue])
  case string(String)
  case int(Int)
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
    case .double(let d):
      return d == d.rounded() && abs(d) < 1e15 ? String(format: "%.0f", d) : String(d)
    case .bool(let b):
      return b ? "true" : "false"
    case .null:
      return "null"
    }
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
    case .int, .double: "number"
    case .bool: "boolean"
    case .null: "null"
    }
  }
}
