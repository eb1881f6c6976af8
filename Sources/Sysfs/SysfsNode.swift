import SystemPackage

/// A node of the tree as a FUSE node id stands for it, resolved once: the directory that holds
/// it and, for an attribute or a link, the child's name in it (nil: the directory itself).
///
/// It holds the directory strongly, never the attribute's owner: the owner stays referenced
/// weakly, by its token, by its directory alone (``SysfsDirectory/OwnerReference``), so a node
/// kept by a FUSE client keeps no device alive, and an attribute whose owner is gone is gone for
/// the node too.
/// Each use looks the child up in the directory (one name, no path), so groups bound or unbound
/// since are seen. A directory that has left the tree since (removed, or replaced) falls back to
/// its path, resolved as before, so that a node means exactly what its path means.
///
/// Not thread-safe, as the tree is not: use it under the lock that guards the tree.
public final class SysfsNode: @unchecked Sendable {
  public let directory: SysfsDirectory
  public let name: String?

  // What `name` was last found to be in `directory`, kept while the directory's
  // ``SysfsDirectory/version`` is `foundVersion` and the child is stable there (see
  // ``SysfsDirectory/child(_:stable:)``): an open, a read and a write of the node then find it
  // without a lookup by name. An attribute's owner is kept unchecked and unretained, and used
  // only while the tree's ``SysfsJournal/ownersGone`` is still `foundOwnersGone`: no owner bound
  // in the tree has gone since, so this one is alive (its token would have counted its going),
  // and the node reads no weak reference and keeps no device alive.
  // Read and set only under the tree's lock, one access at a time: unchecked for exclusivity, so
  // that a request pays no runtime check for each.
  @exclusivity(unchecked) var foundVersion: UInt64 = 0
  // The attribute is kept unretained as well: while `foundVersion` is the directory's, the
  // directory (which the node holds) still holds it, stored or in a bound group. Both are
  // `Unmanaged`, so that a request can use them without taking a reference (see
  // ``SysfsTree/withFoundAttribute(_:_:)``).
  @exclusivity(unchecked) var foundAttribute: Unmanaged<SysfsAttribute>? = nil
  @exclusivity(unchecked) var foundOwner: Unmanaged<AnyObject>? = nil
  @exclusivity(unchecked) var foundOwnersGone: UInt64 = 0
  @exclusivity(unchecked) var foundTarget: String?

  public init(directory: SysfsDirectory, name: String? = nil) {
    self.directory = directory
    self.name = name
  }

  func found(attribute: SysfsAttribute, owner: AnyObject, ownersGone: UInt64, at version: UInt64) {
    foundAttribute = .passUnretained(attribute)
    foundOwner = .passUnretained(owner)
    foundOwnersGone = ownersGone
    foundTarget = nil
    foundVersion = version
  }

  func found(target: String, at version: UInt64) {
    foundAttribute = nil
    foundOwner = nil
    foundTarget = target
    foundVersion = version
  }

  /// The absolute path the node was resolved from.
  public var path: String {
    guard let name else { return directory.path }
    return directory.childPath(name)
  }
}

extension SysfsTree {
  /// The node of `/`.
  public var rootNode: SysfsNode { SysfsNode(directory: root) }

  /// Whether `directory` is still reached by its path: no directory left the tree since it was
  /// last found so (no weak reference is read then), or each parent up to the root holds it.
  func isAttached(_ directory: SysfsDirectory) -> Bool {
    // A directory of another tree (a guest's kernel that ran before this one in its slot) is
    // not in this one, whatever its count says.
    guard directory.journal === journal else { return false }
    let now = journal.detachments
    if directory.attachedAsOf == now { return true }
    var d = directory
    while d !== root {
      guard let p = d.parent, case .directory(let same)? = p.child(d.name), same === d else {
        return false
      }
      if p.attachedAsOf == now { break }
      d = p
    }
    directory.attachedAsOf = now
    return true
  }

