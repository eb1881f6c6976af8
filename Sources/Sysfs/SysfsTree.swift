import SystemPackage

/// What a path names, after resolution.
public enum SysfsNodeKind: Hashable, Sendable {
  case directory
  case symlink
  case attribute
}

/// The metadata of a node: what `stat` reports.
public struct SysfsNodeInfo: Hashable, Sendable {
  public var kind: SysfsNodeKind
  /// Permission bits.
  public var mode: UInt16
  /// 4096 for attributes (as sysfs reports), the target length for links, 0 for directories.
  public var size: Int
  /// A stable identity: the directory's serial, or a hash of the attribute's path.
  public var inode: UInt64
}

/// A directory entry as `readdir` returns it.
public struct SysfsDirectoryEntry: Hashable, Sendable {
  public var name: String
  public var kind: SysfsNodeKind
}

/// A generic virtual sysfs: a tree of directories, attributes and symlinks, with the path
/// resolution and the open/read/write rules of the kernel's kernfs.
///
/// It knows nothing of AP: the host kernel registers its nodes here the way kobjects do. It has
/// no lock of its own; its owner serialises access.
public final class SysfsTree {
  let journal = SysfsJournal()
  public let root: SysfsDirectory
  /// sysfs hands a store at most one page.
  public static let pageSize = 4096
  /// Called with a message when a `show` produced more than a page and was cut, as kernfs logs
  /// `fill_read_buffer: ... returned bad count`.
  public var onTruncatedShow: ((String) -> Void)?

  public init() {
    root = SysfsDirectory(name: "", parent: nil, journal: journal)
  }

  /// The paths removed since the last call (directories, attributes, links, replaced links).
  /// Recording starts with the first call.
  public func takeRemovedPaths() -> [String] {
    journal.recording = true
    return journal.take()
  }

  /// The journal's bound and what it dropped (see ``SysfsJournal``).
  public var removalJournal: SysfsJournal { journal }

  /// How many removed paths wait to be taken: what a caller that never takes them would let grow.
  public var pendingRemovalCount: Int { journal.paths.count }

  enum Resolved {
    case directory(SysfsDirectory)
    case symlink(String, in: SysfsDirectory)
    case attribute(SysfsAttribute, AnyObject, in: SysfsDirectory)
  }

  static func components(_ path: String) -> [String] {
    path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
  }

  /// Resolves `path` (absolute, or relative to `base`). Intermediate symlinks are always
  /// followed; the last one only with `followLast`.
  func resolve(_ path: String, from base: SysfsDirectory? = nil, followLast: Bool = true, depth: Int = 0)
    throws(Errno) -> Resolved
  {
    if depth > 40 { throw .tooManySymbolicLinkLevels }
    var dir = path.hasPrefix("/") ? root : (base ?? root)
    // The names are taken from the path's bytes one at a time (what ``components(_:)`` splits
    // out), so that a store's path costs no arrays: a name is the bytes between slashes, and
    // the last is the one no further name follows.
    let utf8 = path.utf8
    var i = utf8.startIndex
    while i != utf8.endIndex && utf8[i] == UInt8(ascii: "/") { i = utf8.index(after: i) }
    while i != utf8.endIndex {
      var end = i
      while end != utf8.endIndex && utf8[end] != UInt8(ascii: "/") { end = utf8.index(after: end) }
      let name = String(path[i..<end])
      i = end
      while i != utf8.endIndex && utf8[i] == UInt8(ascii: "/") { i = utf8.index(after: i) }
      let last = i == utf8.endIndex
      if name == "." {
        if last { return .directory(dir) }
        continue
      }
      if name == ".." {
        dir = dir.parent ?? root
        if last { return .directory(dir) }
        continue
      }
      guard let c = dir.child(name) else { throw .noSuchFileOrDirectory }
      switch c {
      case .directory(let d):
        if last { return .directory(d) }
        dir = d
      case .attribute(let a, let owner):
        guard let object = owner.object else { throw .noSuchFileOrDirectory }
        if last { return .attribute(a, object, in: dir) }
        throw .notDirectory
      case .symlink(let target):
        if last && !followLast { return .symlink(target, in: dir) }
        let r = try resolve(target, from: dir, followLast: true, depth: depth + 1)
        if last { return r }
        guard case .directory(let d) = r else { throw .notDirectory }
        dir = d
      }
    }
    return .directory(dir)
  }

  /// The directory at `path`, following symlinks.
  public func directory(at path: String) throws(Errno) -> SysfsDirectory {
    guard case .directory(let d) = try resolve(path) else { throw .notDirectory }
    return d
  }

  /// Creates the directories of `path` as needed and returns the last.
  @discardableResult
  public func makeDirectories(_ path: String) -> SysfsDirectory {
    var d = root
    for name in Self.components(path) { d = d.directory(name) }
    return d
  }

  /// The canonical absolute path that `path` resolves to (`realpath`).
  public func canonicalPath(_ path: String) throws(Errno) -> String {
    switch try resolve(path) {
    case .directory(let d): return d.path
    case .attribute(let a, _, let d): return (d.path == "/" ? "" : d.path) + "/" + a.name
    case .symlink: throw .tooManySymbolicLinkLevels
    }
  }

