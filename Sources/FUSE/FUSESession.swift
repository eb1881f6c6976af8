import CFUSEDevice
import Foundation
import Synchronization
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// A FUSE server session on one `/dev/fuse` connection: reads the kernel's requests, answers
/// them from a ``FileSystem``, and keeps the node ids and file handles the kernel holds.
///
/// Several threads serve the connection at once (the kernel hands each request to one reader),
/// so a request that blocks in the file system (a sysfs `remove` waiting for a VMM) does not stop
/// the others. On one CPU they read it in turns (``ReadTurns``): one at a time, the others taking
/// over when a request of its own waits.
public final class FUSESession: Sendable {
  /// The attribute and entry cache timeouts handed to the kernel. sysfs content changes under
  /// readers (mdev directories come and go, every read generates the file anew), so the default
  /// caches nothing.
  public struct CachePolicy: Sendable {
    public var entry: Timeout
    public var attributes: Timeout
    public init(entry: Timeout = .none, attributes: Timeout = .none) {
      self.entry = entry
      self.attributes = attributes
    }
  }

  struct State {
    var nodes: NodeTable
    var minor: UInt32 = 0
    var initialized = false
  }

  /// The `/dev/fuse` connection.
  public let device: FileDescriptor
  public var fd: Int32 { device.rawValue }
  let fileSystem: any FileSystem
  let cache: CachePolicy
  /// The node table. Handles, counters and the end of the session have no part in it, so that
  /// the requests of an open file (READ, WRITE, RELEASE) never wait for it.
  let state: Mutex<State>
  let handles = HandleTable()
  /// Set by DESTROY: the serving threads stop.
  let destroyed = Atomic<Bool>(false)
  /// The largest WRITE the kernel sends; larger writes are split into several.
  public static let maxWrite = 128 * 1024
  static let bufferSize = maxWrite + 4096
  /// Counts of requests by opcode, for tests and benchmarks.
  let counters = RequestCounters()

  public init(device: FileDescriptor, fileSystem: any FileSystem, cache: CachePolicy = CachePolicy()) {
    self.device = device
    self.fileSystem = fileSystem
    self.cache = cache
    self.state = Mutex(State(nodes: NodeTable(root: fileSystem.rootNode())))
  }

  public convenience init(fd: Int32, fileSystem: any FileSystem, cache: CachePolicy = CachePolicy()) {
    self.init(device: FileDescriptor(rawValue: fd), fileSystem: fileSystem, cache: cache)
  }

  /// How many requests of an opcode were served.
  public func requestCount(_ op: FUSEOpcode) -> Int { counters.count(of: op.rawValue) }

  /// How many of `threads` serving threads read the connection at once unless told: one where
  /// the calling thread, whose CPU affinity the serving threads inherit, may run on one CPU
  /// only; else all of them (see ``ReadTurns``).
  public static func readers(threads: Int) -> Int { ReadTurns.readers(threads: max(1, threads)) }

  /// Serves the connection with `threads` threads until it ends (unmount, DESTROY), `readers`
  /// of them reading it at once (see ``ReadTurns``): by default one where the threads may run on
  /// one CPU only, else all. Returns when every thread has stopped.
  public func serve(threads: Int = 4, readers: Int? = nil) {
    let threads = max(1, threads)
    let turns = ReadTurns(limit: min(threads, readers ?? Self.readers(threads: threads)))
    let group = DispatchGroup()
    for _ in 0..<threads {
      group.enter()
      let t = Thread { [self] in
        self.serveLoop(ReadTurn(turns))
        group.leave()
      }
      t.stackSize = 1 << 20
      t.start()
    }
    group.wait()
  }

