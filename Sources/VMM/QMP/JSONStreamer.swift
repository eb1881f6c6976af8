/// QEMU's JSON message streamer (`json_message_process_token` in `qobject/json-streamer.c`):
/// collects the lexer's tokens until the braces and brackets balance (or one of them goes
/// negative), then parses them as one JSON text.
///
/// Its quirks are QEMU's: a scalar at top level is a message of its own (`1`, `"a"`, `true` each
/// get their reply), a stray `}` or `]` is parsed (and refused) as a message, a lexical error
/// throws away the tokens gathered so far. The limits on one message (total token bytes, token
/// count, nesting depth) report an error and start afresh with the next token, so that the
/// memory held for one connection stays bounded.
public struct JSONStreamer {
  /// QEMU's limits (`MAX_TOKEN_SIZE`, `MAX_TOKEN_COUNT`, `MAX_NESTING`).
  public struct Limits: Sendable {
    public var tokenSize = 64 << 20
    public var tokenCount = 2 << 20
    public var nesting = 1 << 10
    public static let qemu = Limits()
  }

  /// One token: its type and where its bytes are in ``Collector/text``.
  struct Token {
    var type: JSONTokenType
    var start: UInt32
    var end: UInt32
  }

  /// The streamer proper, kept apart from the lexer so that the lexer can feed it in place.
  struct Collector: JSONTokenSink {
    let limits: Limits
    var braces = 0
    var brackets = 0
    var tokens: [Token] = []
    /// The bytes of all tokens, one after the other.
    var text: [UInt8] = []
    /// Messages not yet handed out; those before `readyHead` have been.
    var ready: [JSONStreamServer.Received] = []
    var readyHead = 0

    mutating func token(_ type: JSONTokenType, _ bytes: [UInt8]) {
      switch type {
      case .lcurly: braces += 1
      case .rcurly: braces -= 1
      case .lsquare: brackets += 1
      case .rsquare: brackets -= 1
      case .error:
        // `%s` of the token: it ends at a NUL byte, the closing quote does not.
        let stray = bytes.prefix { $0 != 0 }
        return emit(.invalid(QEMUText.string(Array("JSON parse error, stray '".utf8) + stray + [0x27])))
      default: break
      }
      if text.count + bytes.count + 1 > limits.tokenSize {
        return emit(.invalid("JSON token size limit exceeded"))
      }
      if tokens.count + 1 > limits.tokenCount {
        return emit(.invalid("JSON token count limit exceeded"))
      }
      if braces + brackets > limits.nesting {
        return emit(.invalid("JSON nesting depth limit exceeded"))
      }
      tokens.append(Token(type: type, start: UInt32(text.count), end: UInt32(text.count + bytes.count)))
      text += bytes
      if (braces > 0 || brackets > 0) && braces >= 0 && brackets >= 0 { return }
      var parser = JSONParser(tokens: tokens, text: text)
      emit(parser.parse())
    }

    /// Hands out a message or an error and forgets the tokens, releasing their memory.
    mutating func emit(_ r: JSONStreamServer.Received) {
      braces = 0
      brackets = 0
      if text.capacity > 1 << 16 || tokens.capacity > 1 << 12 {
        text = []
        tokens = []
      } else {
        text.removeAll(keepingCapacity: true)
        tokens.removeAll(keepingCapacity: true)
      }
      ready.append(r)
    }
  }

  var lexer: JSONLexer
  var collector: Collector

  init(limits: Limits = .qemu) {
    // Token offsets are 32-bit.
    var limits = limits
    limits.tokenSize = min(limits.tokenSize, Int(UInt32.max) - 1)
    lexer = JSONLexer(maxTokenSize: limits.tokenSize)
    collector = Collector(limits: limits)
  }

  /// Feeds bytes; complete messages and errors queue up for ``next()``.
  mutating func feed(_ bytes: some Sequence<UInt8>) {
    for b in bytes { lexer.feed(b, to: &collector) }
  }

  /// The next message or error, in stream order.
  mutating func next() -> JSONStreamServer.Received? {
    guard collector.readyHead < collector.ready.count else {
      collector.ready.removeAll(keepingCapacity: collector.ready.capacity <= 64)
      collector.readyHead = 0
      return nil
    }
    defer { collector.readyHead += 1 }
    return collector.ready[collector.readyHead]
  }

  /// The bytes held for the message being collected (tokens and the token being lexed).
  var pendingBytes: Int { collector.text.count + lexer.token.count }
  var pendingTokens: Int { collector.tokens.count }
}