  /// `stat` (follows a final symlink) or `lstat` (`followLast: false`).
  public func info(_ path: String, followLast: Bool = true) throws(Errno) -> SysfsNodeInfo {
    Self.info(try resolve(path, followLast: followLast))
  }

  static func inode(_ dir: UInt64, _ name: String) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ dir
    for b in name.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
    return h | 1 << 63
  }

  /// `readlink`.
  public func readlink(_ path: String) throws(Errno) -> String {
    guard case .symlink(let target, _) = try resolve(path, followLast: false) else { throw .invalidArgument }
    return target
  }

  /// `readdir`: the entries of a directory, sorted by name.
  public func list(_ path: String) throws(Errno) -> [SysfsDirectoryEntry] {
    let d = try directory(at: path)
    return d.entryNames.compactMap { name in
      switch d.child(name) {
      case .directory?: SysfsDirectoryEntry(name: name, kind: .directory)
      case .symlink?: SysfsDirectoryEntry(name: name, kind: .symlink)
      case .attribute?: SysfsDirectoryEntry(name: name, kind: .attribute)
      case nil: nil
      }
    }
  }

  /// The open check of kernfs: reading needs a readable mode and a `show`, writing a writable
  /// mode and a `store`, else `EACCES`; directories give `EISDIR`.
  public func checkOpen(_ path: String, read: Bool, write: Bool) throws(Errno) {
    try Self.checkOpen(try resolve(path), read: read, write: write)
  }

  static func checkOpen(_ resolved: Resolved, read: Bool, write: Bool) throws(Errno) {
    switch resolved {
    case .directory:
      if write { throw .isDirectory }
    case .symlink:
      throw .tooManySymbolicLinkLevels
    case .attribute(let a, _, _): try checkOpen(a, read: read, write: write)
    }
  }

  static func checkOpen(_ a: SysfsAttribute, read: Bool, write: Bool) throws(Errno) {
    if read && !a.isReadable { throw .permissionDenied }
    if write && !a.isWritable { throw .permissionDenied }
  }

  /// Reads an attribute: the whole `show` output, cut to one page less one byte as kernfs does.
  public func read(_ path: String) throws(Errno) -> [UInt8] {
    try read(try resolve(path))
  }

  func read(_ resolved: Resolved) throws(Errno) -> [UInt8] {
    guard case .attribute(let a, let owner, let d) = resolved else { throw .isDirectory }
    return try show(a, owner, in: d)
  }

  /// `a`'s `show` of `owner`, an attribute of `d`.
  func show(_ a: SysfsAttribute, _ owner: AnyObject, in d: SysfsDirectory) throws(Errno) -> [UInt8] {
    guard let show = a.show, a.isReadable else { throw .permissionDenied }
    var bytes = Array(try show(owner).utf8)
    if bytes.count >= Self.pageSize {
      onTruncatedShow?("fill_read_buffer: \(d.path)/\(a.name) returned bad count")
      bytes = Array(bytes.prefix(Self.pageSize - 1))
    }
    return bytes
  }

  public func readString(_ path: String) throws(Errno) -> String {
    String(decoding: try read(path), as: UTF8.self)
  }

  /// Writes an attribute, as one `write(2)` would: returns the count stored, which may be short.
  ///
  /// kernfs (`kernfs_fop_write_iter`) refuses a write with `E2BIG` only for files that declare an
  /// `atomic_write_len`; sysfs attribute files declare none, so a longer write is cut to one
  /// page: `store` gets the first 4096 bytes (kernfs NUL-terminates its copy, which a store that
  /// reads a C string sees as the end) and the write returns 4096, leaving the writer to send
  /// the rest as a new store. `sysfs_kf_write` ignores the file offset, so a write at any offset
  /// stores the same bytes, and stores nothing for an empty write, which returns 0.
  @discardableResult
  public func write(_ path: String, _ bytes: [UInt8]) throws(Errno) -> Int {
    try write(try resolve(path), bytes)
  }

  func write(_ resolved: Resolved, _ bytes: [UInt8]) throws(Errno) -> Int {
    guard case .attribute(let a, let owner, _) = resolved else { throw .isDirectory }
    return try Self.store(a, owner, bytes)
  }

  /// `a`'s `store` of `bytes` to `owner` (see ``write(_:_:)-([UInt8])``).
  static func store(_ a: SysfsAttribute, _ owner: AnyObject, _ bytes: [UInt8]) throws(Errno) -> Int {
    guard let store = a.store, a.isWritable else { throw .permissionDenied }
    if bytes.isEmpty { return 0 }
    // The bytes themselves when they fit (a copy of the array would be one more reference).
    guard bytes.count > Self.pageSize else {
      try store(owner, bytes)
      return bytes.count
    }
    try store(owner, Array(bytes.prefix(Self.pageSize)))
    return Self.pageSize
  }

  @discardableResult
  public func write(_ path: String, _ text: String) throws(Errno) -> Int {
    try write(path, Array(text.utf8))
  }
}
