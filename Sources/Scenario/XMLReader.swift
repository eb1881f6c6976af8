/// A small, strict reader of XML documents into a tree of elements, for libvirt's domain XML.
///
/// It is not Foundation's `XMLParser` on purpose: that one needs libxml2 at run time on Linux and
/// reports errors as bare codes without a message, while a capture on a real host must say which
/// file is wrong, on which line, and why. It reads what libvirt writes and what people write by
/// hand: the `<?xml ...?>` declaration, comments, a `<!DOCTYPE>`, CDATA sections, attributes in
/// single or double quotes, the five predefined entities and character references. It checks
/// that the document is well formed (one root element, every element closed by its own name, no
/// attribute twice) and does not resolve namespaces or external entities (libvirt's
/// `<qemu:commandline>` is an element named `qemu:commandline`).
public enum XMLReader {
  /// One element: its name, attributes, child elements and the text directly inside it.
  public struct Element: Equatable, Sendable {
    public var name: String
    public var attributes: [String: String]
    public var children: [Element]
    /// The character data directly inside the element (not its children's), entities resolved.
    public var text: String
    /// The line of its start tag, from 1.
    public var line: Int

    public init(
      name: String, attributes: [String: String] = [:], children: [Element] = [], text: String = "",
      line: Int = 1
    ) {
      self.name = name
      self.attributes = attributes
      self.children = children
      self.text = text
      self.line = line
    }

    /// The child elements named `name`, in document order.
    public func children(_ name: String) -> [Element] { children.filter { $0.name == name } }

    /// The first child element named `name`.
    public func child(_ name: String) -> Element? { children.first { $0.name == name } }

    /// This element and every element inside it, depth first, in document order.
    public var descendantsAndSelf: [Element] { [self] + children.flatMap(\.descendantsAndSelf) }
  }

  /// Why a document is not well formed, and the line where the reader found out.
  public struct Failure: Error, Equatable, CustomStringConvertible {
    public var line: Int
    public var message: String
    public var description: String { "line \(line): \(message)" }
  }

  /// Reads a whole document; returns its root element.
  public static func parse(_ text: String) throws(Failure) -> Element {
    var cursor = Cursor(Array(text.utf8))
    return try cursor.document()
  }

  /// The reader's position in the document's bytes (UTF-8: every markup character is ASCII).
  struct Cursor {
    let bytes: [UInt8]
    var at = 0
    var line = 1

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var atEnd: Bool { at >= bytes.count }
    var current: UInt8? { atEnd ? nil : bytes[at] }

    func failure(_ message: String, line: Int? = nil) -> Failure {
      Failure(line: line ?? self.line, message: message)
    }

    func looking(at s: String) -> Bool {
      let u = Array(s.utf8)
      return at + u.count <= bytes.count && Array(bytes[at..<at + u.count]) == u
    }

    mutating func advance(_ n: Int = 1) {
      for _ in 0..<n where !atEnd {
        if bytes[at] == UInt8(ascii: "\n") { line += 1 }
        at += 1
      }
    }

    mutating func skipSpace() {
      while let c = current, Self.isSpace(c) { advance() }
    }

    static func isSpace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x09 || c == 0x0a || c == 0x0d }

    static func isNameByte(_ c: UInt8) -> Bool {
      c >= 0x80 || (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)
        || c == UInt8(ascii: "_") || c == UInt8(ascii: ":") || c == UInt8(ascii: "-")
        || c == UInt8(ascii: ".")
    }

    /// Skips to just after `end`, or fails with `what` left open.
    mutating func skip(past end: String, unterminated what: String) throws(Failure) {
      let start = line
      while !atEnd {
        if looking(at: end) {
          advance(end.utf8.count)
          return
        }
        advance()
      }
      throw failure("\(what) is not closed (\(end))", line: start)
    }

    /// Comments, processing instructions and white space between markup outside the root.
    mutating func miscellany(allowDoctype: Bool) throws(Failure) {
      while true {
        skipSpace()
        if looking(at: "<!--") {
          try skip(past: "-->", unterminated: "a comment")
        } else if looking(at: "<?") {
          try skip(past: "?>", unterminated: "a processing instruction")
        } else if allowDoctype && looking(at: "<!DOCTYPE") {
          try skip(past: ">", unterminated: "<!DOCTYPE")
        } else {
          return
        }
      }
    }

    mutating func document() throws(Failure) -> Element {
      if looking(at: "\u{FEFF}") { advance(3) }
      try miscellany(allowDoctype: true)
      guard current == UInt8(ascii: "<") else {
        throw failure(atEnd ? "no root element: the file is empty" : "text before the root element")
      }
      let root = try element()
      try miscellany(allowDoctype: false)
      if !atEnd {
        throw failure(current == UInt8(ascii: "<") ? "a second root element" : "text after the root element")
      }
      return root
    }

