import Foundation

/// Cuts a byte stream into JSON texts by tracking braces, brackets and strings, as QEMU's JSON
/// lexer does, so that objects may span lines or share one.
struct JSONSplitter {
  var pending: [UInt8] = []
  var ready: [JSONStreamServer.Received] = []
  var depth = 0
  var inString = false
  var escaped = false
  /// After an oversized text has been reported: its rest is skipped up to its end.
  var discarding = false

  mutating func feed(_ bytes: ArraySlice<UInt8>, maxSize: Int) {
    for b in bytes {
      if !discarding { pending.append(b) }
      if inString {
        if escaped {
          escaped = false
        } else if b == UInt8(ascii: "\\") {
          escaped = true
        } else if b == UInt8(ascii: "\"") {
          inString = false
          if depth == 0 { emit() }
        }
      } else {
        switch b {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
          depth += 1
        case UInt8(ascii: "}"), UInt8(ascii: "]"):
          depth -= 1
          if depth <= 0 { emit() }
        case UInt8(ascii: "\""):
          inString = true
        case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\r"), UInt8(ascii: "\n"):
          if depth == 0 && pending.count == 1 { pending.removeAll() }
          if depth == 0 && !pending.isEmpty && (b == UInt8(ascii: "\n")) { emit() }
        default:
          break
        }
      }
      if !discarding && pending.count > maxSize {
        ready.append(.invalid("JSON message too large"))
        pending.removeAll()
        discarding = depth > 0 || inString
      }
    }
  }

  mutating func emit() {
    if discarding {
      reset()
      return
    }
    let text = pending
    reset()
    let trimmed = text.drop { $0 == 32 || $0 == 10 || $0 == 13 || $0 == 9 }
    if trimmed.isEmpty { return }
    if let v = try? JSONSerialization.jsonObject(with: Data(trimmed), options: [.fragmentsAllowed]) {
      ready.append(.value(v))
    } else {
      ready.append(.invalid("JSON parse error, expecting value"))
    }
  }

  mutating func reset() {
    pending.removeAll()
    depth = 0
    inString = false
    escaped = false
    discarding = false
  }

  mutating func next() -> JSONStreamServer.Received? {
    ready.isEmpty ? nil : ready.removeFirst()
  }

  mutating func finish() -> JSONStreamServer.Received? {
    if !pending.isEmpty { emit() }
    return next()
  }
}
