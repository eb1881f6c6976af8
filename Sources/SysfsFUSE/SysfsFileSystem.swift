import FUSE
import Foundation
import HostKernel
import Sysfs
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// A sysfs tree of the emulated machine served as a FUSE ``FileSystem``: the adapter between the
/// generic FUSE server and the generic sysfs tree, which know nothing of each other. The host's
/// tree (the daemon's mount, the FUSE benchmarks) and each guest's own (the guests' mount, one
/// tree per guest under its name) are served by this one adapter; only how a request reaches
/// the tree differs (``Tree``).
///
/// A LOOKUP resolves one name in its parent's ``SysfsNode`` and hands the child's node to the
/// session as the ``FileNode``'s reference; GETATTR, OPEN, READ and READDIR take it back, so a
/// request on a known node resolves no path. The path-addressed methods stay for other callers.
public final class SysfsFileSystem: FileSystem {
  /// Whose tree is served.
  public enum Tree: Sendable {
    /// The host kernel's. A store goes through ``EmulatedHost/write(_:_:then:)`` (a blocked
    /// `remove` waits there), followed by ``followUp`` and told to ``onStore``.
    case host
    /// A guest's own kernel's, in its slot: ENOENT while that kernel is not running. Its inode
    /// numbers are the tree's XOR `inodeTag`, so that trees of several guests in one mount do
    /// not share numbers.
    case guest(GuestKernelSlot, inodeTag: UInt64)
  }

  let host: EmulatedHost
  let tree: Tree
  let inodeTag: UInt64
  /// What follows every write outside the kernel (a store can log, change the tree, raise
  /// uevents).
  let followUp: StoreFollowUp
  /// Told of every store: the path, the bytes written, and the errno it failed with (nil when
  /// it succeeded), for a daemon's log.
  let onStore: (@Sendable (_ path: String, _ data: [UInt8], _ error: Errno?) -> Void)?
  /// mtime/ctime of every node: the boot time, as sysfs shows.
  let bootTime: UInt64
  let owner = (uid: getuid(), gid: getgid())

  public init(
    host: EmulatedHost, tree: Tree = .host, followUp: StoreFollowUp = .none,
    onStore: (@Sendable (_ path: String, _ data: [UInt8], _ error: Errno?) -> Void)? = nil,
    bootTime: UInt64 = UInt64(Date().timeIntervalSince1970)
  ) {
    self.host = host
    self.bootTime = bootTime
    self.tree = tree
    if case .guest(_, let tag) = tree { inodeTag = tag } else { inodeTag = 0 }
    self.followUp = followUp
    self.onStore = onStore
  }

  /// Runs `body` on the served tree under the host's lock (which a guest's kernel runs under
  /// too), then delivers the signals raised.
  @inline(__always)
  func withTree<T: Sendable>(_ body: (SysfsTree) throws(Errno) -> T) throws(Errno) -> T {
    switch tree {
    case .host:
      return try host.withKernel { (k) throws(Errno) -> T in try body(k.sysfs) }
    case .guest(let slot, _):
      return try host.withGuestKernel(slot) { (_, g) throws(Errno) -> T in
        guard let g else { throw .noSuchFileOrDirectory }
        return try body(g.sysfs)
      }
    }
  }

  public func attributes(of path: String) throws(Errno) -> FileAttributes {
    attributes(try withTree { (t) throws(Errno) in try t.info(path, followLast: false) })
  }

  func attributes(_ info: SysfsNodeInfo) -> FileAttributes {
    // Owned by whoever runs the daemon: root on a real host, the user for an unprivileged one.
    var a = FileAttributes(
      kind: Self.kind(info.kind), permissions: info.mode, size: UInt64(info.size),
      inode: info.inode ^ inodeTag, time: bootTime)
    a.uid = owner.uid
    a.gid = owner.gid
    return a
  }

  static func kind(_ kind: SysfsNodeKind) -> FileKind {
    switch kind {
    case .directory: .directory
    case .symlink: .symlink
    case .attribute: .regular
    }
  }

  public func entries(of path: String) throws(Errno) -> [FileSystemEntry] {
    try withTree { (t) throws(Errno) in
      let base = path == "/" ? "" : path
      return try t.list(path).map { (e) throws(Errno) in
        let kind: FileKind =
          switch e.kind {
          case .directory: .directory
          case .symlink: .symlink
          case .attribute: .regular
          }
        // glibc skips entries whose inode is 0: each has its real one.
        let inode = try t.info(base + "/" + e.name, followLast: false).inode ^ inodeTag
        return FileSystemEntry(name: e.name, kind: kind, inode: inode)
      }
    }
  }

  public func readLink(_ path: String) throws(Errno) -> String {
    try withTree { (t) throws(Errno) in try t.readlink(path) }
  }

  public func open(_ path: String, read: Bool, write: Bool) throws(Errno) {
    try withTree { (t) throws(Errno) in try t.checkOpen(path, read: read, write: write) }
  }

  public func read(_ path: String) throws(Errno) -> [UInt8] {
    try withTree { (t) throws(Errno) in try t.read(path) }
  }

  public func write(_ path: String, _ data: [UInt8]) throws(Errno) -> Int {
    guard case .host = tree else { return try withTree { (t) throws(Errno) in try t.write(path, data) } }
    let result = Result { () throws(Errno) in try host.write(path, data) }
    let due = host.withKernel { followUp.isDue($0) }
    told(path, data, result, follow: due)
    return try result.get()
  }

  /// A store told to ``onStore`` and followed by ``followUp``.
  func told(_ path: String, _ data: [UInt8], _ result: Result<Int, Errno>, follow: Bool) {
    if let onStore {
      switch result {
      case .success: onStore(path, data, nil)
      case .failure(let e): onStore(path, data, e)
      }
    }
    if follow { followUp.follow() }
  }

