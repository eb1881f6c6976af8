import APModel

/// A store to one of the AP files that the assignment rules govern, not yet made: what
/// `echo VALUE > PATH` would write.
public struct SysfsWrite: Hashable, Sendable, CustomStringConvertible {
  public enum MdevAttribute: String, CaseIterable, Sendable {
    case assignAdapter = "assign_adapter"
    case unassignAdapter = "unassign_adapter"
    case assignDomain = "assign_domain"
    case unassignDomain = "unassign_domain"
    case assignControlDomain = "assign_control_domain"
    case unassignControlDomain = "unassign_control_domain"
    case apConfig = "ap_config"
  }

  public enum Target: Hashable, Sendable {
    /// `devices/vfio_ap/matrix/UUID/ATTRIBUTE` (UUID lower case).
    case mdev(String, MdevAttribute)
    /// `bus/ap/apmask`
    case apmask
    /// `bus/ap/aqmask`
    case aqmask
  }

  public var target: Target
  /// The bytes written, newline included when `echo` adds one.
  public var bytes: [UInt8]

  public init(_ target: Target, bytes: [UInt8]) {
    self.target = target
    self.bytes = bytes
  }

  /// `echo VALUE > PATH`: the value with a newline.
  public init(_ target: Target, echo value: String) {
    self.init(target, bytes: Array((value + "\n").utf8))
  }

  /// The path under the sysfs root.
  public var path: String {
    switch target {
    case .apmask: "bus/ap/apmask"
    case .aqmask: "bus/ap/aqmask"
    case .mdev(let u, let a): "devices/vfio_ap/matrix/\(u)/\(a.rawValue)"
    }
  }

  /// The value as text, without the one newline `echo` adds.
  public var value: String {
    let v = bytes.last == UInt8(ascii: "\n") ? bytes.dropLast() : bytes[...]
    return String(decoding: v, as: UTF8.self)
  }

  /// `echo VALUE > PATH`, as a shell would run it.
  public var description: String {
    let newline = bytes.last == UInt8(ascii: "\n")
    return "echo \(newline ? "" : "-n ")\(SysfsWrite.shellQuoted(value)) > \(path)"
  }

  static func shellQuoted(_ s: String) -> String {
    let plain =
      !s.isEmpty
      && s.utf8.allSatisfy { c in
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
          || [UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: ","), UInt8(ascii: "."), UInt8(ascii: "_")]
            .contains(c)
      }
    return plain ? s : "'" + s.replacingOccurrences("'", "'\\''") + "'"
  }

  /// Why a shell line is not a write this module can predict.
  public struct ParseError: Error, Hashable, CustomStringConvertible {
    public var description: String
  }

  /// Parses `echo [-n] VALUE > PATH` (also `>>`, quotes, `printf '%s' VALUE`-free forms only).
  /// PATH may be absolute under any root (`/sys/...`, `/run/apvirt/sys/...`), relative, or
  /// abbreviated (`.../UUID/assign_domain`): it is recognised by its last components.
  public static func parse(shell line: String) throws(ParseError) -> SysfsWrite {
    var words: [String] = []
    var redirect: String?
    var current = ""
    var inWord = false
    var quote: Character?
    let chars = Array(line)
    var i = 0
    var sawRedirect = false
    func finish() {
      if inWord {
        if sawRedirect && redirect == nil { redirect = current } else { words.append(current) }
      }
      current = ""
      inWord = false
    }
    while i < chars.count {
      let c = chars[i]
      if let q = quote {
        if c == q {
          quote = nil
        } else if q == "\"" && c == "\\" && i + 1 < chars.count {
          i += 1
          current.append(chars[i])
        } else {
          current.append(c)
        }
      } else if c == "'" || c == "\"" {
        quote = c
        inWord = true
      } else if c == "\\" && i + 1 < chars.count {
        i += 1
        current.append(chars[i])
        inWord = true
      } else if c == " " || c == "\t" {
        finish()
      } else if c == ">" {
        finish()
        if sawRedirect { throw ParseError(description: "more than one redirection in \(line.quoted)") }
        sawRedirect = true
        if i + 1 < chars.count && chars[i + 1] == ">" { i += 1 }
      } else if c == ";" || c == "|" || c == "&" {
        throw ParseError(description: "one echo command only, not \(line.quoted)")
      } else {
        current.append(c)
        inWord = true
      }
      i += 1
    }
    if quote != nil { throw ParseError(description: "unterminated quote in \(line.quoted)") }
    finish()
    guard words.first == "echo" else {
      throw ParseError(description: "not an echo command: \(line.quoted) (write it as 'echo VALUE > PATH')")
    }
    guard let path = redirect else {
      throw ParseError(description: "no '> PATH' in \(line.quoted)")
    }
    var args = Array(words.dropFirst())
    var newline = true
    while let f = args.first, f == "-n" || f == "-e" || f == "-ne" || f == "-en" || f == "-E" {
      if f.contains("n") { newline = false }
      args.removeFirst()
    }
    let value = args.joined(separator: " ")
    let target = try Self.target(path: path)
    return SysfsWrite(target, bytes: Array((value + (newline ? "\n" : "")).utf8))
  }

  /// The file a path names, by its last components.
  public static func target(path: String) throws(ParseError) -> Target {
    let parts = path.split(separator: "/").map(String.init)
    guard let last = parts.last else { throw ParseError(description: "no file in \(path.quoted)") }
    let parent = parts.count >= 2 ? parts[parts.count - 2] : ""
    if parts.count == 1 || parent == "ap" {
      if last == "apmask" { return .apmask }
      if last == "aqmask" { return .aqmask }
    }
    if let a = MdevAttribute(rawValue: last), SysfsSnapshot.isUUID(parent) {
      return .mdev(parent.lowercased(), a)
    }
    throw ParseError(
      description:
        "\(path.quoted) is not bus/ap/apmask, bus/ap/aqmask or an mdev's "
        + MdevAttribute.allCases.map(\.rawValue).joined(separator: ", "))
  }
}
