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
/// events; the handler decides what they mean. Writing never blocks: like QEMU's monitor, each
/// connection buffers its output and flushes it as the client reads, so a client that stops
/// reading stalls nobody else (see ``Connection/outputLimit`` for what happens when it never
/// reads again).
public final class JSONStreamServer: Sendable {
  public let path: String
  private let listener: Int32
  private let stopped = Atomic<Bool>(false)
  /// The most connections served at once; further clients wait in the listen backlog until one
  /// ends, as a QEMU chardev's second client waits for the first.
  public let maxConnections: Int
  private let slots: DispatchSemaphore
  private let live = Mutex<[ObjectIdentifier: Connection]>([:])

  public enum ServerError: Error, CustomStringConvertible {
    case socket(String)
    public var description: String {
      switch self {
      case .socket(let m): m
      }
    }
  }

  /// Binds and listens on `path`, with the socket file's mode set to `mode` (the umask does not
  /// decide who may connect).
  ///
  /// What is at `path` already is replaced only if it is a socket (a stale one: a live server
  /// there answers `connect`, and that is refused as "Address already in use"); any other file
  /// is left alone and the bind fails, so that naming a file as a socket path cannot delete it.
  public init(path: String, mode: mode_t = 0o600, maxConnections: Int = 64) throws(ServerError) {
    self.path = path
    self.maxConnections = max(1, maxConnections)
    slots = DispatchSemaphore(value: self.maxConnections)
    try Self.removeStaleSocket(path)
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw .socket("socket: \(String(cString: strerror(errno)))") }
    guard var addr = Self.address(path) else {
      close(fd)
      throw .socket("socket path too long: \(path)")
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
    // The file was made under the process's umask; set the mode it is meant to have. The
    // directory holding it keeps others out in the meantime (the daemon's runtime directory is
    // 0700).
    guard chmod(path, mode) == 0 else {
      let m = String(cString: strerror(errno))
      close(fd)
      unlink(path)
      throw .socket("cannot set the mode of \(path): \(m)")
    }
    listener = fd
  }

