import FUSE
import Foundation
import HostKernel
import Sysfs
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// The emulated host's sysfs tree served as a FUSE ``FileSystem``: the adapter between the
/// generic FUSE server and the generic sysfs tree, which know nothing of each other. The daemon
/// and the FUSE benchmarks serve the same adapter.
///
/// A LOOKUP resolves one name in its parent's ``SysfsNode`` and hands the child's node to the
/// session as the ``FileNode``'s reference; GETATTR, OPEN, READ and READDIR take it back, so a
/// request on a known node resolves no path. The path-addressed methods stay for other callers.
public final class SysfsFileSystem: FileSystem {
  let host: EmulatedHost
  /// What follows every write outside the kernel (a store can log, change the tree, raise
  /// uevents).
  let followUp: StoreFollowUp
  /// Told of every store: the path, the bytes written, and the errno it failed with (nil when
  /// it succeeded), for a daemon's log.
  let onStore: (@Sendable (_ path: String, _ data: [UInt8], _ error: Errno?) -> Void)?
  /// mtime/ctime of every node: the boot time, as sysfs shows.
  let bootTime = UInt64(Date().timeIntervalSince1970)
  let owner = (uid: getuid(), gid: getgid())

  public init(
    host: EmulatedHost, followUp: StoreFollowUp = .none,
    onStore: (@Sendable (_ path: String, _ data: [UInt8], _ error: Errno?) -> Void)? = nil
  ) {
    self.host = host
    self.followUp = followUp
    self.onStore = onStore
  }

  public func attributes(of path: String) throws(Errno) -> FileAttributes {
    attributes(try host.withKernel { (k) throws(Errno) in try k.sysfs.info(path, followLast: false) })
  }

  func attributes(_ info: SysfsNodeInfo) -> FileAttributes {
    // Owned by whoever runs the daemon: root on a real host, the user for an unprivileged one.
    var a = FileAttributes(
      kind: Self.kind(info.kind), permissions: info.mode, size: UInt64(info.size), inode: info.inode,
      time: bootTime)
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
    try host.withKernel { (k) throws(Errno) in
      let base = path == "/" ? "" : path
      return try k.sysfs.list(path).map { (e) throws(Errno) in
        let kind: FileKind =
          switch e.kind {
          case .directory: .directory
          case .symlink: .symlink
          case .attribute: .regular
          }
        let inode = try k.sysfs.info(base + "/" + e.name, followLast: false).inode
        return FileSystemEntry(name: e.name, kind: kind, inode: inode)
      }
    }
  }

  public func readLink(_ path: String) throws(Errno) -> String {
    try host.withKernel { (k) throws(Errno) in try k.sysfs.readlink(path) }
  }

  public func open(_ path: String, read: Bool, write: Bool) throws(Errno) {
    try host.withKernel { (k) throws(Errno) in try k.sysfs.checkOpen(path, read: read, write: write) }
  }

  public func read(_ path: String) throws(Errno) -> [UInt8] {
    try host.read(path)
  }

  public func write(_ path: String, _ data: [UInt8]) throws(Errno) -> Int {
    let result: Result<Int, Errno>
    do throws(Errno) {
      result = .success(try host.write(path, data))
    } catch {
      result = .failure(error)
    }
    let due = followUp.isDue.map { isDue in host.withKernel { isDue($0) } } ?? true
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
    host.withKernel { $0.sysfs.takeRemovedPaths() }
  }

  /// `O_TRUNC` on a sysfs attribute changes nothing, as on a real host.
  public func truncate(_ path: String, to size: UInt64) throws(Errno) {
    _ = try attributes(of: path)
  }

  // MARK: - Nodes

  public func rootNode() -> FileNode {
    FileNode(path: "/", reference: host.withKernel { $0.sysfs.rootNode })
  }