  /// One thread's loop: read a request into the thread's buffer, answer it from the thread's
  /// reply buffer with one write(2). Nothing is allocated per request but what the file system
  /// allocates. The thread reads in its `turn`, which it keeps from one request to the next
  /// unless a request of its own waits (see ``ReadTurns``).
  func serveLoop(_ turn: ReadTurn) {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.bufferSize, alignment: 16)
    var reply = ReplyBuffer(capacity: Self.bufferSize)
    // The thread's WRITE data: each request's is decoded into it (see FUSERequest.decode).
    var payload: [UInt8] = []
    payload.reserveCapacity(4096)
    let counts = counters.threadCounts()
    defer {
      turn.handOn()
      buffer.deallocate()
      reply.deallocate()
    }
    while true {
      turn.take()
      // The turn came from a thread that stopped at DESTROY.
      if destroyed.load(ordering: .relaxed) { return }
      // The bare system call (see CFUSEDevice.h), as for every reply.
      let n = cfuse_read(fd, buffer.baseAddress, buffer.count)
      if n < 0 {
        // ENOENT: the request was interrupted before we read it; EAGAIN: try again; EINTR: a
        // signal came first.
        let e = errno
        if e == EAGAIN || e == ENOENT || e == EINTR { continue }
        // ENODEV: the file system was unmounted.
        return
      }
      if n == 0 { return }
      if respond(
        UnsafeRawBufferPointer(rebasing: buffer[0..<n]), into: &reply, payload: &payload, counts: counts,
        turn: turn)
      {
        // ENOENT: the request was interrupted meanwhile; nothing to do.
        send(reply.sealed)
      }
      if destroyed.load(ordering: .relaxed) { return }
    }
  }

  /// Writes one reply or notification to the connection.
  func send(_ message: [UInt8]) {
    message.withUnsafeBytes { send($0) }
  }

  /// One write(2) of the whole message (the device takes a message whole or not at all), as the
  /// bare system call (see CFUSEDevice.h). An error loses the message, as nothing else could be
  /// done with it: ENOENT, the request was interrupted meanwhile; ENODEV, the file system is gone.
  func send(_ message: UnsafeRawBufferPointer) {
    while cfuse_write(fd, message.baseAddress, message.count) < 0 && errno == EINTR {}
  }

  // MARK: - Dispatch

  /// Answers one request; nil when the request takes no reply (FORGET, INTERRUPT).
  public func handle(_ bytes: UnsafeRawBufferPointer) -> [UInt8]? {
    var reply = ReplyBuffer(capacity: 4096)
    defer { reply.deallocate() }
    return respond(bytes, into: &reply) ? Array(reply.sealed) : nil
  }

  /// Answers one decoded request; nil when it takes no reply.
  public func handle(_ request: FUSERequest) -> [UInt8]? {
    var reply = ReplyBuffer(capacity: 4096)
    defer { reply.deallocate() }
    return respond(request, into: &reply) ? Array(reply.sealed) : nil
  }

  /// Answers one request into `reply` (``ReplyBuffer/sealed`` is then the whole message); false
  /// when the request takes no reply.
  func respond(_ bytes: UnsafeRawBufferPointer, into reply: inout ReplyBuffer) -> Bool {
    var payload: [UInt8] = []
    return respond(bytes, into: &reply, payload: &payload, counts: counters.shared, turn: nil)
  }

  /// As ``respond(_:into:)``, a WRITE's data decoded into the thread's `payload`, the request
  /// counted in the thread's `counts`, handing on the serving thread's `turn` if it waits.
  func respond(
    _ bytes: UnsafeRawBufferPointer, into reply: inout ReplyBuffer, payload: inout [UInt8],
    counts: RequestCounters.Counts, turn: ReadTurn?
  ) -> Bool {
    guard let request = FUSERequest.decode(bytes, payload: &payload) else { return false }
    counts.increment(request.header.opcode)
    return respond(request, into: &reply, turn: turn)
  }

  func respond(_ request: FUSERequest, into reply: inout ReplyBuffer, turn: ReadTurn? = nil) -> Bool {
    reply.reset()
    do throws(Errno) {
      guard try dispatch(request.operation, unique: request.unique, into: &reply, turn: turn) else {
        return false
      }
      reply.seal(error: 0, unique: request.unique)
    } catch {
      reply.seal(error: -error.rawValue, unique: request.unique)
    }
    return true
  }

  /// Writes the reply's payload for `operation`, the request `unique`, into `reply`; false for
  /// no reply. A request that waits hands on `turn` first.
  func dispatch(
    _ operation: FUSEOperation, unique: UInt64, into reply: inout ReplyBuffer, turn: ReadTurn?
  ) throws(Errno) -> Bool {
    switch operation {
    case .`init`(let i): initialize(i, into: &reply)
    case .destroy: destroy()
    // FORGET, BATCH_FORGET: no reply.
    case .forget(let f):
      forget(CollectionOfOne(f))
      return false
    case .batchForget(let fs):
      forget(fs)
      return false
    // Requests here finish on their own; the kernel gets their normal reply.
    case .interrupt: return false
    case .lookup(let parent, let name): try lookUp(name, in: parent, into: &reply)
    case .getattr(let node, _): try getattr(node, into: &reply)
    case .setattr(let node, let s): try setattr(node, s, into: &reply)
    case .readlink(let node): try readlink(node, into: &reply)
    case .access(let node, _): try access(node)
    case .statfs: FUSEWire.statfsOut(into: &reply)
    case .open(let node, let flags): try open(node, flags: flags, unique: unique).encode(into: &reply)
    case .read(_, let rd): try read(rd, into: &reply)
    case .write(_, let wr, let data): try write(wr, data, into: &reply, turn: turn)
    // A store is complete when its WRITE is answered: nothing to flush. ENOSYS makes the kernel
    // stop sending FLUSH on every close.
    case .flush: throw .noFunction
    case .fsync, .fsyncdir: break
    case .release(_, let fh), .releasedir(_, let fh): release(fh)
    case .opendir(let node, _): try opendir(node, unique: unique).encode(into: &reply)
    case .readdir(let node, let rd): try readdir(rd, node: node, into: &reply)
    case .getxattr(_, let name, _): try getxattr(name)
    case .listxattr(_, let size): listxattr(size: size, into: &reply)
    case .mknod, .mkdir, .create, .tmpfile, .symlink, .link, .unlink, .rmdir, .rename, .setxattr,
      .removexattr:
      throw .permissionDenied
    case .unsupported, .unknown: throw .noFunction
    case .malformed(let opcode):
      switch opcode {
      case .forget, .batchForget, .interrupt: return false
      default: throw .invalidArgument
      }
    }
    return true
  }

  // MARK: - Operations

  func destroy() {
    destroyed.store(true, ordering: .relaxed)
  }

  func forget(_ forgets: some Collection<Forget>) {
    state.withLock { s in for f in forgets { s.nodes.forget(f.node, f.lookups) } }
  }

  /// LOOKUP: the file system resolves `name` in the parent's node; the id then stands for what
  /// it resolved.
  func lookUp(_ name: String, in parent: NodeID, into reply: inout ReplyBuffer) throws(Errno) {
    let (child, attr) = try fileSystem.lookUp(name, in: try node(parent))
    let id = state.withLock { $0.nodes.lookUp(child) }
    FUSEWire.entryOut(
      into: &reply, nodeid: id.rawValue, attr: attr, entryValid: cache.entry, attrValid: cache.attributes)
  }

  func getattr(_ id: NodeID, into reply: inout ReplyBuffer) throws(Errno) {
    FUSEWire.attrOut(into: &reply, try fileSystem.attributes(of: try node(id)), valid: cache.attributes)
  }

  func setattr(_ id: NodeID, _ s: FUSEWire.SetattrIn, into reply: inout ReplyBuffer) throws(Errno) {
    let n = try node(id)
    if s.valid & FUSEWire.SetattrIn.validSize != 0 { try fileSystem.truncate(n, to: s.size) }
    FUSEWire.attrOut(into: &reply, try fileSystem.attributes(of: n), valid: cache.attributes)
  }

  func readlink(_ id: NodeID, into reply: inout ReplyBuffer) throws(Errno) {
    reply.write(utf8: try fileSystem.readLink(try node(id)))
  }

  func access(_ id: NodeID) throws(Errno) {
    _ = try fileSystem.attributes(of: try node(id))
  }

  func open(_ id: NodeID, flags: Int32, unique: UInt64) throws(Errno) -> FUSEWire.OpenOut {
    let n = try node(id)
    let mode = flags & O_ACCMODE
    try fileSystem.open(n, read: mode != O_WRONLY, write: mode != O_RDONLY)
    if flags & O_TRUNC != 0 { try fileSystem.truncate(n, to: 0) }
    // Opens bypass the page cache (direct I/O): a read is generated anew at every open, and a
    // write(2) is one WRITE of the same bytes, returning the store's errno. A truncating
    // write-only open (`echo 5 > attr`) goes through the cache instead, written through at once
    // (no writeback cache), so its write(2) is still that one WRITE. What the cache buys is
    // `file_remove_privs`, which marks the inode S_NOSEC (FUSE_HANDLE_KILLPRIV_V2 sets
    // SB_NOSEC) after asking once for security.capability, so that later truncating opens skip
    // `dentry_needs_remove_privs`'s GETXATTR until the attributes are refreshed. Other writers
    // gain nothing from it and would pay a page-cache page filled at the write and dropped at the
    // next open.
    let openFlags = mode == O_WRONLY && flags & O_TRUNC != 0 ? 0 : FUSEWire.OpenFlags.directIO
    return FUSEWire.openOut(
      fh: handles.insert(HandleTable.Handle(node: n), unique: unique), openFlags: openFlags)
  }

  /// READ: at offset 0 the file is generated anew; later offsets continue the same generation,
  /// as sysfs's seq_file does, so a reader in several chunks sees one consistent content.
  func read(_ rd: FUSEWire.ReadIn, into reply: inout ReplyBuffer) throws(Errno) {
    guard let (node, kept) = handles.withHandle(rd.fh, { h in (h.node, rd.offset == 0 ? nil : h.buffer) })
    else { throw .badFileDescriptor }
    var content = kept
    if content == nil {
      let generated = try fileSystem.read(node)
      // A RELEASE meanwhile (another thread's) leaves nothing to keep it in.
      _ = handles.withHandle(rd.fh) { $0.buffer = generated }
      content = generated
    }
    content!.withUnsafeBytes { bytes in
      let start = Int(min(rd.offset, UInt64(bytes.count)))
      let end = min(bytes.count, start + Int(rd.size))
      reply.write(raw: UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
    }
  }

  /// WRITE: one store. One that waits (a `remove` for the VMM) hands on the thread's turn
  /// before, so that the requests behind it are read meanwhile.
  func write(_ wr: FUSEWire.WriteIn, _ data: [UInt8], into reply: inout ReplyBuffer, turn: ReadTurn?)
    throws(Errno)
  {
    guard let n = handles.node(wr.fh) else { throw .badFileDescriptor }
    let outcome = fileSystem.store(n, data, beforeWaiting: { turn?.handOn() })
    // A store can remove nodes (an mdev's `remove`): the kernel must forget them before the
    // writer can look again. The writer holds no directory lock, so this cannot deadlock.
    sendInvalidations(outcome.invalidations, turn: turn)
    FUSEWire.writeOut(into: &reply, size: UInt32(try outcome.result.get()))
  }

  func release(_ fh: HandleID) {
    handles.remove(fh)
  }

  func opendir(_ id: NodeID, unique: UInt64) throws(Errno) -> FUSEWire.OpenOut {
    let n = try node(id)
    let entries = try fileSystem.entries(of: n)
    return FUSEWire.openOut(
      fh: handles.insert(HandleTable.Handle(node: n, entries: entries), unique: unique), openFlags: 0)
  }

  /// READDIR: `.` and `..` then the entries, each with the offset of the next.
  func readdir(_ rd: FUSEWire.ReadIn, node: NodeID, into reply: inout ReplyBuffer) throws(Errno) {
    guard let entries = handles.withHandle(rd.fh, { $0.entries }) ?? nil else { throw .badFileDescriptor }
    var index = Int(rd.offset)
    while index < entries.count + 2 {
      let (name, kind, inode): (String, FileKind, UInt64) =
        switch index {
        case 0: (".", .directory, node.rawValue)
        case 1: ("..", .directory, NodeID.root.rawValue)
        default: (entries[index - 2].name, entries[index - 2].kind, entries[index - 2].inode)
        }
      guard
        FUSEWire.appendDirent(
          &reply, inode: inode, offset: UInt64(index + 1), kind: kind, name: name, limit: Int(rd.size))
      else { break }
      index += 1
    }
  }

  /// GETXATTR: sysfs (kernfs) has the security and trusted namespaces, empty, and no user xattrs.
  func getxattr(_ name: String) throws(Errno) {
    if name.hasPrefix("security.") || name.hasPrefix("trusted.") { throw .noData }
    throw .notSupported
  }

  /// LISTXATTR: an empty list: a size query is answered with size 0, a buffer with nothing.
  func listxattr(size: UInt32, into reply: inout ReplyBuffer) {
    if size == 0 { FUSEWire.getxattrOut(into: &reply, size: 0) }
  }

  /// Tells the kernel to drop its cached entries for the paths the file system removed
  /// (FUSE_NOTIFY_INVAL_ENTRY). Only entries the kernel looked up can be cached; others are
  /// skipped.
  ///
  /// The entries the kernel holds below a removed directory are invalidated too, deepest first.
  /// Invalidating the directory alone unhashes only its own dentry: a child still in use (the
  /// `remove` file that a writer holds open while its store removes the mdev) stays hashed, so
  /// when it is closed it goes to the dentry cache's LRU instead of being freed, and keeps its
  /// parent with it. The kernel would then never FORGET either node (not before memory pressure),
  /// and the node table would grow by two nodes for every mdev removed.
  public func sendInvalidations() {
    sendInvalidations(fileSystem.takeInvalidations())
  }

  /// Tells the kernel to drop its cached entries for `paths`, which the file system removed.
  /// The kernel takes each entry's parent directory's lock for it, and another caller's LOOKUP
  /// in that directory holds the lock (shared) until it is answered: a serving thread hands on
  /// its `turn` before it sends anything, so that the LOOKUP is read while the invalidation
  /// waits for it.
  func sendInvalidations(_ paths: [String], turn: ReadTurn? = nil) {
    guard !paths.isEmpty else { return }
    var messages: [FUSENotification] = []
    state.withLock { s in
      for removed in paths where s.nodes.id(of: removed) != nil {
        for p in s.nodes.descendants(of: removed) + [removed] {
          guard let slash = p.lastIndex(of: "/") else { continue }
          let name = String(p[p.index(after: slash)...])
          guard s.nodes.id(of: p) != nil, let parentID = s.nodes.id(of: NodeTable.parent(of: p)) else {
            continue
          }
          messages.append(.invalidateEntry(parent: parentID, name: name))
        }
      }
    }
    guard !messages.isEmpty else { return }
    turn?.handOn()
    for m in messages { send(m.encode()) }
  }

  /// What the node id stands for; ENOENT for an id the kernel forgot (or never had).
  func node(_ id: NodeID) throws(Errno) -> FileNode {
    guard let n = state.withLock({ $0.nodes.node(id) }) else { throw .noSuchFileOrDirectory }
    return n
  }

  /// INIT: the protocol version and the features this server uses.
  func initialize(_ i: FUSEWire.InitIn, into reply: inout ReplyBuffer) {
    guard i.major == 7 else {
      // A newer major: answer with ours so the kernel can adapt (it never happens with 7).
      return FUSEWire.initOut(
        into: &reply, minor: FUSEWire.kernelMinorVersion, maxReadahead: 0, flags: 0, maxWrite: 4096,
        maxPages: 1)
    }
    let minor = min(i.minor, FUSEWire.kernelMinorVersion)
    state.withLock {
      $0.minor = minor
      $0.initialized = true
    }
    // An `echo N > attr` is then OPEN (with O_TRUNC: FUSE_ATOMIC_O_TRUNC, no SETATTR), WRITE and
    // RELEASE: nothing here has suid bits or capabilities to clear (FUSE_HANDLE_KILLPRIV_V2, no
    // GETXATTR of security.capability).
    let wanted =
      FUSEWire.InitFlags.bigWrites | FUSEWire.InitFlags.maxPages | FUSEWire.InitFlags.parallelDirops
      | FUSEWire.InitFlags.dontMask | FUSEWire.InitFlags.atomicOTrunc | FUSEWire.InitFlags.handleKillprivV2
    FUSEWire.initOut(
      into: &reply, minor: minor, maxReadahead: i.maxReadahead, flags: i.flags & wanted,
      maxWrite: UInt32(Self.maxWrite),
      maxPages: UInt16(Self.maxWrite / 4096))
  }
}