  public func takeInvalidations() -> [String] {
    (try? withTree { $0.takeRemovedPaths() }) ?? []
  }

  /// `O_TRUNC` on a sysfs attribute changes nothing, as on a real host.
  public func truncate(_ path: String, to size: UInt64) throws(Errno) {
    _ = try attributes(of: path)
  }

  // MARK: - Nodes

  /// The tree's root; for a guest whose kernel is not running, a node that answers ENOENT.
  public func rootNode() -> FileNode {
    FileNode(path: "/", reference: try? withTree { $0.rootNode })
  }

  /// The sysfs node `node` stands for; nil for a node made without one (then its path serves).
  /// SysfsNode is final: comparing the class is the whole cast, without the runtime's
  /// dynamic cast on every request.
  func sysfsNode(_ node: FileNode) -> SysfsNode? {
    guard let r = node.reference, type(of: r) == SysfsNode.self else { return nil }
    return unsafeDowncast(r, to: SysfsNode.self)
  }

  public func lookUp(_ name: String, in parent: FileNode) throws(Errno) -> (FileNode, FileAttributes) {
    let (child, info) = try withTree { (t) throws(Errno) -> (SysfsNode, SysfsNodeInfo) in
      let p: SysfsNode
      if let n = sysfsNode(parent) { p = n } else { p = try t.node(at: parent.path) }
      let c = try t.node(name, in: p)
      return (c, try t.info(c))
    }
    return (FileNode(path: parent.childPath(name), reference: child), attributes(info))
  }

  public func attributes(of node: FileNode) throws(Errno) -> FileAttributes {
    guard let n = sysfsNode(node) else { return try attributes(of: node.path) }
    return attributes(try withTree { (t) throws(Errno) in try t.info(n) })
  }

  public func entries(of node: FileNode) throws(Errno) -> [FileSystemEntry] {
    guard let n = sysfsNode(node) else { return try entries(of: node.path) }
    return try withTree { (t) throws(Errno) in
      try t.entries(n).map {
        FileSystemEntry(name: $0.entry.name, kind: Self.kind($0.entry.kind), inode: $0.inode ^ inodeTag)
      }
    }
  }

  public func readLink(_ node: FileNode) throws(Errno) -> String {
    guard let n = sysfsNode(node) else { return try readLink(node.path) }
    return try withTree { (t) throws(Errno) in try t.readlink(n) }
  }

  public func open(_ node: FileNode, read: Bool, write: Bool) throws(Errno) {
    guard let n = sysfsNode(node) else { return try open(node.path, read: read, write: write) }
    try withTree { (t) throws(Errno) in try t.checkOpen(n, read: read, write: write) }
  }

  public func read(_ node: FileNode) throws(Errno) -> [UInt8] {
    guard let n = sysfsNode(node) else { return try read(node.path) }
    return try withTree { (t) throws(Errno) in try t.read(n) }
  }

  /// A store goes by the node through ``EmulatedHost/write(_:_:then:)``: a `remove` that the
  /// kernel blocks until the VMM releases the device waits there, without the lock, and asks the
  /// VMM again about every 10 seconds; that loop is the host's.
  public func write(_ node: FileNode, _ data: [UInt8]) throws(Errno) -> Int {
    try store(node, data).result.get()
  }

  /// The store, what it removed and whether there is anything to follow, in one hold of the
  /// host's lock; the follow-up and the log after it. A blocked `remove` calls `beforeWaiting`
  /// before it waits for the VMM.
  public func store(_ node: FileNode, _ data: [UInt8], beforeWaiting: () -> Void) -> StoreOutcome {
    guard let n = sysfsNode(node) else {
      let result = Result { () throws(Errno) in try write(node.path, data) }
      return StoreOutcome(result: result, invalidations: takeInvalidations())
    }
    guard case .host = tree else {
      var removed: [String] = []
      let result = Result { () throws(Errno) in
        try withTree { (t) throws(Errno) -> Int in
          defer { removed = t.takeRemovedPaths() }
          return try t.write(n, data)
        }
      }
      return StoreOutcome(result: result, invalidations: removed)
    }
    let isDue = followUp.isDue
    // Taken after each try: a blocked `remove` tries again, and what the earlier tries removed
    // must not be lost.
    var removed: [String] = []
    var due = false
    let result = host.write(n, data, beforeWaiting: beforeWaiting) { k in
      // Nearly every store removes nothing: then no array is appended to.
      let paths = k.sysfs.takeRemovedPaths()
      if !paths.isEmpty { removed += paths }
      due = due || isDue(k)
    }
    told(node.path, data, result, follow: due)
    return StoreOutcome(result: result, invalidations: removed)
  }

  public func truncate(_ node: FileNode, to size: UInt64) throws(Errno) {
    _ = try attributes(of: node)
  }
}

/// What follows a store outside the kernel: a daemon's log file, device nodes and uevent
/// listeners, which only need a look when the kernel logged, made a group or raised an event.
public struct StoreFollowUp: Sendable {
  /// Asked under the host's lock right after the store: whether ``follow`` has anything to do.
  public var isDue: @Sendable (HostKernel) -> Bool
  /// Run after the lock is released, when ``isDue`` said so.
  public var follow: @Sendable () -> Void

  public init(isDue: @escaping @Sendable (HostKernel) -> Bool, follow: @escaping @Sendable () -> Void) {
    self.isDue = isDue
    self.follow = follow
  }

  /// Nothing follows.
  public static let none = StoreFollowUp(isDue: { _ in false }, follow: {})
}
