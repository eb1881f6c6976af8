import FUSE
import Foundation
import HostKernel
import Sysfs
import SystemPackage
import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// The guests' own sysfs trees served as one FUSE file system: `/<guest>/bus/ap/...` and
/// `/<guest>/devices/ap/...` are what `lszcrypt` inside that guest would read. Mounted beside the
/// host's tree (`/run/apvirt/guests`); `apvirt exec --guest NAME` binds one over `/sys`.
final class GuestsFileSystem: FileSystem {
  let host: EmulatedHost
  let registry: GuestRegistry
  let bootTime = UInt64(Date().timeIntervalSince1970)
  let owner = (uid: getuid(), gid: getgid())

  init(host: EmulatedHost, registry: GuestRegistry) {
    self.host = host
    self.registry = registry
  }

  /// Splits `/<guest>/rest` into the guest (from the registry) and the path in its tree.
  func locate(_ path: String) throws(Errno) -> (guest: Guest, path: String)? {
    let parts = path.split(separator: "/", maxSplits: 1).map(String.init)
    guard let name = parts.first else { return nil }
    guard let g = registry.guest(named: name) else { throw .noSuchFileOrDirectory }
    return (g, "/" + (parts.count > 1 ? parts[1] : ""))
  }

  /// Runs `body` on the guest's own kernel's sysfs tree (under the host's lock, which the
  /// guest's kernel runs under).
  func inGuest<T: Sendable>(_ guest: Guest, _ body: (SysfsTree) throws(Errno) -> T) throws(Errno) -> T {
    try guest.withKernel { (g) throws(Errno) -> T in
      guard let g else { throw .noSuchFileOrDirectory }
      return try body(g.sysfs)
    }
  }

  func attributes(of path: String) throws(Errno) -> FileAttributes {
    guard let (guest, p) = try locate(path) else {
      return attrs(FileAttributes(kind: .directory, permissions: 0o755, size: 0, inode: 1, time: bootTime))
    }
    let vm = guest.vmID
    let info = try inGuest(guest) { (t) throws(Errno) in try t.info(p, followLast: false) }
    let kind: FileKind =
      switch info.kind {
      case .directory: .directory
      case .symlink: .symlink
      case .attribute: .regular
      }
    return attrs(
      FileAttributes(
        kind: kind, permissions: info.mode, size: UInt64(info.size), inode: info.inode ^ UInt64(vm) << 48,
        time: bootTime))
  }

  func attrs(_ a: FileAttributes) -> FileAttributes {
    var a = a
    a.uid = owner.uid
    a.gid = owner.gid
    return a
  }

  func entries(of path: String) throws(Errno) -> [FileSystemEntry] {
    guard let (guest, p) = try locate(path) else {
      return registry.names.enumerated().map {
        FileSystemEntry(name: $0.element, kind: .directory, inode: UInt64($0.offset + 2))
      }
    }
    let vm = guest.vmID
    return try inGuest(guest) { (t) throws(Errno) in
      let base = p == "/" ? "" : p
      return try t.list(p).map { (e) throws(Errno) in
        let kind: FileKind =
          switch e.kind {
          case .directory: .directory
          case .symlink: .symlink
          case .attribute: .regular
          }
        // glibc skips entries whose inode is 0: give each its real one.
        let inode = try t.info(base + "/" + e.name, followLast: false).inode ^ UInt64(vm) << 48
        return FileSystemEntry(name: e.name, kind: kind, inode: inode)
      }
    }
  }

  func readLink(_ path: String) throws(Errno) -> String {
    guard let (guest, p) = try locate(path) else { throw .invalidArgument }
    return try inGuest(guest) { (t) throws(Errno) in try t.readlink(p) }
  }

  func open(_ path: String, read: Bool, write: Bool) throws(Errno) {
    guard let (guest, p) = try locate(path) else { throw .isDirectory }
    try inGuest(guest) { (t) throws(Errno) in try t.checkOpen(p, read: read, write: write) }
  }

  func read(_ path: String) throws(Errno) -> [UInt8] {
    guard let (guest, p) = try locate(path) else { throw .isDirectory }
    return try inGuest(guest) { (t) throws(Errno) in try t.read(p) }
  }

  func write(_ path: String, _ data: [UInt8]) throws(Errno) -> Int {
    guard let (guest, p) = try locate(path) else { throw .isDirectory }
    return try inGuest(guest) { (t) throws(Errno) in try t.write(p, data) }
  }

  func truncate(_ path: String, to size: UInt64) throws(Errno) {
    _ = try attributes(of: path)
  }
}
