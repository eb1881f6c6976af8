import FUSE
import Foundation
import HostKernel
import Sysfs
import SysfsFUSE
import SystemPackage
import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// The guests' own sysfs trees served as one FUSE file system: `/<guest>/bus/ap/...` and
/// `/<guest>/devices/ap/...` are what `lszcrypt` inside that guest would read. Mounted beside the
/// host's tree (`/run/apvirt/guests`); `apvirt exec --guest NAME` binds one over `/sys`.
///
/// Below its root (one directory per running guest) each guest's tree is served by the host's
/// own adapter, ``SysfsFileSystem`` over the guest's kernel (``SysfsFileSystem/Tree/guest(_:inodeTag:)``):
/// this file system only puts the guest's name in front. A node found below `/<guest>` keeps
/// the adapter it came from (``GuestNode``), so a request on it resolves no path and asks the
/// registry nothing; a guest that is gone, or a new one under the same name, leaves the nodes of
/// the old one answering ENOENT.
final class GuestsFileSystem: FileSystem {
  let host: EmulatedHost
  let registry: GuestRegistry
  let bootTime = UInt64(Date().timeIntervalSince1970)
  let owner = (uid: getuid(), gid: getgid())

  init(host: EmulatedHost, registry: GuestRegistry) {
    self.host = host
    self.registry = registry
  }

  /// A node of one guest's tree: the adapter serving that tree, and the node within it (its path
  /// without the guest's name).
  final class GuestNode {
    let name: String
    let adapter: SysfsFileSystem
    let inner: FileNode

    init(name: String, adapter: SysfsFileSystem, inner: FileNode) {
      self.name = name
      self.adapter = adapter
      self.inner = inner
    }
  }

  /// The adapter serving `guest`'s tree. Made at each lookup of the guest's directory; its times
  /// are this mount's, as every node of the mount shows one time.
  func adapter(_ guest: Guest) -> SysfsFileSystem {
    SysfsFileSystem(
      host: host, tree: .guest(guest.kernel, inodeTag: UInt64(guest.vmID) << 48), bootTime: bootTime)
  }

  /// The guest's part of a node, nil for the root (`/`). A node made without a reference (a path
  /// the session asks for by path alone) is found again from its path.
  func guestNode(_ node: FileNode) throws(Errno) -> GuestNode? {
    if let r = node.reference, type(of: r) == GuestNode.self { return unsafeDowncast(r, to: GuestNode.self) }
    guard let (guest, name, path) = try locate(node.path) else { return nil }
    return GuestNode(name: name, adapter: adapter(guest), inner: FileNode(path: path))
  }

  /// Splits `/<guest>/rest` into the guest (from the registry), its name and the path in its
  /// tree; nil for `/`.
  func locate(_ path: String) throws(Errno) -> (guest: Guest, name: String, path: String)? {
    let parts = path.split(separator: "/", maxSplits: 1).map(String.init)
    guard let name = parts.first else { return nil }
    guard let g = registry.guest(named: name) else { throw .noSuchFileOrDirectory }
    return (g, name, "/" + (parts.count > 1 ? parts[1] : ""))
  }

  var rootAttributes: FileAttributes {
    var a = FileAttributes(kind: .directory, permissions: 0o755, size: 0, inode: 1, time: bootTime)
    a.uid = owner.uid
    a.gid = owner.gid
    return a
  }

  var rootEntries: [FileSystemEntry] {
    registry.names.enumerated().map {
      FileSystemEntry(name: $0.element, kind: .directory, inode: UInt64($0.offset + 2))
    }
  }

  // MARK: - Nodes

  func lookUp(_ name: String, in parent: FileNode) throws(Errno) -> (FileNode, FileAttributes) {
    let path = parent.childPath(name)
    guard let p = try guestNode(parent) else {
      // A guest's directory: its tree's root, as the guest's kernel has it now.
      guard let guest = registry.guest(named: name) else { throw .noSuchFileOrDirectory }
      let a = adapter(guest)
      let root = a.rootNode()
      let attributes = try a.attributes(of: root)
      return (FileNode(path: path, reference: GuestNode(name: name, adapter: a, inner: root)), attributes)
    }
    let (child, attributes) = try p.adapter.lookUp(name, in: p.inner)
    return (
      FileNode(path: path, reference: GuestNode(name: p.name, adapter: p.adapter, inner: child)), attributes
    )
  }

  func attributes(of node: FileNode) throws(Errno) -> FileAttributes {
    guard let g = try guestNode(node) else { return rootAttributes }
    return try g.adapter.attributes(of: g.inner)
  }

  func entries(of node: FileNode) throws(Errno) -> [FileSystemEntry] {
    guard let g = try guestNode(node) else { return rootEntries }
    return try g.adapter.entries(of: g.inner)
  }

  func readLink(_ node: FileNode) throws(Errno) -> String {
    guard let g = try guestNode(node) else { throw .invalidArgument }
    return try g.adapter.readLink(g.inner)
  }

  func open(_ node: FileNode, read: Bool, write: Bool) throws(Errno) {
    guard let g = try guestNode(node) else { throw .isDirectory }
    try g.adapter.open(g.inner, read: read, write: write)
  }

  func read(_ node: FileNode) throws(Errno) -> [UInt8] {
    guard let g = try guestNode(node) else { throw .isDirectory }
    return try g.adapter.read(g.inner)
  }

  func write(_ node: FileNode, _ data: [UInt8]) throws(Errno) -> Int {
    try store(node, data).result.get()
  }

  /// The guest's store; what it removed, with the guest's name in front.
  func store(_ node: FileNode, _ data: [UInt8], beforeWaiting: () -> Void) -> StoreOutcome {
    let g: GuestNode?
    do throws(Errno) {
      g = try guestNode(node)
    } catch {
      return StoreOutcome(result: .failure(error), invalidations: [])
    }
    guard let g else { return StoreOutcome(result: .failure(.isDirectory), invalidations: []) }
    var outcome = g.adapter.store(g.inner, data, beforeWaiting: beforeWaiting)
    outcome.invalidations = outcome.invalidations.map { "/" + g.name + $0 }
    return outcome
  }

  func truncate(_ node: FileNode, to size: UInt64) throws(Errno) {
    _ = try attributes(of: node)
  }

  // MARK: - Paths

  func attributes(of path: String) throws(Errno) -> FileAttributes {
    try attributes(of: FileNode(path: path))
  }

  func entries(of path: String) throws(Errno) -> [FileSystemEntry] {
    try entries(of: FileNode(path: path))
  }

  func readLink(_ path: String) throws(Errno) -> String {
    try readLink(FileNode(path: path))
  }

  func open(_ path: String, read: Bool, write: Bool) throws(Errno) {
    try open(FileNode(path: path), read: read, write: write)
  }

  func read(_ path: String) throws(Errno) -> [UInt8] {
    try read(FileNode(path: path))
  }

  func write(_ path: String, _ data: [UInt8]) throws(Errno) -> Int {
    try write(FileNode(path: path), data)
  }

  func truncate(_ path: String, to size: UInt64) throws(Errno) {
    _ = try attributes(of: path)
  }
}