  /// The sysfs node `node` stands for; nil for a node made without one (then its path serves).
  /// SysfsNode is final: comparing the class is the whole cast, without the runtime's
  /// dynamic cast on every request.
  func sysfsNode(_ node: FileNode) -> SysfsNode? {
    guard let r = node.reference, type(of: r) == SysfsNode.self else { return nil }
    return unsafeDowncast(r, to: SysfsNode.self)
  }

  public func lookUp(_ name: String, in parent: FileNode) throws(Errno) -> (FileNode, FileAttributes) {
    let (child, info) = try host.withKernel { (k) throws(Errno) -> (SysfsNode, SysfsNodeInfo) in
      let p: SysfsNode
      if let n = sysfsNode(parent) { p = n } else { p = try k.sysfs.node(at: parent.path) }
      let c = try k.sysfs.node(name, in: p)
      return (c, try k.sysfs.info(c))
    }
    return (FileNode(path: parent.childPath(name), reference: child), attributes(info))
  }

  public func attributes(of node: FileNode) throws(Errno) -> FileAttributes {
    guard let n = sysfsNode(node) else { return try attributes(of: node.path) }
    return attributes(try host.withKernel { (k) throws(Errno) in try k.sysfs.info(n) })
  }

  public func entries(of node: FileNode) throws(Errno) -> [FileSystemEntry] {
    guard let n = sysfsNode(node) else { return try entries(of: node.path) }
    return try host.withKernel { (k) throws(Errno) in
      try k.sysfs.entries(n).map {
        FileSystemEntry(name: $0.entry.name, kind: Self.kind($0.entry.kind), inode: $0.inode)
      }
    }
  }

  public func readLink(_ node: FileNode) throws(Errno) -> String {
    guard let n = sysfsNode(node) else { return try readLink(node.path) }
    return try host.withKernel { (k) throws(Errno) in try k.sysfs.readlink(n) }
  }

  public func open(_ node: FileNode, read: Bool, write: Bool) throws(Errno) {
    guard let n = sysfsNode(node) else { return try open(node.path, read: read, write: write) }
    try host.withKernel { (k) throws(Errno) in try k.sysfs.checkOpen(n, read: read, write: write) }
  }

  public func read(_ node: FileNode) throws(Errno) -> [UInt8] {
    guard let n = sysfsNode(node) else { return try read(node.path) }
    return try host.withKernel { (k) throws(Errno) in try k.sysfs.read(n) }
  }

  /// A store goes by the node through ``EmulatedHost/write(_:_:then:)``: a `remove` that the
  /// kernel blocks until the VMM releases the device waits there, without the lock, and asks the
  /// VMM again about every 10 seconds; that loop is the host's.
  public func write(_ node: FileNode, _ data: [UInt8]) throws(Errno) -> Int {
    try store(node, data).result.get()
  }

  /// The store, what it removed and whether there is anything to follow, in one hold of the
  /// host's lock; the follow-up and the log after it.
  public func store(_ node: FileNode, _ data: [UInt8]) -> StoreOutcome {
    guard let n = sysfsNode(node) else {
      let result: Result<Int, Errno>
      do throws(Errno) {
        result = .success(try write(node.path, data))
      } catch {
        result = .failure(error)
      }
      return StoreOutcome(result: result, invalidations: takeInvalidations())
    }
    let isDue = followUp.isDue
    // Taken after each try: a blocked `remove` tries again, and what the earlier tries removed
    // must not be lost.
    var removed: [String] = []
    var due = false
    let result = host.write(n, data) { k in
      removed += k.sysfs.takeRemovedPaths()
      due = due || (isDue?(k) ?? true)
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
  /// Nil: it always has.
  public var isDue: (@Sendable (HostKernel) -> Bool)?
  /// Run after the lock is released, when ``isDue`` said so.
  public var follow: @Sendable () -> Void

  public init(isDue: (@Sendable (HostKernel) -> Bool)?, follow: @escaping @Sendable () -> Void) {
    self.isDue = isDue
    self.follow = follow
  }

  /// Nothing follows.
  public static let none = StoreFollowUp(isDue: { _ in false }, follow: {})
}
