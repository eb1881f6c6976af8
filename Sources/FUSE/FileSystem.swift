import SystemPackage

/// What a node is.
public enum FileKind: Sendable, Hashable {
  case directory
  case regular
  case symlink

  /// The `S_IFMT` bits.
  var modeBits: UInt32 {
    switch self {
    case .directory: 0o040000
    case .regular: 0o100000
    case .symlink: 0o120000
    }
  }

  /// `DT_DIR`, `DT_REG`, `DT_LNK`.
  var direntType: UInt32 {
    switch self {
    case .directory: 4
    case .regular: 8
    case .symlink: 10
    }
  }
}

/// The metadata of a node, as `lstat` shows it.
public struct FileAttributes: Sendable, Hashable {
  public var kind: FileKind
  /// Permission bits (`0o644`).
  public var permissions: UInt16
  public var size: UInt64
  public var inode: UInt64
  public var uid: UInt32 = 0
  public var gid: UInt32 = 0
  /// Seconds since the epoch, for atime, mtime and ctime alike.
  public var time: UInt64 = 0

  public init(kind: FileKind, permissions: UInt16, size: UInt64, inode: UInt64, time: UInt64 = 0) {
    self.kind = kind
    self.permissions = permissions
    self.size = size
    self.inode = inode
    self.time = time
  }
}

/// A directory entry.
public struct FileSystemEntry: Sendable, Hashable {
  public var name: String
  public var kind: FileKind
  /// The inode number `lstat` would show for the entry.
  public var inode: UInt64
  public init(name: String, kind: FileKind, inode: UInt64) {
    self.name = name
    self.kind = kind
    self.inode = inode
  }
}

/// What a node id stands for: the node's path and, for a file system that resolves once, the
/// object it resolved the path to at LOOKUP (opaque to the session), so that later requests on
/// the node (GETATTR, OPEN, READ, WRITE, READDIR) take it back instead of a path to resolve again.
///
/// The session keeps a node in its node table while the kernel holds the id, and in every
/// handle opened on it. `reference` is touched only by the file system that made it, which
/// guards it as it guards its own state (sysfs: the host's lock); hence `@unchecked Sendable`.
///
/// Immutable, and a class: every request on a node copies it (out of the node table, into and
/// out of a handle), and a copy is then one retain, where a path and a reference were two.
public final class FileNode: @unchecked Sendable {
  /// The absolute path (`/`, `/bus/ap/apmask`), as the kernel's lookups named the node.
  public let path: String
  /// The file system's own reference, nil for a path-addressed file system.
  public let reference: AnyObject?

  public init(path: String, reference: AnyObject? = nil) {
    self.path = path
    self.reference = reference
  }

  /// The root of a path-addressed file system.
  public static let root = FileNode(path: "/")

  /// The path of the child `name`.
  public func childPath(_ name: String) -> String { path == "/" ? "/" + name : path + "/" + name }
}

/// What a FUSE server serves: a path-addressed file system whose files are generated on each
/// read and whose writes are single stores (sysfs's model). The session maps the kernel's node
/// ids and file handles onto ``FileNode``s; implementations never see the wire protocol.
///
/// Paths are absolute within the file system (`/`, `/bus/ap/apmask`). Every method may be
/// called from several threads at once. Errors are errnos; they reach the caller's system call.
///
/// The node-addressed methods (``lookUp(_:in:)``, ``attributes(of:)-(FileNode)`` and the others
/// taking a ``FileNode``) default to the path-addressed ones; a file system that can keep what
/// it resolved implements them and hands out nodes with a reference.
public protocol FileSystem: Sendable {
  /// `lstat`: does not follow a final symlink.
  func attributes(of path: String) throws(Errno) -> FileAttributes
  /// The entries of a directory, without `.` and `..`.
  func entries(of path: String) throws(Errno) -> [FileSystemEntry]
  /// The target of a symlink.
  func readLink(_ path: String) throws(Errno) -> String
  /// Checks that a file may be opened for reading and/or writing.
  func open(_ path: String, read: Bool, write: Bool) throws(Errno)
  /// The whole content of a file, generated now.
  func read(_ path: String) throws(Errno) -> [UInt8]
  /// One write of `data` to a file. Returns the count written.
  func write(_ path: String, _ data: [UInt8]) throws(Errno) -> Int
  /// A change of size (`O_TRUNC`, `truncate`).
  func truncate(_ path: String, to size: UInt64) throws(Errno)
  /// The paths that stopped existing since the last call, so that the kernel forgets entries
  /// it cached. Only needed by a file system served with entry caching.
  func takeInvalidations() -> [String]

