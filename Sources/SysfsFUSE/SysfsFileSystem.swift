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
public final class SysfsFileSystem: FileSystem {
  let host: EmulatedHost
  /// Called after every write (a store can log, change the tree, raise signals).
  let afterWrite: @Sendable () -> Void
  /// Told of every store: the path, the bytes written, and the errno it failed with (nil when
  /// it succeeded), for a daemon's log.
  let onStore: (@Sendable (_ path: String, _ data: [UInt8], _ error: Errno?) -> Void)?
  /// mtime/ctime of every node: the boot time, as sysfs shows.
  let bootTime = UInt64(Date().timeIntervalSince1970)
  let owner = (uid: getuid(), gid: getgid())

  public init(
    host: EmulatedHost, afterWrite: @escaping @Sendable () -> Void = {},
    onStore: (@Sendable (_ path: String, _ data: [UInt8], _ error: Errno?) -> Void)? = nil
  ) {
    self.host = host
    self.afterWrite = afterWrite
    self.onStore = onStore
  }

  public func attributes(of path: String) throws(Errno) -> FileAttributes {
    let info = try host.withKernel { (k) throws(Errno) in try k.sysfs.info(path, followLast: false) }
    let kind: FileKind =
      switch info.kind {
      case .directory: .directory
      case .symlink: .symlink
      case .attribute: .regular
      }
    // Owned by whoever runs the daemon: root on a real host, the user for an unprivileged one.
    var a = FileAttributes(
      kind: kind, permissions: info.mode, size: UInt64(info.size), inode: info.inode, time: bootTime)
    a.uid = owner.uid
    a.gid = owner.gid
    return a
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
    defer { afterWrite() }
    guard let onStore else { return try host.write(path, data) }
    do throws(Errno) {
      let n = try host.write(path, data)
      onStore(path, data, nil)
      return n
    } catch {
      onStore(path, data, error)
      throw error
    }
  }

  public func takeInvalidations() -> [String] {
    host.withKernel { $0.sysfs.takeRemovedPaths() }
  }

  /// `O_TRUNC` on a sysfs attribute changes nothing, as on a real host.
  public func truncate(_ path: String, to size: UInt64) throws(Errno) {
    _ = try attributes(of: path)
  }
}
