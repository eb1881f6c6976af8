import APModel
import Planning
import Sysfs

@testable import HostKernel

/// The emulated kernel's sysfs tree as a ``SysfsHost``, in this process and without FUSE: the
/// same files the mount serves, read and written through the host's lock.
struct EmulatedSysfs: SysfsHost {
  let host: EmulatedHost
  var root: String { "/sys" }

  func read(_ path: String) throws(Errno) -> [UInt8]? {
    do throws(Errno) {
      return try host.read("/" + path)
    } catch .noSuchFileOrDirectory {
      return nil
    }
  }

  func list(_ path: String) throws(Errno) -> [String]? {
    do throws(Errno) {
      return try host.withKernel { (k) throws(Errno) in try k.sysfs.list("/" + path).map(\.name) }
    } catch .noSuchFileOrDirectory {
      return nil
    }
  }

  func isDirectory(_ path: String) -> Bool {
    (try? host.withKernel { (k) throws(Errno) in try k.sysfs.info("/" + path).kind }) == .directory
  }

  func linkTarget(_ path: String) -> String? {
    try? host.withKernel { (k) throws(Errno) in try k.sysfs.readlink("/" + path) }
  }

  func write(_ path: String, _ bytes: [UInt8]) -> Errno? {
    do {
      return try host.write("/" + path, bytes) == bytes.count ? nil : .ioError
    } catch {
      return error
    }
  }
}

/// A host whose write number `failing` (from 1, counting every write) fails with `errno` and is
/// not made: a store that the device refuses, or a write that never reaches the kernel.
final class FailingWrite<Inner: SysfsHost>: SysfsHost {
  let inner: Inner
  let failing: Int
  let errno: Errno
  private(set) var count = 0

  init(_ inner: Inner, failing: Int, errno: Errno = .ioError) {
    self.inner = inner
    self.failing = failing
    self.errno = errno
  }

  var root: String { inner.root }
  func read(_ path: String) throws(Errno) -> [UInt8]? { try inner.read(path) }
  func list(_ path: String) throws(Errno) -> [String]? { try inner.list(path) }
  func isDirectory(_ path: String) -> Bool { inner.isDirectory(path) }
  func linkTarget(_ path: String) -> String? { inner.linkTarget(path) }

  func write(_ path: String, _ bytes: [UInt8]) -> Errno? {
    count += 1
    return count == failing ? errno : inner.write(path, bytes)
  }
}

/// A host that records every write, its result, and (optionally) the whole AP state after it.
final class RecordingHost<Inner: SysfsHost>: SysfsHost {
  struct Record {
    var path: String
    var bytes: [UInt8]
    var errno: Errno?
    var after: SysfsSnapshot?
  }

  let inner: Inner
  let snapshots: Bool
  /// Runs after write number n (from 1) is made: another writer that acts between a write and its
  /// read-back.
  var afterWrite: (Int) -> Void = { _ in }
  private(set) var records: [Record] = []

  init(_ inner: Inner, snapshots: Bool = false) {
    self.inner = inner
    self.snapshots = snapshots
  }

  var root: String { inner.root }
  func read(_ path: String) throws(Errno) -> [UInt8]? { try inner.read(path) }
  func list(_ path: String) throws(Errno) -> [String]? { try inner.list(path) }
  func isDirectory(_ path: String) -> Bool { inner.isDirectory(path) }
  func linkTarget(_ path: String) -> String? { inner.linkTarget(path) }

  func write(_ path: String, _ bytes: [UInt8]) -> Errno? {
    let e = inner.write(path, bytes)
    afterWrite(records.count + 1)
    records.append(
      Record(
        path: path, bytes: bytes, errno: e, after: snapshots ? try? SysfsSnapshot.read(from: inner) : nil))
    return e
  }
}
