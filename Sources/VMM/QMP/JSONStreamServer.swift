import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// A Unix-socket server for JSON objects, one connection per thread: the framing QMP uses
/// (objects in with any white space between them, one object per line out, CRLF terminated) and
/// that apvirt's control socket shares.
///
/// A ``Connection`` hands complete JSON objects to the handler in order and writes replies and
/// events; the handler decides what they mean.
public final class JSONStreamServer: Sendable {
  public let path: String
  private let listener: Int32
  private let stopped = Atomic<Bool>(false)

  public enum ServerError: Error, CustomStringConvertible {
    case socket(String)
    public var description: String {
      switch self {
      case .socket(let m): m
      }
    }
  }

  /// Binds and listens on `path` (an existing socket file there is replaced).
  public init(path: String) throws(ServerError) {
    self.path = path
    unlink(path)
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw .socket("socket: \(String(cString: strerror(errno)))") }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else {
      close(fd)
      throw .socket("socket path too long: \(path)")
    }
    withUnsafeMutableBytes(of: &addr.sun_path) { p in
      for (i, b) in bytes.enumerated() { p[i] = b }
    }
    let rc = withUnsafePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    guard rc == 0, listen(fd, 16) == 0 else {
      let m = String(cString: strerror(errno))
      close(fd)
      throw .socket("cannot listen on \(path): \(m)")
    }
    listener = fd
  }

  /// Accepts connections until ``stop()``, each served on its own thread by `handler`.
  public func run(_ handler: @escaping @Sendable (Connection) -> Void) {
    while !stopped.load(ordering: .relaxed) {
      let c = accept(listener, nil, nil)
      if c < 0 {
        if errno == EINTR { continue }
        return
      }
      _ = fcntl(c, F_SETFD, FD_CLOEXEC)
      let connection = Connection(fd: c)
      Thread.detachNewThread {
        handler(connection)
        connection.close()
      }
    }
  }

  /// Stops accepting (once; the descriptor is not closed twice) and removes the socket file.
  public func stop() {
    guard !stopped.exchange(true, ordering: .relaxed) else { return }
    shutdown(listener, Int32(SHUT_RDWR))
    close(listener)
    unlink(path)
  }

  /// One client connection.
  public final class Connection: Sendable {
    let fd: Int32
    private let writeLock = Mutex(())
    private let closed = Atomic<Bool>(false)

    init(fd: Int32) { self.fd = fd }

    /// Writes one JSON value as a line ending in CRLF. Safe from any thread (events and
    /// replies interleave whole).
    public func send(_ object: Any) {
      guard
        let data = try? JSONSerialization.data(
          withJSONObject: object, options: [.sortedKeys, .fragmentsAllowed])
      else { return }
      sendLine(String(decoding: data, as: UTF8.self))
    }

    /// Writes a prepared line (without its CRLF).
    public func sendLine(_ line: String) {
      let bytes = Array((line + "\r\n").utf8)
      writeLock.withLock { _ in
        var off = 0
        while off < bytes.count {
          // MSG_NOSIGNAL: a peer that hung up is an EPIPE here, never a SIGPIPE.
          let n = bytes[off...].withUnsafeBytes {
            Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
          }
          if n <= 0 { return }
          off += n
        }
      }
    }

    /// Reads the next complete JSON text (an object, or anything else the client sent), or nil
    /// at end of stream. A syntax error is returned as `.invalid` and the stream continues after
    /// the bad text's line.
    public func receive(maxSize: Int = 1 << 20) -> Received? {
      while true {
        if let r = splitter.next() { return r }
        var chunk = [UInt8](repeating: 0, count: 4096)
        let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { return splitter.finish() }
        splitter.feed(chunk[0..<n], maxSize: maxSize)
      }
    }

    nonisolated(unsafe) private var splitter = JSONSplitter()

    func close() {
      if !closed.exchange(true, ordering: .relaxed) { Glibc.close(fd) }
    }
  }

  public enum Received {
    case value(Any)
    case invalid(String)
  }
}

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

/// A client for a JSON stream socket: sends an object, reads one JSON line back.
public struct JSONStreamClient {
  let fd: Int32
  var buffer: [UInt8] = []

  public init(path: String) throws(JSONStreamServer.ServerError) {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw .socket("socket: \(String(cString: strerror(errno)))") }
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &addr.sun_path) { p in
      for (i, b) in bytes.prefix(p.count - 1).enumerated() { p[i] = b }
    }
    let rc = withUnsafePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    guard rc == 0 else {
      let m = String(cString: strerror(errno))
      Glibc.close(fd)
      throw .socket("cannot connect to \(path): \(m)")
    }
    self.fd = fd
  }

  public func send(_ object: Any) {
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
      return
    }
    let bytes = Array(data) + [10]
    _ = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
  }

  /// The next line, parsed; nil at end of stream.
  public mutating func receive() -> Any? {
    while true {
      if let i = buffer.firstIndex(of: 10) {
        let line = Array(buffer[..<i])
        buffer.removeSubrange(...i)
        return try? JSONSerialization.jsonObject(with: Data(line), options: [.fragmentsAllowed])
      }
      var chunk = [UInt8](repeating: 0, count: 4096)
      let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
      if n <= 0 { return nil }
      buffer += chunk[0..<n]
    }
  }

  public func close() { Glibc.close(fd) }
}
