/// The kinds of token QEMU's JSON lexer hands to its streamer (`JSONTokenType` in
/// `qobject/json-parser-int.h`), without the interpolation token QMP never enables.
enum JSONTokenType: UInt8, Sendable {
  case lcurly, rcurly, lsquare, rsquare, colon, comma
  case integer, float, keyword, string
  /// A byte no token may contain or start with; the token's text so far comes with it.
  case error
  /// A token grown beyond the lexer's size limit, cut off unfinished (QEMU passes its lexer
  /// state as the type then, which the streamer treats like any non-bracket token).
  case oversized
}

/// Receives what ``JSONLexer`` recognizes: a token type and the token's bytes.
protocol JSONTokenSink {
  mutating func token(_ type: JSONTokenType, _ text: [UInt8])
}

/// QEMU's JSON lexer (`qobject/json-lexer.c`): a byte-driven state machine.
///
/// It accepts RFC 8259 tokens plus QEMU's extensions: single-quoted strings, `\'` as an
/// escape, and any keyword `[a-z]+` (the parser rejects unknown ones). It does not decode
/// strings or validate UTF-8 beyond refusing control characters and the bytes 0xFE/0xFF in
/// strings: that is the parser's job. After an invalid byte it reports an error and skips input
/// until a structural character, a control character other than tab, or 0xFE/0xFF, which is
/// how a client resynchronizes (QMP spec: send 0xFF, or a newline after a broken token).
struct JSONLexer {
  /// QEMU's `MAX_TOKEN_SIZE`: a single token longer than this is cut off and reported.
  static let maxTokenSize = 64 << 20

  /// The states of `json_lexer[]`; each comment is the QEMU state it mirrors.
  enum State: UInt8 {
    case recovery  // IN_RECOVERY
    case dqString, dqEscape, sqString, sqEscape  // IN_DQ_STRING(_ESCAPE), IN_SQ_...
    case zero  // IN_ZERO: a leading 0
    case digits  // IN_DIGITS: integer digits
    case sign  // IN_SIGN: after '-'
    case mantissa, mantissaDigits  // IN_MANTISSA(_DIGITS): after '.'
    case expE, expSign, expDigits  // IN_EXP_E, IN_EXP_SIGN, IN_EXP_DIGITS
    case keyword  // IN_KEYWORD
    case start  // IN_START
  }

  /// Where one byte takes the lexer: the `LOOKAHEAD` bit of QEMU's table is `lookahead` (the
  /// byte is not consumed and is fed again in the new state).
  enum Step {
    case to(State)
    case emit(JSONTokenType)
    case error
  }

  var state = State.start
  var token: [UInt8] = []
  let maxTokenSize: Int

  init(maxTokenSize: Int = JSONLexer.maxTokenSize) {
    self.maxTokenSize = maxTokenSize
  }

  private static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

  /// One transition of `json_lexer[state][c]`.
  static func step(_ state: State, _ c: UInt8) -> (Step, lookahead: Bool) {
    switch state {
    case .recovery:
      switch c {
      case 0x09: return (.to(.recovery), false)
      case 0x00...0x1F, 0xFE, 0xFF, UInt8(ascii: "["), UInt8(ascii: "]"), UInt8(ascii: "{"),
        UInt8(ascii: "}"), UInt8(ascii: ":"), UInt8(ascii: ","):
        return (.to(.start), true)
      default: return (.to(.recovery), false)
      }
    case .dqEscape, .sqEscape:
      return (0x20...0xFD).contains(c)
        ? (.to(state == .dqEscape ? .dqString : .sqString), false) : (.error, false)
    case .dqString, .sqString:
      let quote = state == .dqString ? UInt8(ascii: "\"") : UInt8(ascii: "'")
      if c == quote { return (.emit(.string), false) }
      if c == UInt8(ascii: "\\") { return (.to(state == .dqString ? .dqEscape : .sqEscape), false) }
      return (0x20...0xFD).contains(c) ? (.to(state), false) : (.error, false)
    case .zero:
      if isDigit(c) { return (.error, false) }
      if c == UInt8(ascii: ".") { return (.to(.mantissa), false) }
      return (.emit(.integer), true)
    case .digits:
      if isDigit(c) { return (.to(.digits), false) }
      if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { return (.to(.expE), false) }
      if c == UInt8(ascii: ".") { return (.to(.mantissa), false) }
      return (.emit(.integer), true)
    case .sign:
      if c == UInt8(ascii: "0") { return (.to(.zero), false) }
      return isDigit(c) ? (.to(.digits), false) : (.error, false)
    case .mantissa:
      return isDigit(c) ? (.to(.mantissaDigits), false) : (.error, false)
    case .mantissaDigits:
      if isDigit(c) { return (.to(.mantissaDigits), false) }
      if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") { return (.to(.expE), false) }
      return (.emit(.float), true)
    case .expE:
      if c == UInt8(ascii: "-") || c == UInt8(ascii: "+") { return (.to(.expSign), false) }
      return isDigit(c) ? (.to(.expDigits), false) : (.error, false)
    case .expSign:
      return isDigit(c) ? (.to(.expDigits), false) : (.error, false)
    case .expDigits:
      return isDigit(c) ? (.to(.expDigits), false) : (.emit(.float), true)
    case .keyword:
      return (c >= 0x61 && c <= 0x7A) ? (.to(.keyword), false) : (.emit(.keyword), true)
    case .start:
      switch c {
      case UInt8(ascii: "\""): return (.to(.dqString), false)
      case UInt8(ascii: "'"): return (.to(.sqString), false)
      case UInt8(ascii: "0"): return (.to(.zero), false)
      case UInt8(ascii: "1")...UInt8(ascii: "9"): return (.to(.digits), false)
      case UInt8(ascii: "-"): return (.to(.sign), false)
      case UInt8(ascii: "{"): return (.emit(.lcurly), false)
      case UInt8(ascii: "}"): return (.emit(.rcurly), false)
      case UInt8(ascii: "["): return (.emit(.lsquare), false)
      case UInt8(ascii: "]"): return (.emit(.rsquare), false)
      case UInt8(ascii: ","): return (.emit(.comma), false)
      case UInt8(ascii: ":"): return (.emit(.colon), false)
      case UInt8(ascii: "a")...UInt8(ascii: "z"): return (.to(.keyword), false)
      case 0x20, 0x09, 0x0D, 0x0A: return (.to(.start), false)
      default: return (.error, false)
      }
    }
  }

  /// Feeds one byte (`json_lexer_feed_char` without flushing: QMP never flushes, a closed
  /// connection just drops the parser).
  mutating func feed<Sink: JSONTokenSink>(_ c: UInt8, to sink: inout Sink) {
    var consumed = false
    while !consumed {
      let (step, lookahead) = Self.step(state, c)
      consumed = !lookahead
      if consumed { token.append(c) }
      switch step {
      case .emit(let type):
        sink.token(type, token)
        clearToken()
        state = .start
      case .to(.start), .to(.recovery):
        // White space, or the end of a skipped stretch: nothing is kept.
        token.removeAll(keepingCapacity: true)
        if case .to(let s) = step { state = s }
      case .to(let s):
        state = s
      case .error:
        sink.token(.error, token)
        clearToken()
        state = .recovery
      }
    }
    // A security limit in QEMU: a token may not grow without bound.
    if token.count > maxTokenSize {
      sink.token(.oversized, token)
      clearToken()
      state = .start
    }
  }

  /// Empties the token buffer, giving back the memory of a large one.
  private mutating func clearToken() {
    if token.capacity > 1 << 16 { token = [] } else { token.removeAll(keepingCapacity: true) }
  }
}
