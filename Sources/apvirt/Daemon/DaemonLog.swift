import APModel
import Foundation
import Logging
import Synchronization
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// The daemon's log: `TIME LEVEL: MESSAGE`, one line each, on a descriptor (standard error for
/// `apvirt up`), as a journal keeps it.
///
/// swift-log's messages (boot, warnings, stopping) reach it through ``DaemonLogHandler`` and are
/// written at once. The stores' lines, one per store, do not go through swift-log and are not
/// written one by one: each is built as bytes into a buffer, which a thread of the log's own
/// writes ``storeDelay`` (10 ms) after its first line, in one write(2) for every store of that
/// time, and which any message logged after them writes first. A store therefore costs its reply
/// no system call of the log's: on one CPU the write(2) of each line cost open/write/close 3-4%
/// (Benchmarks/README.md), and behind a reader that stops reading (a full pipe) a store no
/// longer blocks, where every store used to. What a reader of the log sees is a journal's view:
/// a store's line comes a few milliseconds after its reply, in the order the stores were
/// logged. The buffer holds at most ``pendingLimit`` bytes; the lines a reader too slow for it
/// costs are counted and said in one line.
final class DaemonLog: Sendable {
  let output: FileDescriptor
  let storeDelay: Duration
  let pendingLimit: Int
  /// The stores' lines not yet written (with the time stamp they share), whether the writer is
  /// told, how many lines did not fit.
  private let pending = Mutex<Pending>(Pending())
  /// Held while lines are written, so that they reach the output in the order they were logged.
  private let writing = Mutex<Void>(())
  /// Wakes the writer thread: once for each batch, and once when the log goes.
  private let writer = Writer()

  final class Writer: Sendable {
    let due = DispatchSemaphore(value: 0)
    let gone = Atomic<Bool>(false)
  }

  struct Pending {
    var lines: [UInt8] = []
    var told = false
    var dropped = 0
    var stamp = TimeStamp()
  }

  init(
    output: FileDescriptor = .standardError, storeDelay: Duration = .milliseconds(10),
    pendingLimit: Int = 1 << 20
  ) {
    self.output = output
    self.storeDelay = storeDelay
    self.pendingLimit = pendingLimit
    // The writer holds the log weakly between batches: a log nobody holds ends its thread.
    let writer = writer
    let delay = storeDelay.microseconds
    Thread.detachNewThread { [weak self] in
      while true {
        writer.due.wait()
        if writer.gone.load(ordering: .relaxed) { return }
        usleep(delay)
        self?.flush()
      }
    }
  }

  deinit {
    writer.gone.store(true, ordering: .relaxed)
    writer.due.signal()
  }

  /// One line with its time stamp and level, written at once, after the stores' lines before it.
  func write(_ level: Logger.Level, _ message: String) {
    let now = time(nil)
    var line: [UInt8] = []
    line.reserveCapacity(40 + message.utf8.count)
    pending.withLock { $0.stamp.append(now, to: &line) }
    line.append(0x20)
    line.append(utf8: level.rawValue)
    line.append(utf8: ": ")
    line.append(utf8: message)
    line.append(0x0A)
    flush(then: line)
  }

  /// What `echo VALUE > FILE` did, as a user following the host wants to see it:
  /// `store bus/ap/apmask "-5": ok`, or the errno it failed with, logged at `info`.
  func store(_ path: String, _ data: [UInt8], _ error: Errno?) {
    let now = time(nil)
    let tell = pending.withLock { p -> Bool in
      let before = p.lines.count
      p.stamp.append(now, to: &p.lines)
      Self.appendStoreLine(to: &p.lines, path, data, error)
      if p.lines.count > pendingLimit {
        p.lines.removeSubrange(before...)
        p.dropped += 1
      }
      guard !p.told else { return false }
      p.told = true
      return true
    }
    if tell { writer.due.signal() }
  }

  /// Writes the stores' lines not yet written, then `line`.
  func flush(then line: [UInt8] = []) {
    let now = time(nil)
    writing.withLock { _ in
      var (lines, dropped) = pending.withLock { p in
        defer {
          p.lines = []
          p.lines.reserveCapacity(4096)
          p.told = false
          p.dropped = 0
        }
        return (p.lines, p.dropped)
      }
      if dropped > 0 {
        var stamp = TimeStamp()
        stamp.append(now, to: &lines)
        lines.append(
          utf8: " warning: \(dropped) store lines lost: the log's reader fell \(pendingLimit) bytes behind\n")
      }
      lines += line
      emit(lines)
    }
  }