  /// The child `name` of the directory node `parent` (LOOKUP): a directory becomes a node of its
  /// own, an attribute or a link a name in `parent`'s directory.
  public func node(_ name: String, in parent: SysfsNode) throws(Errno) -> SysfsNode {
    guard parent.name == nil, isAttached(parent.directory), name != ".", name != "..", !name.contains("/")
    else {
      // Not a plain name in a live directory: resolve the path as a path.
      return try node(at: parent.path == "/" ? "/" + name : parent.path + "/" + name)
    }
    let dir = parent.directory
    guard let c = dir.child(name) else { throw .noSuchFileOrDirectory }
    switch c {
    case .directory(let d): return SysfsNode(directory: d)
    case .attribute(_, let owner):
      guard owner.isAlive else { throw .noSuchFileOrDirectory }
      return SysfsNode(directory: dir, name: name)
    case .symlink: return SysfsNode(directory: dir, name: name)
    }
  }

  /// The node that `path` names (`lstat`'s resolution: a final link is the link).
  public func node(at path: String) throws(Errno) -> SysfsNode {
    switch try resolve(path, followLast: false) {
    case .directory(let d): return SysfsNode(directory: d)
    case .attribute(let a, _, let d): return SysfsNode(directory: d, name: a.name)
    case .symlink(_, let d):
      let name = Self.components(path).last ?? ""
      return SysfsNode(directory: d, name: name)
    }
  }

  /// What `node` is now: what its path resolves to, without resolving the path while its
  /// directory is in the tree.
  func resolve(_ node: SysfsNode, followLast: Bool = true) throws(Errno) -> Resolved {
    let dir = node.directory
    guard isAttached(dir) else { return try resolve(node.path, followLast: followLast) }
    guard let name = node.name else { return .directory(dir) }
    // An owner gone since falls through: the directory may show the name from another group.
    if let (a, owner) = foundAttribute(node, in: dir) {
      return .attribute(a.takeUnretainedValue(), owner.takeUnretainedValue(), in: dir)
    }
    if node.foundVersion == dir.version, let target = node.foundTarget {
      return try resolve(link: target, in: dir, followLast: followLast)
    }
    var stable = false
    guard let c = dir.child(name, stable: &stable) else { throw .noSuchFileOrDirectory }
    switch c {
    case .directory(let d): return .directory(d)
    case .attribute(let a, let owner):
      guard let object = owner.object else { throw .noSuchFileOrDirectory }
      // Only a stored or bound attribute is stable, and its owner comes by its token, bound in
      // this tree (the directory's journal, which isAttached found to be this tree's).
      if stable, owner.held == nil {
        node.found(attribute: a, owner: object, ownersGone: journal.ownersGone, at: dir.version)
      }
      return .attribute(a, object, in: dir)
    case .symlink(let target):
      if stable { node.found(target: target, at: dir.version) }
      return try resolve(link: target, in: dir, followLast: followLast)
    }
  }

  /// `body` on the attribute `node` was last found to be and its owner, while that still holds
  /// (as ``resolve(_:followLast:)`` takes it); nil, `body` not run, when the node must be
  /// resolved. The open, read and write of a known attribute: they then build no ``Resolved``
  /// and take no reference of what they use, where each reference taken was a retain and a
  /// release on every request.
  @inline(__always)
  func withFoundAttribute<T>(
    _ node: SysfsNode, _ body: (SysfsAttribute, AnyObject, SysfsDirectory) throws(Errno) -> T
  ) throws(Errno) -> T? {
    let dir = node.directory
    guard isAttached(dir), let (a, owner) = foundAttribute(node, in: dir) else { return nil }
    let result = a._withUnsafeGuaranteedRef { a in
      owner._withUnsafeGuaranteedRef { owner in Result { () throws(Errno) in try body(a, owner, dir) } }
    }
    return try result.get()
  }

