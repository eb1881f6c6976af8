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

/// What a FUSE server serves: a path-addressed file system whose files are generated on each
/// read and whose writes are single stores (sysfs's model). The session maps the kernel's node
/// ids and file handles onto paths; implementations never see the wire protocol.
///
/// Paths are absolute within the file system (`/`, `/bus/ap/apmask`). Every method may be
/// called from several threads at once. Errors are errnos; they reach the caller's system call.
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
}

extension FileSystem {
  public func takeInvalidations() -> [String] { [] }
}
