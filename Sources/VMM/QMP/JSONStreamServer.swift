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
    /// at end of stream (what is left unfinished then is dropped, as QEMU drops it). Errors come
    /// as `.invalid` with QEMU's text, and the stream goes on as QEMU's does (``JSONStreamer``).
    /// `maxSize` is QEMU's limit on the bytes of one message's tokens.
    public func receive(maxSize: Int = JSONStreamer.Limits.qemu.tokenSize) -> Received? {
      while true {
        if let r = streamer?.next() { return r }
        var chunk = [UInt8](repeating: 0, count: 4096)
        let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        if n <= 0 { return nil }
        if streamer == nil { streamer = JSONStreamer(limits: .init(tokenSize: maxSize)) }
        streamer!.feed(chunk[0..<n])
      }
    }

    nonisolated(unsafe) private var streamer: JSONStreamer?

    func close() {
      if !closed.exchange(true, ordering: .relaxed) { Glibc.close(fd) }
    }
  }

  public enum Received: Sendable {
    case value(QMPValue)
    case invalid(String)
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
