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
  let storeDelay: Duration
  /// The lines not yet written and their writing, which the writer thread holds too.
  private let lines: Lines
  /// Wakes the writer thread: once for each batch, and once when the log goes.
  private let writer = Writer()

  var pendingLimit: Int { lines.pendingLimit }

  /// What the writer thread holds: it holds the log itself by nothing, so that nothing holds
  /// the log weakly (a weak reference would give it a side table, and every store's retain and
  /// release of it the runtime's slow path), and a log nobody holds still ends its thread.
  final class Lines: Sendable {
    let output: FileDescriptor
    let pendingLimit: Int
    /// The stores' lines not yet written (with the time stamp they share), whether the writer
    /// is told, how many lines did not fit.
    let pending = Mutex<Pending>(Pending())
    /// Held while lines are written, so that they reach the output in the order they were
    /// logged; the buffer the stores' lines were written from, given back to the stores at the
    /// next batch (two buffers taking turns keep their memory: a fresh one each batch grew and
    /// was copied again and again, and the pages it got back cost page faults).
    let writing = Mutex<LineBuffer>(LineBuffer())

    /// The most a buffer keeps after its lines are written: at the rate of stores a FUSE server
    /// on one CPU serves (about 60,000 a second), 10 ms of lines come to about 70 KiB.
    static let keptCapacity = 1 << 18

    init(output: FileDescriptor, pendingLimit: Int) {
      self.output = output
      self.pendingLimit = pendingLimit
    }

    /// Writes the stores' lines not yet written, then `line`.
    func flush(then line: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) {
      let now = time(nil)
      writing.withLock { lines in
        lines.removeAll()
        let dropped = pending.withLock { p in
          swap(&p.lines, &lines)
          p.told = false
          defer { p.dropped = 0 }
          return p.dropped
        }
        if dropped > 0 {
          var stamp = TimeStamp()
          stamp.append(now, to: &lines)
          lines.append(
            utf8:
              " warning: \(dropped) store lines lost: the log's reader fell \(pendingLimit) bytes behind\n")
        }
        lines.append(line)
        lines.withUnsafeBytes { emit($0) }
        // A burst that grew the buffer does not keep its memory.
        if lines.capacity > Self.keptCapacity { lines = LineBuffer() }
      }
    }

    /// One write(2) of the lines, again for what a short write left (a pipe that filled); an
    /// error loses them, as nothing else could be done with them.
    private func emit(_ bytes: UnsafeRawBufferPointer) {
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

  final class Writer: Sendable {
    let due = DispatchSemaphore(value: 0)
    let gone = Atomic<Bool>(false)
  }

  struct Pending: ~Copyable {
    var lines = LineBuffer()
    var told = false
    var dropped = 0
    var stamp = TimeStamp()
    /// The last store line's time stamp and text up to its value, for `prefixPath` in the
    /// second `prefixSecond`.
    var prefix = LineBuffer(capacity: 256)
    var prefixSecond: time_t = -1
    var prefixPath = ""
  }

  init(
    output: FileDescriptor = .standardError, storeDelay: Duration = .milliseconds(10),
    pendingLimit: Int = 1 << 20
  ) {
    self.storeDelay = storeDelay
    let lines = Lines(output: output, pendingLimit: pendingLimit)
    self.lines = lines
    // The writer holds the lines, not the log: a log nobody holds ends its thread (its deinit
    // tells the writer).
    let writer = writer
    let delay = storeDelay.microseconds
    Thread.detachNewThread {
      while true {
        writer.due.wait()
        if writer.gone.load(ordering: .relaxed) { return }
        usleep(delay)
        lines.flush()
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
    var line = LineBuffer(capacity: 40 + message.utf8.count)
    lines.pending.withLock { $0.stamp.append(now, to: &line) }
    line.append(0x20)
    line.append(utf8: level.rawValue)
    line.append(static: ": ")
    line.append(utf8: message)
    line.append(0x0A)
    line.withUnsafeBytes { lines.flush(then: $0) }
  }

  /// What `echo VALUE > FILE` did, as a user following the host wants to see it:
  /// `store bus/ap/apmask "-5": ok`, or the errno it failed with, logged at `info`.
  func store(_ path: String, _ data: [UInt8], _ error: Errno?) {
    let now = time(nil)
    let tell = lines.pending.withLock { p -> Bool in
      let before = p.lines.count
      // The line up to its value is the last one's while the second and the path are: a
      // writer storing again and again to one attribute costs one append for it.
      if now != p.prefixSecond || path != p.prefixPath {
        p.prefix.removeAll()
        p.stamp.append(now, to: &p.prefix)
        Self.appendStorePrefix(to: &p.prefix, path)
        p.prefixSecond = now
        p.prefixPath = path
      }
      p.prefix.withUnsafeBytes { p.lines.append($0) }
      Self.appendStoreResult(to: &p.lines, data, error)
      if p.lines.count > pendingLimit {
        p.lines.truncate(to: before)
        p.dropped += 1
      }
      guard !p.told else { return false }
      p.told = true
      return true
    }
    if tell { writer.due.signal() }
  }

  /// Writes the stores' lines not yet written, then `line`.
  func flush() { lines.flush() }

  /// ` info: store PATH "`: the store's line after its time stamp, up to the value.
  static func appendStorePrefix(to line: inout LineBuffer, _ path: String) {
    line.append(static: " info: store ")
    line.append(utf8: path, droppingFirst: 1)
    line.append(static: " \"")
  }

  /// The store's line from its value to the newline: `-5": ok`.
  static func appendStoreResult(to line: inout LineBuffer, _ data: [UInt8], _ error: Errno?) {
    appendStoredValue(data, to: &line)
    line.append(static: "\": ")
    if let error {
      line.append(utf8: error.symbolicName)
      line.append(static: " (")
      line.append(utf8: String(cString: strerror(error.rawValue)))
      line.append(0x29)
    } else {
      line.append(static: "ok")
    }
    line.append(0x0A)
  }

  /// A store's bytes as the log shows them: the text without the newlines around it, as
  /// `trimmingCharacters(in: .newlines)` cuts them (U+000A to U+000D at either end of ASCII
  /// text: byte by byte, without Foundation, for what nearly every store writes).
  static func appendStoredValue(_ data: [UInt8], to line: inout LineBuffer) {
    guard data.allSatisfy({ $0 < 0x80 }) else {
      line.append(utf8: String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines))
      return
    }
    var start = data.startIndex
    var end = data.endIndex
    while start < end && (0x0A...0x0D).contains(data[start]) { start += 1 }
    while end > start && (0x0A...0x0D).contains(data[end - 1]) { end -= 1 }
    data.withUnsafeBytes { line.append(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
  }
}

extension Duration {
  var microseconds: UInt32 {
    let (s, a) = components
    return UInt32(clamping: s * 1_000_000 + a / 1_000_000_000_000)
  }
}

/// Bytes appended in place: a line being built, the stores' lines not yet written. Appending to
/// an array checks its uniqueness and capacity and goes through the generic collection path,
/// several times for each store's line; here an append is a capacity check and a copy. Its
/// memory is its own alone (it cannot be copied), so it may pass from thread to thread.
struct LineBuffer: ~Copyable, @unchecked Sendable {
  private var base: UnsafeMutableRawPointer
  private(set) var capacity: Int
  private(set) var count = 0

  init(capacity: Int = 4096) {
    self.capacity = max(capacity, 16)
    base = .allocate(byteCount: self.capacity, alignment: 16)
  }

  deinit { base.deallocate() }

  mutating func append(_ bytes: UnsafeRawBufferPointer) {
    guard let from = bytes.baseAddress, !bytes.isEmpty else { return }
    if count + bytes.count > capacity { grow(to: count + bytes.count) }
    (base + count).copyMemory(from: from, byteCount: bytes.count)
    count += bytes.count
  }

  mutating func append(_ byte: UInt8) {
    if count == capacity { grow(to: count + 1) }
    base.storeBytes(of: byte, toByteOffset: count, as: UInt8.self)
    count += 1
  }

  /// Appends a literal's UTF-8, straight from the binary's constant: no string to retain and
  /// release, for the fixed parts of each store's line.
  mutating func append(static text: StaticString) {
    text.withUTF8Buffer { append(UnsafeRawBufferPointer($0)) }
  }

  /// Appends a string's UTF-8 at once (contiguous, as native strings and literals are), not
  /// byte by byte, and without a copy of the string (a store logs one line, and each copy of
  /// its path was a retain and a release).
  mutating func append(utf8 string: String, droppingFirst count: Int = 0) {
    let done: Void? = string.utf8.withContiguousStorageIfAvailable {
      append(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: $0.dropFirst(count))))
    }
    if done == nil { Array(string.utf8.dropFirst(count)).withUnsafeBytes { append($0) } }
  }

  /// Takes back what was appended after the first `n` bytes.
  mutating func truncate(to n: Int) { count = min(n, count) }

  /// Empties the buffer; its memory stays for what comes next.
  mutating func removeAll() { count = 0 }

  func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
    body(UnsafeRawBufferPointer(start: base, count: count))
  }

  private mutating func grow(to needed: Int) {
    let bigger = max(needed, capacity * 2)
    let new = UnsafeMutableRawPointer.allocate(byteCount: bigger, alignment: 16)
    new.copyMemory(from: base, byteCount: count)
    base.deallocate()
    base = new
    capacity = bigger
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
  mutating func append(_ now: time_t, to line: inout LineBuffer) {
    if now != second {
      second = now
      text = Self.format(now)
    }
    text.withUnsafeBytes { line.append($0) }
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