    mutating func name(of what: String) throws(Failure) -> String {
      let start = at
      while let c = current, Self.isNameByte(c) { at += 1 }
      guard at > start else {
        throw failure(
          "\(what): expected a name, found \(current.map { "'\(Character(Unicode.Scalar($0)))'" } ?? "the end of the file")"
        )
      }
      return String(decoding: bytes[start..<at], as: UTF8.self)
    }

    /// An element, at its `<`.
    mutating func element() throws(Failure) -> Element {
      let line = self.line
      advance()
      let name = try name(of: "a start tag")
      var e = Element(name: name, line: line)
      while true {
        let hadSpace = current.map(Self.isSpace) ?? false
        skipSpace()
        guard let c = current else { throw failure("<\(name)> (line \(line)): the start tag is not closed") }
        if c == UInt8(ascii: "/") {
          advance()
          guard current == UInt8(ascii: ">") else { throw failure("<\(name)>: expected '>' after '/'") }
          advance()
          return e
        }
        if c == UInt8(ascii: ">") {
          advance()
          break
        }
        guard hadSpace else { throw failure("<\(name)>: attributes must be separated by white space") }
        let attribute = try self.name(of: "an attribute of <\(name)>")
        skipSpace()
        guard current == UInt8(ascii: "=") else {
          throw failure("<\(name)>: attribute \(attribute) has no value")
        }
        advance()
        skipSpace()
        guard let quote = current, quote == UInt8(ascii: "'") || quote == UInt8(ascii: "\"") else {
          throw failure("<\(name)>: the value of \(attribute) must be quoted")
        }
        advance()
        var raw: [UInt8] = []
        while let v = current, v != quote {
          if v == UInt8(ascii: "<") { throw failure("<\(name)>: '<' in the value of \(attribute)") }
          raw.append(v)
          advance()
        }
        guard current == quote else { throw failure("<\(name)>: the value of \(attribute) is not closed") }
        advance()
        guard e.attributes[attribute] == nil else {
          throw failure("<\(name)>: attribute \(attribute) is given twice")
        }
        e.attributes[attribute] = try resolve(raw)
      }
      // Content: text, child elements, comments, CDATA, up to the end tag.
      var text: [UInt8] = []
      while true {
        guard let c = current else { throw failure("<\(name)> (line \(line)) is not closed") }
        if c != UInt8(ascii: "<") {
          text.append(c)
          advance()
          continue
        }
        if looking(at: "</") {
          e.text += try resolve(text)
          advance(2)
          let end = try self.name(of: "an end tag")
          skipSpace()
          guard current == UInt8(ascii: ">") else { throw failure("</\(end)>: expected '>'") }
          advance()
          guard end == name else { throw failure("</\(end)> closes <\(name)> (line \(line))") }
          return e
        }
        if looking(at: "<!--") {
          try skip(past: "-->", unterminated: "a comment")
        } else if looking(at: "<![CDATA[") {
          e.text += try resolve(text)
          text = []
          advance(9)
          let start = at
          try skip(past: "]]>", unterminated: "a CDATA section")
          e.text += String(decoding: bytes[start..<at - 3], as: UTF8.self)
        } else if looking(at: "<?") {
          try skip(past: "?>", unterminated: "a processing instruction")
        } else {
          e.text += try resolve(text)
          text = []
          e.children.append(try element())
        }
      }
    }

    /// Character data with its entity and character references replaced.
    func resolve(_ raw: [UInt8]) throws(Failure) -> String {
      guard raw.contains(UInt8(ascii: "&")) else { return String(decoding: raw, as: UTF8.self) }
      var out: [UInt8] = []
      var i = 0
      while i < raw.count {
        guard raw[i] == UInt8(ascii: "&") else {
          out.append(raw[i])
          i += 1
          continue
        }
        guard let semicolon = raw[i...].firstIndex(of: UInt8(ascii: ";")), semicolon - i <= 10 else {
          throw failure("'&' that starts no entity (write &amp;)")
        }
        let entity = String(decoding: raw[(i + 1)..<semicolon], as: UTF8.self)
        let predefined = ["amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'"]
        if let p = predefined[entity] {
          out += Array(p.utf8)
        } else if entity.hasPrefix("#"), let scalar = Self.characterReference(entity.dropFirst()) {
          out += Array(String(Character(scalar)).utf8)
        } else {
          throw failure("unknown entity &\(entity);")
        }
        i = semicolon + 1
      }
      return String(decoding: out, as: UTF8.self)
    }

    static func characterReference(_ s: Substring) -> Unicode.Scalar? {
      let value = s.first == "x" ? UInt32(s.dropFirst(), radix: 16) : UInt32(s, radix: 10)
      return value.flatMap(Unicode.Scalar.init)
    }
  }
}