  /// Serves a socket that is already listening (a monitor whose descriptor QEMU's caller passed:
  /// `-chardev socket,fd=N,server=on`). The server owns the descriptor from now on; it has no
  /// file to remove. A descriptor that is not a listening stream socket is refused.
  public init(listening fd: Int32, maxConnections: Int = 64) throws(ServerError) {
    var accepting: Int32 = 0
    var length = socklen_t(MemoryLayout<Int32>.size)
    guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length) == 0, accepting == 1 else {
      throw .socket("descriptor \(fd) is not a listening socket")
    }
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    path = ""
    self.maxConnections = max(1, maxConnections)
    slots = DispatchSemaphore(value: self.maxConnections)
    listener = fd
  }

  static func address(_ path: String) -> sockaddr_un? {
    var addr = sockaddr_un()
    addr.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return nil }
    withUnsafeMutableBytes(of: &addr.sun_path) { p in
      for (i, b) in bytes.enumerated() { p[i] = b }
    }
    return addr
  }

  /// Removes a socket file nobody listens on; refuses anything else.
  static func removeStaleSocket(_ path: String) throws(ServerError) {
    var st = stat()
    guard lstat(path, &st) == 0 else { return }
    guard st.st_mode & S_IFMT == S_IFSOCK else {
      throw .socket("cannot listen on \(path): File exists and is not a socket")
    }
    // A socket someone still serves is not stale.
    if (try? JSONStreamClient(path: path, timeout: 1)) != nil {
      throw .socket("cannot listen on \(path): Address already in use")
    }
    unlink(path)
  }

  /// Accepts connections until ``stop()``, each served on its own thread by `handler`.
  ///
  /// A failed `accept` never ends the loop: a lack of descriptors or memory (EMFILE, ENFILE,
  /// ENOBUFS, ENOMEM) is waited out, with the clients kept in the backlog, and a connection that
  /// died before it was accepted is skipped.
  public func run(_ handler: @escaping @Sendable (Connection) -> Void) {
    while !stopped.load(ordering: .relaxed) {
      slots.wait()
      if stopped.load(ordering: .relaxed) {
        slots.signal()
        return
      }
      let c = accept(listener, nil, nil)
      if c < 0 {
        let e = errno
        slots.signal()
        if stopped.load(ordering: .relaxed) { return }
        switch e {
        case EINTR, ECONNABORTED, EPROTO, EAGAIN:
          continue
        case EBADF, EINVAL, ENOTSOCK:
          return
        default:
          // EMFILE, ENFILE, ENOBUFS, ENOMEM and whatever else the kernel may say: wait, retry.
          usleep(50_000)
          continue
        }
      }
      _ = fcntl(c, F_SETFD, FD_CLOEXEC)
      guard let connection = Connection(fd: c) else {
        Glibc.close(c)
        slots.signal()
        usleep(50_000)
        continue
      }
      let key = ObjectIdentifier(connection)
      live.withLock { $0[key] = connection }
      if stopped.load(ordering: .relaxed) { connection.shutdown() }
      Thread.detachNewThread { [self] in
        handler(connection)
        connection.close()
        live.withLock { _ = $0.removeValue(forKey: key) }
        slots.signal()
      }
    }
  }

  deinit { close(listener) }

  /// How many connections are being served.
  public var connectionCount: Int { live.withLock { $0.count } }

  /// Stops accepting (once; the descriptor is not closed twice), ends the connections being
  /// served, and removes the socket file.
  public func stop() {
    guard !stopped.exchange(true, ordering: .relaxed) else { return }
    // Shut down, not closed: a blocked `accept` returns at once, and the descriptor's number
    // cannot be reused (by another server's socket, which the loop would then accept on)
    // until the server goes (deinit).
    Glibc.shutdown(listener, Int32(SHUT_RDWR))
    if !path.isEmpty { unlink(path) }
    for c in live.withLock({ Array($0.values) }) { c.shutdown() }
    // Wake a run loop that waits for a free slot.
    slots.signal()
  }

  /// One client connection.
  public final class Connection: Sendable {
    let fd: Int32
    /// A pipe that wakes the reader's `poll` when output was queued by another thread.
    private let wakeRead: Int32
    private let wakeWrite: Int32
    private let output = Mutex(Output())
    /// Descriptors the client passed (SCM_RIGHTS) and nobody has taken yet, oldest first.
    private let passed = Mutex<[Int32]>([])
    /// The most descriptors held for a client at once; what it passes beyond is closed at once,
    /// so that no client can run the server out of descriptors.
    public static let passedLimit = 16
    /// The most output held for a client that does not read. QEMU's monitor buffers without
    /// bound; here a client that lets 8 MiB pile up (tens of thousands of events) is taken to
    /// have stopped reading for good and is disconnected, so that it costs a bounded amount of
    /// memory and nobody waits for it.
    public static let outputLimit = 8 << 20

    struct Output {
      var pending: [UInt8] = []
      var start = 0
      var overrun = false
      var closed = false
      var count: Int { pending.count - start }

      /// Sends what is pending without blocking; false when the peer is gone.
      mutating func flush(_ fd: Int32) -> Bool {
        while count > 0 {
          // MSG_NOSIGNAL: a peer that hung up is an EPIPE here, never a SIGPIPE.
          let n = pending[start...].withUnsafeBytes {
            Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
          }
          if n > 0 {
            start += n
            continue
          }
          if n < 0 && errno == EINTR { continue }
          if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { break }
          pending = []
          start = 0
          return false
        }
        if start == pending.count {
          pending.removeAll(keepingCapacity: pending.capacity <= 65536)
          start = 0
        } else if start > 65536 && start * 2 > pending.count {
          pending.removeFirst(start)
          start = 0
        }
        return true
      }
    }

    init?(fd: Int32) {
      var p: [Int32] = [-1, -1]
      guard pipe(&p) == 0 else { return nil }
      for d in p {
        _ = fcntl(d, F_SETFD, FD_CLOEXEC)
        _ = fcntl(d, F_SETFL, fcntl(d, F_GETFL) | O_NONBLOCK)
      }
      self.fd = fd
      wakeRead = p[0]
      wakeWrite = p[1]
    }

    /// Writes one JSON value as a line ending in CRLF. Safe from any thread (events and
    /// replies interleave whole).
    public func send(_ object: Any) {
      guard
        let data = try? JSONSerialization.data(
          withJSONObject: object, options: [.sortedKeys, .fragmentsAllowed])
      else { return }
      sendLine(String(decoding: data, as: UTF8.self))
    }

    /// Queues a prepared line (without its CRLF) and sends what the socket takes at once; the
    /// rest goes out as the client reads. Never blocks.
    public func sendLine(_ line: String) {
      let bytes = Array((line + "\r\n").utf8)
      let wake: Bool = output.withLock { o in
        guard !o.closed, !o.overrun else { return false }
        o.pending += bytes
        guard o.flush(fd) else { return false }
        if o.count > Self.outputLimit {
          o.overrun = true
          o.pending = []
          o.start = 0
          Glibc.shutdown(fd, Int32(SHUT_RDWR))
        }
        return o.count > 0 || o.overrun
      }
      if wake {
        var b: UInt8 = 1
        _ = Glibc.write(wakeWrite, &b, 1)
      }
    }

    /// Bytes queued and not yet taken by the client.
    public var pendingOutput: Int { output.withLock { $0.count } }

    /// Whether the connection was dropped for letting too much output pile up.
    public var overrun: Bool { output.withLock { $0.overrun } }

    /// Reads the next complete JSON text (an object, or anything else the client sent), or nil
    /// at end of stream (what is left unfinished then is dropped, as QEMU drops it). Errors come
    /// as `.invalid` with QEMU's text, and the stream goes on as QEMU's does (``JSONStreamer``).
    /// `maxSize` is QEMU's limit on the bytes of one message's tokens. While it waits, queued
    /// output is flushed as the client takes it.
    public func receive(maxSize: Int = JSONStreamer.Limits.qemu.tokenSize) -> Received? {
      while true {
        if let r = streamer?.next() { return r }
        if overrun { return nil }
        let hasOutput = pendingOutput > 0
        var fds = [
          pollfd(fd: fd, events: Int16(POLLIN) | (hasOutput ? Int16(POLLOUT) : 0), revents: 0),
          pollfd(fd: wakeRead, events: Int16(POLLIN), revents: 0),
        ]
        let rc = poll(&fds, 2, -1)
        if rc < 0 {
          if errno == EINTR { continue }
          return nil
        }
        if fds[1].revents != 0 {
          var drain = [UInt8](repeating: 0, count: 64)
          while Glibc.read(wakeRead, &drain, drain.count) > 0 {}
        }
        if fds[0].revents & Int16(POLLOUT) != 0 {
          _ = output.withLock { $0.flush(fd) }
        }
        if fds[0].revents & (Int16(POLLIN) | Int16(POLLHUP) | Int16(POLLERR)) != 0 {
          var chunk = [UInt8](repeating: 0, count: 4096)
          let n = receiveWithDescriptors(&chunk)
          if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
          if n <= 0 { return nil }
          if streamer == nil { streamer = JSONStreamer(limits: .init(tokenSize: maxSize)) }
          streamer!.feed(chunk[0..<n])
        }
      }
    }

    nonisolated(unsafe) private var streamer: JSONStreamer?

    /// `recvmsg` with room for passed descriptors: they are kept (``takeDescriptors()``) up to
    /// ``passedLimit``, and the rest closed. Descriptors arrive close-on-exec.
    private func receiveWithDescriptors(_ chunk: inout [UInt8]) -> Int {
      var control = [UInt8](repeating: 0, count: AncillaryData.space(descriptors: Self.passedLimit))
      let n = AncillaryData.withMessage(&chunk, &control) {
        Glibc.recvmsg(fd, $0, Int32(MSG_DONTWAIT) | Int32(MSG_CMSG_CLOEXEC))
      }
      guard n >= 0 else { return n }
      for d in AncillaryData.descriptors(in: control) {
        let kept = passed.withLock { p -> Bool in
          guard p.count < Self.passedLimit else { return false }
          p.append(d)
          return true
        }
        if !kept { Glibc.close(d) }
      }
      return n
    }

    /// The client's process (SO_PEERCRED), or nil.
    public var peerPID: Int32? {
      // `struct ucred` (pid, uid, gid), which Glibc's module hides behind _GNU_SOURCE.
      var cred: (pid: Int32, uid: UInt32, gid: UInt32) = (0, 0, 0)
      var length = socklen_t(MemoryLayout.size(ofValue: cred))
      guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) == 0, cred.pid > 0 else { return nil }
      return cred.pid
    }

    /// The descriptors the client passed, oldest first; they are the caller's to close.
    public func takeDescriptors() -> [Int32] {
      passed.withLock { p in
        defer { p = [] }
        return p
      }
    }

    /// Ends the connection from the server's side: the reader sees end of stream.
    ///
    /// Only while the descriptor is still open: once closed its number may already belong to
    /// another connection, which a late shutdown would cut.
    func shutdown() {
      output.withLock { o in
        if !o.closed { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }
      }
    }

    /// Closes once, after giving queued output up to a second to reach a client that is still
    /// reading (one that sent its last request and shut down its side, say).
    public func close() {
      let deadline = ContinuousClock.now + .seconds(1)
      while pendingOutput > 0 && !overrun && ContinuousClock.now < deadline {
        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        guard poll(&p, 1, 100) >= 0 else { break }
        if p.revents & Int16(POLLHUP | POLLERR) != 0 { break }
        guard output.withLock({ $0.flush(fd) }) else { break }
      }
      let first: Bool = output.withLock { o in
        guard !o.closed else { return false }
        o.closed = true
        o.pending = []
        o.start = 0
        return true
      }
      if first {
        Glibc.close(fd)
        Glibc.close(wakeRead)
        Glibc.close(wakeWrite)
        for d in takeDescriptors() { Glibc.close(d) }
      }
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

  public enum ClientError: Error, CustomStringConvertible, Equatable {
    case connect(String)
    /// Nothing came within the timeout.
    case timedOut(Double)
    /// The server closed the connection.
    case closed

    public var description: String {
      switch self {
      case .connect(let m): m
      case .timedOut(let s): "no answer within \(s.formatted()) s"
      case .closed: "the connection was closed"
      }
    }
  }

  /// The time given to `connect`, sends and each receive; nil waits for ever.
  public let timeout: Double?

  /// Connects to `path`. With a `timeout`, neither connecting (a server whose backlog is full),
  /// sending nor receiving waits longer than that.
  public init(path: String, timeout: Double? = nil) throws(ClientError) {
    self.timeout = timeout
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw .connect("socket: \(String(cString: strerror(errno)))") }
    guard var addr = JSONStreamServer.address(path) else {
      Glibc.close(fd)
      throw .connect("cannot connect to \(path): the path is too long for a socket")
    }
    if let timeout {
      var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1_000_000))
      _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
      _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
    let rc = withUnsafePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    guard rc == 0 else {
      let e = errno
      Glibc.close(fd)
      if e == EAGAIN || e == EINPROGRESS { throw .timedOut(timeout ?? 0) }
      throw .connect("cannot connect to \(path): \(String(cString: strerror(e)))")
    }
    self.fd = fd
  }

  public func send(_ object: Any) {
    guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else {
      return
    }
    sendLine(data)
  }

  /// Sends one prepared JSON text and a newline.
  public func sendLine(_ data: Data) { sendBytes(Array(data) + [10]) }

  /// Sends one JSON text and a newline with `descriptors` attached (SCM_RIGHTS, on the text's
  /// first byte), as QEMU's callers pass a monitor socket. False if the send failed.
  @discardableResult
  public func sendLine(_ data: Data, descriptors: [Int32]) -> Bool {
    guard !descriptors.isEmpty else {
      sendLine(data)
      return true
    }
    var bytes = Array(data) + [10]
    var control = AncillaryData.control(carrying: descriptors)
    let n = AncillaryData.withMessage(&bytes, &control) { Glibc.sendmsg(fd, $0, Int32(MSG_NOSIGNAL)) }
    guard n > 0 else { return false }
    if n < bytes.count { sendBytes(Array(bytes[n...])) }
    return true
  }

  /// Sends bytes as they are (half a request, a 0xFF reset, ...).
  public func sendBytes(_ bytes: [UInt8]) {
    var off = 0
    while off < bytes.count {
      let n = bytes[off...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
      if n < 0 && errno == EINTR { continue }
      if n <= 0 { return }
      off += n
    }
  }

  /// The next line, without its line end.
  public mutating func receiveLine() throws(ClientError) -> [UInt8] {
    while true {
      if let i = buffer.firstIndex(of: 10) {
        var line = Array(buffer[..<i])
        buffer.removeSubrange(...i)
        if line.last == 13 { line.removeLast() }
        return line
      }
      var chunk = [UInt8](repeating: 0, count: 4096)
      let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
      if n < 0 && errno == EINTR { continue }
      if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw .timedOut(timeout ?? 0) }
      if n <= 0 { throw .closed }
      buffer += chunk[0..<n]
    }
  }

  /// The next line, parsed; nil at end of stream, on a time-out, or when it is not JSON.
  public mutating func receive() -> Any? {
    guard let line = try? receiveLine() else { return nil }
    return try? JSONSerialization.jsonObject(with: Data(line), options: [.fragmentsAllowed])
  }

  /// Waits for ever from now on (a connection that stays open for a guest's life).
  public func clearTimeout() {
    var tv = timeval(tv_sec: 0, tv_usec: 0)
    _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
  }

  public func close() { Glibc.close(fd) }
}
