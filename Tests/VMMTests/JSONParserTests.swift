import Foundation
import HostKernel
import Testing

@testable import VMM

/// `\xHH` in a test input is the raw byte 0xHH (for invalid UTF-8 and control bytes); the rest
/// is the text's UTF-8.
func bytes(_ s: String) -> [UInt8] {
  let u = Array(s.utf8)
  var out: [UInt8] = []
  var i = 0
  func hex(_ c: UInt8) -> UInt8? {
    switch c {
    case 0x30...0x39: c - 0x30
    case 0x41...0x46: c - 0x41 + 10
    case 0x61...0x66: c - 0x61 + 10
    default: nil
    }
  }
  while i < u.count {
    if u[i] == 0x5C, i + 3 < u.count, u[i + 1] == 0x78, let h = hex(u[i + 2]), let l = hex(u[i + 3]) {
      out.append(h << 4 | l)
      i += 4
    } else {
      out.append(u[i])
      i += 1
    }
  }
  return out
}

/// A negotiated QMP session fed through the streamer: the reply lines (without CRLF) for
/// `input`, as apvirt writes them.
final class StreamedQMP {
  let session: QMPSession
  var streamer: JSONStreamer

  init(oob: Bool = false, negotiate: Bool = true, limits: JSONStreamer.Limits = .qemu) throws {
    let host = try makeHost()
    session = QMPSession(guest: try guest(host, ["-cpu", "host"]))
    streamer = JSONStreamer(limits: limits)
    if negotiate {
      let caps = oob ? #", "arguments": {"enable": ["oob"]}"# : ""
      #expect(replies(#"{"execute": "qmp_capabilities"\#(caps)}"#) == [#"{"return": {}}"#])
    }
  }

  func replies(_ input: String) -> [String] { replies(bytes(input)) }

  func replies(_ input: [UInt8]) -> [String] {
    streamer.feed(input)
    var out: [String] = []
    while let r = streamer.next() {
      out += session.handle(r, eventSink: { _ in }).map(\.json)
    }
    return out
  }
}

/// apvirt's query-status reply. qemu-system-s390x 7.2, which the expected replies below come
/// from, returns `{"status": "running", "singlestep": false, "running": true}` there (its
/// StatusInfo still had `singlestep`); everything else is byte for byte what it wrote.
let qs = #"{"running": true, "status": "running"}"#