  /// The store's line after its time stamp, to the newline, at the end of `line`.
  static func appendStoreLine(to line: inout [UInt8], _ path: String, _ data: [UInt8], _ error: Errno?) {
    line.append(utf8: " info: store ")
    line.append(utf8: path, droppingFirst: 1)
    line.append(utf8: " \"")
    appendStoredValue(data, to: &line)
    line.append(utf8: "\": ")
    if let error {
      line.append(utf8: error.symbolicName)
      line.append(utf8: " (")
      line.append(utf8: String(cString: strerror(error.rawValue)))
      line.append(0x29)
    } else {
      line.append(utf8: "ok")
    }
    line.append(0x0A)
  }

  /// A store's bytes as the log shows them: the text without the newlines around it, as
  /// `trimmingCharacters(in: .newlines)` cuts them (U+000A to U+000D at either end of ASCII
  /// text: byte by byte, without Foundation, for what nearly every store writes).
  static func appendStoredValue(_ data: [UInt8], to line: inout [UInt8]) {
    guard data.allSatisfy({ $0 < 0x80 }) else {
      line.append(utf8: String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines))
      return
    }
    var start = data.startIndex
    var end = data.endIndex
    while start < end && (0x0A...0x0D).contains(data[start]) { start += 1 }
    while end > start && (0x0A...0x0D).contains(data[end - 1]) { end -= 1 }
    line += data[start..<end]
  }

  /// One write(2) of the lines, again for what a short write left (a pipe that filled); an
  /// error loses them, as nothing else could be done with them.
  private func emit(_ lines: [UInt8]) {
    lines.withUnsafeBytes { bytes in
      var done = 0
      while done < bytes.count {
        let n = Glibc.write(output.rawValue, bytes.baseAddress! + done, bytes.count - done)
        if n > 0 {
          done += n
        } else if n < 0 && errno == EINTR {
          continue
        } else {
          return
        }
      }
    }
  }
}

extension Duration {
  var microseconds: UInt32 {
    let (s, a) = components
    return UInt32(clamping: s * 1_000_000 + a / 1_000_000_000_000)
  }
}

extension [UInt8] {
  /// Appends a string's UTF-8 at once (contiguous, as the strings here are), not byte by
  /// byte as `+= s.utf8` copies.
  mutating func append(utf8 string: String, droppingFirst count: Int = 0) {
    var string = string
    string.withUTF8 { append(contentsOf: UnsafeBufferPointer(rebasing: $0.dropFirst(count))) }
  }
}

/// swift-log's messages in the daemon's log, without the label and source that
/// StreamLogHandler repeats (`info apvirt: [apvirt] ...`).
struct DaemonLogHandler: LogHandler {
  let label: String
  let log: DaemonLog
  var logLevel: Logger.Level = .info
  var metadata: Logger.Metadata = [:]

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  func log(event: LogEvent) {
    log.write(event.level, event.message.description)
  }
}

/// The local time as the log writes it (`2026-12-02T01:02:03+0000`), formatted once a second:
/// a store logs a line, and `localtime_r` and `strftime` cost more than the rest of the line.
struct TimeStamp {
  private var second: time_t = -1
  private var text: [UInt8] = []

  /// Appends the stamp of `now`.
  mutating func append(_ now: time_t, to line: inout [UInt8]) {
    if now != second {
      second = now
      text = Self.format(now)
    }
    line.append(contentsOf: text)
  }

  static func format(_ time: time_t) -> [UInt8] {
    var t = time
    var tm = tm()
    localtime_r(&t, &tm)
    var buf = [UInt8](repeating: 0, count: 32)
    let n = buf.withUnsafeMutableBufferPointer { b in
      b.withMemoryRebound(to: CChar.self) { strftime($0.baseAddress, $0.count, "%Y-%m-%dT%H:%M:%S%z", &tm) }
    }
    return Array(buf[..<n])
  }
}