  /// The node of `/`, which the kernel knows as node id 1 without a LOOKUP.
  func rootNode() -> FileNode
  /// LOOKUP: the child `name` of the directory `parent`, with its attributes (`lstat`).
  func lookUp(_ name: String, in parent: FileNode) throws(Errno) -> (FileNode, FileAttributes)
  /// `lstat` of a node.
  func attributes(of node: FileNode) throws(Errno) -> FileAttributes
  /// The entries of a directory node.
  func entries(of node: FileNode) throws(Errno) -> [FileSystemEntry]
  /// The target of a symlink node.
  func readLink(_ node: FileNode) throws(Errno) -> String
  /// The open check on a node.
  func open(_ node: FileNode, read: Bool, write: Bool) throws(Errno)
  /// The content of a file node, generated now.
  func read(_ node: FileNode) throws(Errno) -> [UInt8]
  /// One write to a file node.
  func write(_ node: FileNode, _ data: [UInt8]) throws(Errno) -> Int
  /// A WRITE as the session serves it: the write, and the paths that stopped existing by then
  /// (``takeInvalidations()``), so that a file system behind one lock can answer both from one
  /// hold of it. The invalidations come with a failed write too (a store can fail after it
  /// removed something). A store that waits for something outside the file system (a sysfs
  /// `remove` for a VMM to release its device) calls `beforeWaiting` first, so that the session
  /// has its other requests read meanwhile (see ``FUSESession/serve(threads:readers:)``).
  func store(_ node: FileNode, _ data: [UInt8], beforeWaiting: () -> Void) -> StoreOutcome
  /// A change of size of a node.
  func truncate(_ node: FileNode, to size: UInt64) throws(Errno)
}

/// What a WRITE did: the count written or the errno, and what the kernel must forget.
public struct StoreOutcome: Sendable {
  public var result: Result<Int, Errno>
  public var invalidations: [String]

  public init(result: Result<Int, Errno>, invalidations: [String]) {
    self.result = result
    self.invalidations = invalidations
  }
}

extension FileSystem {
  public func takeInvalidations() -> [String] { [] }

  public func rootNode() -> FileNode { .root }
  public func lookUp(_ name: String, in parent: FileNode) throws(Errno) -> (FileNode, FileAttributes) {
    let node = FileNode(path: parent.childPath(name))
    return (node, try attributes(of: node.path))
  }
  public func attributes(of node: FileNode) throws(Errno) -> FileAttributes { try attributes(of: node.path) }
  public func entries(of node: FileNode) throws(Errno) -> [FileSystemEntry] { try entries(of: node.path) }
  public func readLink(_ node: FileNode) throws(Errno) -> String { try readLink(node.path) }
  public func open(_ node: FileNode, read: Bool, write: Bool) throws(Errno) {
    try open(node.path, read: read, write: write)
  }
  public func read(_ node: FileNode) throws(Errno) -> [UInt8] { try read(node.path) }
  public func write(_ node: FileNode, _ data: [UInt8]) throws(Errno) -> Int { try write(node.path, data) }
  /// A file system whose writes never wait outside it needs no more than this.
  public func store(_ node: FileNode, _ data: [UInt8], beforeWaiting: () -> Void) -> StoreOutcome {
    let result = Result { () throws(Errno) in try write(node, data) }
    return StoreOutcome(result: result, invalidations: takeInvalidations())
  }

  /// A store outside a serving thread: nothing to hand on.
  public func store(_ node: FileNode, _ data: [UInt8]) -> StoreOutcome {
    store(node, data, beforeWaiting: {})
  }
  public func truncate(_ node: FileNode, to size: UInt64) throws(Errno) { try truncate(node.path, to: size) }
}