@Suite("JSON: QEMU's lexer, streamer and parser", .serialized)
struct JSONParserTests {
  /// Each input sent on a fresh, negotiated connection to qemu-system-s390x 7.2 (Debian
  /// 1:7.2+dfsg-7+deb12u18), with the reply lines it wrote.
  static let observed: [(String, [String])] = [
    (
      #"{"execute": "query-status",}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#]
    ),
    (
      #"\xEF\xBB\xBF{"execute": "query-status"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\uFFFD'"}}"#,
        #"{"return": \#(qs)}"#,
      ]
    ),
    (
      #"{"execute": }"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#]
    ),
    (#"[1, 2]\x0A"#, [#"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#]),
    (#"123\x0A"#, [#"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#]),
    (#""abc""#, [#"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#]),
    (#"true "#, [#"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#]),
    (#"nul "#, [#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword 'nul'"}}"#]),
    (#"{"execute": "query-status", "id": 'sq"x'}"#, [#"{"return": \#(qs), "id": "sq\"x"}"#]),
    (#"{"execute": "query-status", "id": "\u0000"}"#, [#"{"return": \#(qs), "id": "\u0000"}"#]),
    (#"{"execute": "query-status", "id": "\ud83d\ude00"}"#, [#"{"return": \#(qs), "id": "\uD83D\uDE00"}"#]),
    (
      #"{"execute": "query-status", "id": "\ud83d"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, \\ud83d is not a valid Unicode character"}}"#
      ]
    ),
    (
      #"{"execute": "query-status", "id": "\ude00"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, \\ude00 is not a valid Unicode character"}}"#
      ]
    ),
    (
      #"{"execute": "query-status", "id": "\ud83dx"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, \\ud83d is not a valid Unicode character"}}"#
      ]
    ),
    (
      #"{"execute": "query-status", "id": "\ud83d\u0041"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, \\ud83d is not a valid Unicode character"}}"#
      ]
    ),
    (
      #"{"execute": "query-status", "id": "\x"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid escape sequence in string"}}"#
      ]
    ),
    (
      #"{"execute": "query-status", "id": "\u12"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, \\u12\" is not a valid Unicode character"}}"#
      ]
    ),
    (#"{"execute": "query-status", "id": "\'\/"}"#, [#"{"return": \#(qs), "id": "'/"}"#]),
    (
      #"{"execute": "query-status", "id": "\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"}"#,
      [#"{"return": \#(qs), "id": "\u00E9\u20AC\uD83D\uDE00"}"#]
    ),
    (
      #"{"execute": "query-status", "id": "\xC3"}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}"#]
    ),
    (#"{"execute": "query-status", "id": "\xC0\x80"}"#, [#"{"return": \#(qs), "id": "\u0000"}"#]),
    (
      #"{"execute": "query-status", "id": "\xED\xA0\x80"}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": "\xF4\x90\x80\x80"}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": "\x80"}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": "\xEF\xBF\xBF"}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": "a\x0Ab"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\"a\n'"}}"#,
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#,
      ]
    ),
    (
      #"{"execute": "query-status", "id": "a\x09b"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\"a\t'"}}"#,
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#,
      ]
    ),
    (
      #"\xFF{"execute": "query-status", "id": 1}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\uFFFD'"}}"#,
        #"{"return": \#(qs), "id": 1}"#,
      ]
    ),
    (
      #"{"execute": "query-status", \xFF "id": 1}{"execute": "query-status", "id": 2}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\uFFFD'"}}"#,
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#,
        #"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#,
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#,
        #"{"return": \#(qs), "id": 2}"#,
      ]
    ),
    (
      #"{"execute": "query-status", "id": 1, "id": 2}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, duplicate key"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": 01}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '01'"}}"#,
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#,
      ]
    ),
    (
      #"{"execute": "query-status", "id": -}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '-}'"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": 1.}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '1.}'"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": 1e}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '1e}'"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": +1}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '+'"}}"#,
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#,
      ]
    ),
    (
      #"{"execute": "query-status", "id": .5}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '.'"}}"#,
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#,
      ]
    ),
    (#"{"execute": "query-status", "id": -0}"#, [#"{"return": \#(qs), "id": 0}"#]),
    (
      #"{"execute": "query-status", "id": 1e5x}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expected separator in dict"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": nul}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword 'nul'"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": True}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray 'T'"}}"#,
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#,
      ]
    ),
    (
      #"{"execute": "query-status", "id": [1,]}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": [,1]}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": [1 2]}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expected separator in list"}}"#]
    ),
    (
      #"{"execute": "query-status" "id": 2}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expected separator in dict"}}"#]
    ),
    (
      #"{"execute" "query-status"}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, missing : in object pair"}}"#]
    ),
    (
      #"{1: 2}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, key is not a string in object"}}"#]
    ),
    (
      #"{"a"}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, missing : in object pair"}}"#]
    ),
    (#"{"a":}"#, [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#]),
    (#"{,}"#, [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#]),
    (#"{}"#, [#"{"error": {"class": "GenericError", "desc": "QMP input lacks member 'execute'"}}"#]),
    (#"[]"#, [#"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#]),
    (#"}"#, [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#]),
    (#"]"#, [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#]),
    (#":"#, [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#]),
    (#","#, [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#]),
    (
      #"{"execute": "query-status"}}"#,
      [
        #"{"return": \#(qs)}"#,
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#,
      ]
    ),
    (
      #"{"execute": "query-status"]"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expected separator in dict"}}"#]
    ),
    (
      #"[{"execute": "query-status"}}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expected separator in list"}}"#]
    ),
    (#"%d "#, [#"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '%'"}}"#]),
    (#"\x00"#, [#"{"error": {"class": "GenericError", "desc": "JSON parse error, stray ''"}}"#]),
    (
      #"{"execute": "query-status", "id": "a\x00b"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\"a'"}}"#,
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#,
      ]
    ),
    (
      #"{"execute": "query-status", "id": 1}  \x0A\x0A  {"execute": "query-status", "id": 2}"#,
      [#"{"return": \#(qs), "id": 1}"#, #"{"return": \#(qs), "id": 2}"#]
    ),
    (
      #"{"execute": "query-status", "id": 100000000000000000000000000000}"#,
      [#"{"return": \#(qs), "id": 9.9999999999999991e+28}"#]
    ),
    (#"{"execute": "query-status", "id": 1.0}"#, [#"{"return": \#(qs), "id": 1}"#]),
    (
      #"{"execute": "query-status", "id": 123456789012345678}"#,
      [#"{"return": \#(qs), "id": 123456789012345678}"#]
    ),
    (#"{"execute": "query-status", "id": 1e-320}"#, [#"{"return": \#(qs), "id": 9.9998886718268301e-321}"#]),
    (#"{"execute": "query-status", "id": 1e400}"#, [#"{"return": \#(qs), "id": inf}"#]),
    (#"{"execute": "query-status", "id": -1e400}"#, [#"{"return": \#(qs), "id": -inf}"#]),
    (#"{"execute": "query-status", "id": 0.5e1}"#, [#"{"return": \#(qs), "id": 5}"#]),
    (
      #"{"execute": "query-status", "id": "\u00e9\u0001\u007f\u0080"}"#,
      [#"{"return": \#(qs), "id": "\u00E9\u0001\u007F\u0080"}"#]
    ),
    (
      #"{"execute": "query-status", "id": "\b\f\n\r\t\"\\"}"#,
      [#"{"return": \#(qs), "id": "\b\f\n\r\t\"\\"}"#]
    ),
    (#"{"execute": "query-status", "id": true, "arguments": {}}"#, [#"{"return": \#(qs), "id": true}"#]),
    (#"{"execute": "query-status", "id": null}"#, [#"{"return": \#(qs), "id": null}"#]),
    (#"{"execute": "query-status", "id": false}"#, [#"{"return": \#(qs), "id": false}"#]),
    (#"{"execute": "query-status", "id": []}"#, [#"{"return": \#(qs), "id": []}"#]),
    (#"{"execute": "query-status", "id": {}}"#, [#"{"return": \#(qs), "id": {}}"#]),
    (
      #"{"arguments": 1, "execute": 2}"#,
      [#"{"error": {"class": "GenericError", "desc": "QMP input member 'execute' must be a string"}}"#]
    ),
    (
      #"{"execute": 2, "arguments": 1}"#,
      [#"{"error": {"class": "GenericError", "desc": "QMP input member 'execute' must be a string"}}"#]
    ),
    (
      #"{"id": 1, "execute": ["x"], "bogus": 1}"#,
      [#"{"id": 1, "error": {"class": "GenericError", "desc": "QMP input member 'bogus' is unexpected"}}"#]
    ),
    (
      #"{"a": 1, "b": 2}"#,
      [#"{"error": {"class": "GenericError", "desc": "QMP input member 'a' is unexpected"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": {"x": {"b": 1, "a": [{"d": 1, "c": 2}]}}}"#,
      [#"{"return": \#(qs), "id": {"x": {"a": [{"d": 1, "c": 2}], "b": 1}}}"#]
    ),
    // Unicode validity, number forms, keys compared as bytes, resynchronizing bytes.
    (
      #"{"execute": "query-status", "id": "\uFFFF"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, \\uFFFF is not a valid Unicode character"}}"#
      ]
    ),
    (
      #"{"execute": "query-status", "id": "\uFDD0"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, \\uFDD0 is not a valid Unicode character"}}"#
      ]
    ),
    (
      #"{"execute": "query-status", "id": "\ufffe"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, \\ufffe is not a valid Unicode character"}}"#
      ]
    ),
    (
      #"{"execute": "query-status", "id": "\ud83f\udffe"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, \\ud83f\\udffe is not a valid Unicode character"}}"#
      ]
    ),
    (
      #"{"execute": "query-status", "id": "\ud83d\ude0"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, \\ud83d is not a valid Unicode character"}}"#
      ]
    ),
    (
      #"{"execute": "query-status", "id": "\u"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, \\u\" is not a valid Unicode character"}}"#
      ]
    ),
    (
      #"{"execute": "query-status", "id": "\u00e"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, \\u00e\" is not a valid Unicode character"}}"#
      ]
    ),
    (
      #"{"execute": "query-status", "id": "\uD800\uDBFF"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, \\uD800 is not a valid Unicode character"}}"#
      ]
    ),
    (
      #"{"execute": "query-status", "id": "\uDFFF"}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, \\uDFFF is not a valid Unicode character"}}"#
      ]
    ),
    (
      #"{"execute": "query-status", "id": "\xF8\x88\x80\x80\x80"}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": "\xE0\x80\x80"}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": "\xC1\xBF"}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": "\xEF\xB7\x90"}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": "\xF0\x9F\x98"}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": "\xFD\xBF\xBF\xBF\xBF\xBF"}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": "\u0000x", "execute": "x"}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, duplicate key"}}"#]
    ),
    (
      #"{"a\u0000": 1, "a\xC0\x80": 2}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, duplicate key"}}"#]
    ),
    (
      #"{"\xC3\xA9": 1, "e\xCC\x81": 2, "execute": "query-status", "id": 1}"#,
      [#"{"id": 1, "error": {"class": "GenericError", "desc": "QMP input member '\u00E9' is unexpected"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#
      ]
    ),
    (
      #"{"execute": "query-status", "id": "aaa\x01"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\"aaa\u0001'"}}"#]
    ),
    (
      #"{"execute": "query-status", "id": "\xE9t\xE9"}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid UTF-8 sequence in string"}}"#]
    ),
    (
      #"- {"execute": "query-status", "id": 1}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '- '"}}"#,
        #"{"return": \#(qs), "id": 1}"#,
      ]
    ),
    (
      #"\x0B{"execute": "query-status", "id": 1}"#,
      [
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\u000B'"}}"#,
        #"{"return": \#(qs), "id": 1}"#,
      ]
    ),
    (#"\x0D\x0A\x09 {"execute": "query-status", "id": 1}\x0D\x0A"#, [#"{"return": \#(qs), "id": 1}"#]),
    (#"{"execute": "query-status", "id": 'a\"b\'c'}"#, [#"{"return": \#(qs), "id": "a\"b'c"}"#]),
    (#"{"execute": "query-status", "id": 1.5e3}"#, [#"{"return": \#(qs), "id": 1500}"#]),
    (#"{"execute": "query-status", "id": 15e-1}"#, [#"{"return": \#(qs), "id": 1.5}"#]),
    (#"{"execute": "query-status", "id": -0.5}"#, [#"{"return": \#(qs), "id": -0.5}"#]),
    (#"{"execute": "query-status", "id": 1e5}"#, [#"{"return": \#(qs), "id": 100000}"#]),
    (#"{"execute": "query-status", "id": -1E+2}"#, [#"{"return": \#(qs), "id": -100}"#]),
    (
      #"{"execute": "query-status", "id": 0e0}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expected separator in dict"}}"#]
    ),
    (#"{"execute": "query-status", "id": 1 }"#, [#"{"return": \#(qs), "id": 1}"#]),
    (
      #"{"execute": "query-status", "id": [1, [2, {"z": null, "y": true}], "s"]}"#,
      [#"{"return": \#(qs), "id": [1, [2, {"y": true, "z": null}], "s"]}"#]
    ),
    (
      #"{"execute": "query-status", "arguments": {}, "id": 1, "arguments": {}}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, duplicate key"}}"#]
    ),
    (
      #"{"execute": "query-status", "arguments": {"a": 1}, "id": 1}"#,
      [#"{"id": 1, "error": {"class": "GenericError", "desc": "Parameter 'a' is unexpected"}}"#]
    ),
    (
      #"{"execute": "query-status", "execute": 1}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, duplicate key"}}"#]
    ),
    (
      #"{"id": 1}"#,
      [#"{"id": 1, "error": {"class": "GenericError", "desc": "QMP input lacks member 'execute'"}}"#]
    ),
    (
      #"{"control": 1, "execute": "query-status", "id": 1}"#,
      [#"{"id": 1, "error": {"class": "GenericError", "desc": "QMP input member 'control' is unexpected"}}"#]
    ),
    (#"{"execute": "query-status", "id": 1}x"#, [#"{"return": \#(qs), "id": 1}"#]),
    (
      #"{"execute": "query-status", "id": 1}\xFF\xFE{"execute": "query-status", "id": 2}"#,
      [
        #"{"return": \#(qs), "id": 1}"#,
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\uFFFD'"}}"#,
        #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\uFFFD'"}}"#,
        #"{"return": \#(qs), "id": 2}"#,
      ]
    ),
    (
      #"{"execute": "query-status", "id": "a\x7Fb\xC2\x80"}"#,
      [#"{"return": \#(qs), "id": "a\u007Fb\u0080"}"#]
    ),
    (#"{"execute": "query-status", "id": 1, "id2": [}"#, []),
    (
      #"["a": 1]"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expected separator in list"}}"#]
    ),
    (
      #"{"a" 1}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, missing : in object pair"}}"#]
    ),
    (
      #"{"a": 1 "b"}"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expected separator in dict"}}"#]
    ),
    (
      #"[1 2]"#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, expected separator in list"}}"#]
    ),
    (
      #"{"execute": "qmp_capabilities", "id": 1}"#,
      [
        #"{"id": 1, "error": {"class": "CommandNotFound", "desc": "Capabilities negotiation is already complete, command ignored"}}"#
      ]
    ),
    (
      #"{"exec-oob": 1}"#,
      [#"{"error": {"class": "GenericError", "desc": "QMP input member 'exec-oob' is unexpected"}}"#]
    ),
    (
      #"truefalse "#,
      [#"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword 'truefalse'"}}"#]
    ),
    (#"1.0e+"#, []),
    (#""\/\b""#, [#"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#]),
    (#"'\u0041'"#, [#"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#]),
    (
      #"123456789012345678901234567890 "#,
      [#"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#]
    ),
    (
      #"-123456789012345678901234567890 "#,
      [#"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#]
    ),
  ]

  @Test func repliesAsQEMUWroteThem() throws {
    for (input, expected) in Self.observed {
      let q = try StreamedQMP()
      #expect(q.replies(input) == expected, "\(input)")
    }
  }

  @Test func anIdOfTwoToTheSixtyThreeIsEchoedAsUInt64() throws {
    let q = try StreamedQMP()
    #expect(
      q.replies(#"{"execute": "query-status", "id": 9223372036854775808}"#)
        == [#"{"return": \#(qs), "id": 9223372036854775808}"#])
    #expect(
      q.replies(#"{"execute": "query-status", "id": 18446744073709551615}"#)
        == [#"{"return": \#(qs), "id": 18446744073709551615}"#])
    // Beyond uint64, and below int64: doubles, written %.17g.
    #expect(
      q.replies(#"{"execute": "query-status", "id": 18446744073709551616}"#)
        == [#"{"return": \#(qs), "id": 1.8446744073709552e+19}"#])
    #expect(
      q.replies(#"{"execute": "query-status", "id": -9223372036854775809}"#)
        == [#"{"return": \#(qs), "id": -9.2233720368547758e+18}"#])
    #expect(
      q.replies(#"{"execute": "query-status", "id": -9223372036854775808}"#)
        == [#"{"return": \#(qs), "id": -9223372036854775808}"#])
    for (sent, echoed) in [
      ("1.5", "1.5"), ("1e300", "1.0000000000000001e+300"), ("0.1", "0.10000000000000001"), ("-0.0", "-0"),
      ("1E2", "100"),
    ] {
      #expect(
        q.replies(#"{"execute": "query-status", "id": \#(sent)}"#)
          == [#"{"return": \#(qs), "id": \#(echoed)}"#])
    }
  }

  @Test func anEchoedObjectComesBackInQDictOrder() throws {
    let q = try StreamedQMP()
    #expect(
      q.replies(#"{"execute":"query-status","id":{"b":1,"a":2,"c":3,"id":4,"execute":5}}"#)
        == [#"{"return": \#(qs), "id": {"a": 2, "execute": 5, "b": 1, "c": 3, "id": 4}}"#])
    #expect(
      q.replies(#"{"execute": "nope", "id": 1}"#)
        == [
          #"{"id": 1, "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}"#
        ])
  }

  /// 500,000 `[`: QEMU refuses every 1025th (nesting above 1024), forgets the tokens, and
  /// starts a new message with the next one; the 825 left open swallow what follows until the
  /// client resynchronizes with 0xFF. Replies as qemu-system-s390x 7.2 wrote them.
  @Test func halfAMillionOpenBracketsStayBoundedAndTheStreamRecovers() throws {
    let q = try StreamedQMP()
    let nesting = #"{"error": {"class": "GenericError", "desc": "JSON nesting depth limit exceeded"}}"#
    #expect(q.replies([UInt8](repeating: 0x5B, count: 500_000)) == Array(repeating: nesting, count: 487))
    #expect(q.streamer.pendingTokens == 825 && q.streamer.pendingBytes == 825)
    #expect(q.replies(#"{"execute": "query-status", "id": 1}"#) == [])
    #expect(q.streamer.pendingTokens == 825 + 9)
    #expect(
      q.replies(#"\xFF{"execute": "query-status", "id": 2}"#)
        == [
          #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '\uFFFD'"}}"#,
          #"{"return": \#(qs), "id": 2}"#,
        ])
    #expect(q.streamer.pendingTokens == 0 && q.streamer.pendingBytes == 0)
    #expect(q.streamer.collector.text.capacity <= 1 << 16)
  }

  @Test func closingWhatWasOpenedAnswersEveryStrayBracket() throws {
    let q = try StreamedQMP()
    let r = q.replies(
      [UInt8](repeating: 0x5B, count: 5000) + [UInt8](repeating: 0x5D, count: 5000)
        + bytes(#"{"execute":"query-status","id":1}"#))
    // 4 nesting errors (4 × 1025), then the 900 left open close into one array, then 4100
    // lone brackets, each "expecting value".
    #expect(r.count == 4 + 1 + 4100 + 1)
    #expect(r[4] == #"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#)
    #expect(r[5] == #"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#)
    #expect(r.last == #"{"return": \#(qs), "id": 1}"#)
  }

  /// QEMU's count limit: 2^21 tokens in one message, the next one is refused.
  @Test func theTokenCountLimit() throws {
    let q = try StreamedQMP()
    let count = #"{"error": {"class": "GenericError", "desc": "JSON token count limit exceeded"}}"#
    let expecting = #"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#
    let ones = [UInt8]((0..<(1 << 20)).lazy.flatMap { _ in [UInt8(ascii: "1"), UInt8(ascii: ",")] })
    #expect(q.replies([UInt8(ascii: "[")] + ones) == [count])
    #expect(q.replies("]") == [expecting])
    #expect(q.replies(#"{"execute":"query-status","id":1}"#) == [#"{"return": \#(qs), "id": 1}"#])
  }

  /// QEMU's size limit: 64 MiB of token bytes in one message; a single unfinished token is cut
  /// off at 64 MiB + 1 and the rest lexed afresh (here four letters: a bad keyword).
  @Test func theTokenSizeLimit() throws {
    let q = try StreamedQMP()
    let size = #"{"error": {"class": "GenericError", "desc": "JSON token size limit exceeded"}}"#
    let n = 64 << 20
    let a = UInt8(ascii: "a")
    let quote = UInt8(ascii: "\"")
    #expect(
      q.replies([quote] + [UInt8](repeating: a, count: n - 3) + [quote])
        == [#"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#])
    #expect(q.replies([quote] + [UInt8](repeating: a, count: n - 2) + [quote]) == [size])
    // The 64 MiB are given back once refused.
    #expect(q.streamer.collector.text.capacity <= 1 << 16 && q.streamer.lexer.token.capacity <= 1 << 16)
    #expect(q.replies([quote] + [UInt8](repeating: a, count: n + 4)) == [size])
    #expect(q.streamer.pendingBytes == 4)
    let object = #"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#
    let expecting = #"{"error": {"class": "GenericError", "desc": "JSON parse error, expecting value"}}"#
    func keyword(_ k: String) -> String {
      #"{"error": {"class": "GenericError", "desc": "JSON parse error, invalid keyword '\#(k)'"}}"#
    }
    #expect(
      q.replies(#""{"execute":"query-status","id":1}"#)
        == [
          keyword("aaaa"), object, keyword("execute"), object, keyword("query"),
          #"{"error": {"class": "GenericError", "desc": "JSON parse error, stray '-s'"}}"#, expecting, object,
          expecting, object, expecting,
        ])
  }

  @Test func execOOBIsAMemberOnlyOnceOOBIsEnabled() throws {
    let unnegotiated = try StreamedQMP(negotiate: false)
    #expect(
      unnegotiated.replies(#"{"exec-oob": "qmp_capabilities", "id": 1}"#)
        == [
          #"{"id": 1, "error": {"class": "GenericError", "desc": "QMP input member 'exec-oob' is unexpected"}}"#
        ])
    #expect(
      unnegotiated.replies(#"{"execute": "query-status", "id": 1}"#)
        == [
          #"{"id": 1, "error": {"class": "CommandNotFound", "desc": "Expecting capabilities negotiation with 'qmp_capabilities'"}}"#
        ])
    let plain = try StreamedQMP()
    #expect(
      plain.replies(#"{"exec-oob": "query-status", "id": 1}"#)
        == [
          #"{"id": 1, "error": {"class": "GenericError", "desc": "QMP input member 'exec-oob' is unexpected"}}"#
        ])
    let oob = try StreamedQMP(oob: true)
    for c in QMPSession.commands {
      #expect(
        oob.replies(#"{"exec-oob": "\#(c)", "id": 1}"#)
          == [
            #"{"id": 1, "error": {"class": "GenericError", "desc": "The command \#(c) does not support OOB"}}"#
          ])
    }
    #expect(
      oob.replies(#"{"exec-oob": "nope", "id": 1}"#)
        == [
          #"{"id": 1, "error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}"#
        ])
    #expect(
      oob.replies(#"{"exec-oob": "query-status", "execute": "query-status", "id": 1}"#)
        == [
          #"{"id": 1, "error": {"class": "GenericError", "desc": "QMP input member 'execute' clashes with 'exec-oob'"}}"#
        ])
    #expect(
      oob.replies(#"{"exec-oob": 5, "execute": "query-status", "id": 1}"#)
        == [
          #"{"id": 1, "error": {"class": "GenericError", "desc": "QMP input member 'exec-oob' must be a string"}}"#
        ])
    #expect(oob.replies(#"{"execute": "query-status", "id": 1}"#) == [#"{"return": \#(qs), "id": 1}"#])
  }

  /// The deepest nesting QEMU parses (1024) is parsed, echoed and written, on a test thread
  /// and on a connection's.
  @Test func theDeepestNestingIsParsed() throws {
    let q = try StreamedQMP()
    let deep = String(repeating: "[", count: 1023) + String(repeating: "]", count: 1023)
    #expect(
      q.replies(String(repeating: "[", count: 1024) + String(repeating: "]", count: 1024))
        == [#"{"error": {"class": "GenericError", "desc": "QMP input must be a JSON object"}}"#])
    #expect(
      q.replies(#"{"execute":"query-status","id":\#(deep)}"#)
        == [#"{"return": \#(qs), "id": \#(deep.replacingOccurrences(of: "][", with: "], ["))}"#])
    let r = try RawQMP(guest: try guest(try makeHost(), ["-cpu", "host"]))
    _ = r.line()
    _ = r.exchange(#"{"execute": "qmp_capabilities"}"#)
    #expect(
      r.exchange(#"{"execute":"query-status","id":\#(deep)}"#) == #"{"return": \#(qs), "id": \#(deep)}"#
        + "\r\n")
  }

  @Test func foundationObjectsForTheControlSocket() {
    let v = QMPValue.object([
      ("execute", .string("guest-start")),
      (
        "arguments",
        .object([("argv", .array([.string("-cpu"), .string("host")])), ("daemonize", .bool(true))])
      ),
      ("n", .uint(1 << 63)), ("x", .null),
    ])
    let d = v.foundationObject as? [String: Any]
    #expect(d?["execute"] as? String == "guest-start")
    let args = d?["arguments"] as? [String: Any]
    #expect(args?["argv"] as? [String] == ["-cpu", "host"])
    #expect(args?["daemonize"] as? Bool == true)
    #expect((d?["n"] as? NSNumber)?.uint64Value == 1 << 63)
    #expect(d?["x"] is NSNull)
    // And back, as other code still converts Foundation objects.
    #expect(QMPValue(v.foundationObject)["n"]?.json == "9223372036854775808")
  }

  @Test func qdictOrderIsTdbHashBuckets() {
    #expect(QMPValue.tdbHash("a") % 512 == 233)
    #expect(QMPValue.tdbHash("execute") % 512 == 299)
    #expect(QMPValue.tdbHash("id") % 512 == 486)
    #expect(QMPValue.tdbHash("error") % 512 == 489)
    #expect(QMPValue.tdbHash("return") % 512 == 401)
    // Same bucket: the newest first.
    let m = QMPValue.qdictOrder([
      ("running", .bool(true)), ("singlestep", .bool(false)), ("status", .string("x")),
    ])
    #expect(m.map(\.0) == ["status", "singlestep", "running"])
  }
}