  /// The attribute and owner `node` was last found to be in `dir`, its directory (found
  /// attached), while that still holds: the directory's version is the one it was found at, and
  /// no owner bound in the tree has gone since.
  @inline(__always)
  private func foundAttribute(_ node: SysfsNode, in dir: SysfsDirectory) -> (
    Unmanaged<SysfsAttribute>, Unmanaged<AnyObject>
  )? {
    guard node.foundVersion == dir.version, node.foundOwnersGone == journal.ownersGone,
      let a = node.foundAttribute, let owner = node.foundOwner
    else { return nil }
    return (a, owner)
  }

  private func resolve(link target: String, in dir: SysfsDirectory, followLast: Bool) throws(Errno)
    -> Resolved
  {
    if !followLast { return .symlink(target, in: dir) }
    return try resolve(target, from: dir, followLast: true, depth: 1)
  }

  /// `lstat` of a node.
  public func info(_ node: SysfsNode) throws(Errno) -> SysfsNodeInfo {
    Self.info(try resolve(node, followLast: false))
  }

  static func info(_ r: Resolved) -> SysfsNodeInfo {
    switch r {
    case .directory(let d):
      return SysfsNodeInfo(kind: .directory, mode: 0o755, size: 0, inode: d.serial)
    case .symlink(let target, let d):
      return SysfsNodeInfo(
        kind: .symlink, mode: 0o777, size: target.utf8.count, inode: Self.inode(d.serial, target))
    case .attribute(let a, _, let d):
      return SysfsNodeInfo(
        kind: .attribute, mode: a.mode, size: Self.pageSize, inode: Self.inode(d.serial, a.name))
    }
  }

  /// `readlink` of a node.
  public func readlink(_ node: SysfsNode) throws(Errno) -> String {
    guard case .symlink(let target, _) = try resolve(node, followLast: false) else { throw .invalidArgument }
    return target
  }

  /// `readdir` of a directory node (following a link to one): each entry with its `lstat` inode.
  public func entries(_ node: SysfsNode) throws(Errno) -> [(entry: SysfsDirectoryEntry, inode: UInt64)] {
    guard case .directory(let d) = try resolve(node) else { throw .notDirectory }
    return d.entryNames.compactMap { name in
      switch d.child(name) {
      case .directory(let c)?: (SysfsDirectoryEntry(name: name, kind: .directory), c.serial)
      case .symlink(let target)?:
        (SysfsDirectoryEntry(name: name, kind: .symlink), Self.inode(d.serial, target))
      case .attribute(let a, _)?:
        (SysfsDirectoryEntry(name: name, kind: .attribute), Self.inode(d.serial, a.name))
      case nil: nil
      }
    }
  }

  /// The open check of kernfs on a node (see ``checkOpen(_:read:write:)``).
  public func checkOpen(_ node: SysfsNode, read: Bool, write: Bool) throws(Errno) {
    let checked: Void? = try withFoundAttribute(node) { (a, _, _) throws(Errno) in
      try Self.checkOpen(a, read: read, write: write)
    }
    if checked == nil { try Self.checkOpen(try resolve(node), read: read, write: write) }
  }

  /// Reads an attribute node (see ``read(_:)-(String)``).
  public func read(_ node: SysfsNode) throws(Errno) -> [UInt8] {
    if let bytes = try withFoundAttribute(node, { (a, o, d) throws(Errno) in try show(a, o, in: d) }) {
      return bytes
    }
    return try read(try resolve(node))
  }

  /// Writes an attribute node, as one `write(2)` would (see ``write(_:_:)-([UInt8])``).
  @discardableResult
  public func write(_ node: SysfsNode, _ bytes: [UInt8]) throws(Errno) -> Int {
    if let n = try withFoundAttribute(node, { (a, o, _) throws(Errno) in try Self.store(a, o, bytes) }) {
      return n
    }
    return try write(try resolve(node), bytes)
  }
}
