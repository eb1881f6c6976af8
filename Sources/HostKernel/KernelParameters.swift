import APModel

/// The kernel command line's AP bus parameters (`ap.apmask=`, `ap.aqmask=`), as `parse_args`
/// splits a command line and `ap_perms_init` applies them at boot.
///
/// `parse_args` (kernel/params.c) splits at spaces outside double quotes, drops the quotes around
/// a value (`ap.apmask="-5,-6"`), and compares parameter names with `-` and `_` as one
/// character. `ap_perms_init` (ap_bus.c) starts every mask with all bits on; a given parameter
/// clears its mask and then parses the value with `ap_parse_mask_str`, whose return value it
/// ignores: a value that does not parse leaves the mask empty (every APQN for vfio_ap), and a
/// relative value (`-5,-6`) modifies the empty mask, so it removes nothing. Those are the
/// kernel's quirks, kept; ``problems`` names them for the one who typed the line.
public struct KernelParameters: Sendable, Equatable {
  /// The value of `ap.apmask=` as given, or nil.
  public var apmask: String?
  /// The value of `ap.aqmask=` as given, or nil.
  public var aqmask: String?

  public init(apmask: String? = nil, aqmask: String? = nil) {
    self.apmask = apmask
    self.aqmask = aqmask
  }

  /// Why a command line cannot be taken.
  public struct Failure: Error, Equatable, CustomStringConvertible {
    public var description: String
  }

  /// The parameters of the AP bus that apvirt models, with their meaning.
  public static let known = [
    "ap.apmask": "the adapters reserved for the host's zcrypt drivers",
    "ap.aqmask": "the domains reserved for the host's zcrypt drivers",
  ]

  /// Parses a command line. A parameter apvirt does not model is refused (a kernel would hand
  /// it to init, where it means nothing here), as is a quote left open.
  public init(commandLine: String) throws(Failure) {
    for word in try Self.split(commandLine) {
      let (name, value) = word
      switch Self.normalized(name) {
      case "ap.apmask":
        guard let value else { throw Failure(description: "ap.apmask needs a value: ap.apmask=MASK") }
        apmask = value
      case "ap.aqmask":
        guard let value else { throw Failure(description: "ap.aqmask needs a value: ap.aqmask=MASK") }
        aqmask = value
      default:
        throw Failure(
          description:
            "kernel parameter '\(name)' is not modelled; apvirt knows \(Self.known.keys.sorted().joined(separator: " and "))"
        )
      }
    }
  }

  /// `next_arg`: words split at unquoted spaces, each as `name` and the value after `=` (nil
  /// without one), with the quotes the kernel drops removed.
  static func split(_ line: String) throws(Failure) -> [(String, String?)] {
    var words: [(String, String?)] = []
    let chars = Array(line)
    var i = 0
    while i < chars.count {
      while i < chars.count && chars[i].isWhitespace { i += 1 }
      if i == chars.count { break }
      var word: [Character] = []
      var quoted = false
      while i < chars.count && (quoted || !chars[i].isWhitespace) {
        if chars[i] == "\"" { quoted.toggle() } else { word.append(chars[i]) }
        i += 1
      }
      if quoted { throw Failure(description: "a quote is not closed in the kernel command line") }
      let text = String(word)
      if let eq = text.firstIndex(of: "=") {
        words.append((String(text[..<eq]), String(text[text.index(after: eq)...])))
      } else {
        words.append((text, nil))
      }
    }
    return words
  }

  /// `parameq`: `-` and `_` are the same in a parameter's name.
  static func normalized(_ name: String) -> String {
    String(name.map { $0 == "-" ? "_" : $0 })
  }

  /// The masks `ap_perms_init` leaves.
  public var masks: (apmask: APMask, aqmask: APMask) {
    (Self.initialMask(apmask), Self.initialMask(aqmask))
  }

  static func initialMask(_ value: String?) -> APMask {
    guard let value else { return .all() }
    return (try? MaskParser.parse(value, current: APMask())) ?? APMask()
  }

  /// What the kernel silently does with a value that the one who typed it may not expect.
  public var problems: [String] {
    var p: [String] = []
    for (name, value) in [("ap.apmask", apmask), ("ap.aqmask", aqmask)] {
      guard let value else { continue }
      if (try? MaskParser.parse(value, current: APMask())) == nil {
        p.append(
          "\(name)=\(value) is not a mask the kernel can parse: it ignores it and boots with an empty \(name.dropFirst(3)) (nothing reserved for the host)"
        )
      } else if value.first == "+" || value.first == "-" {
        p.append(
          "\(name)=\(value) is relative: the kernel applies it to an empty mask at boot, so only its + terms count"
        )
      }
    }
    return p
  }
}
