import APModel

#if canImport(Glibc)
  import Glibc
#endif

/// The host a plan acts on, as files under its sysfs root: what ``SysfsSnapshot`` reads and
/// ``ConfigurationApply`` writes. Paths are relative to the root (`bus/ap/apmask`).
///
/// The seam exists so that the same apply runs against `/sys` or the emulated host's mount
/// (``POSIXSysfsRoot``), and in tests against an emulated kernel in the same process, where a
/// wrapper can make one write fail without making it.
public protocol SysfsHost {
  /// The root as messages and a snapshot's `root` name it (`/sys`, the mount).
  var root: String { get }
  /// The whole file; nil when it does not exist; any other failure is its errno.
  func read(_ path: String) throws(Errno) -> [UInt8]?
  /// The names in a directory, without `.` and `..`, sorted; nil when it does not exist.
  func list(_ path: String) throws(Errno) -> [String]?
  /// Whether `path` is a directory (following a last symlink).
  func isDirectory(_ path: String) -> Bool
  /// The target of the symlink at `path`, as `readlink` gives it; nil when it is none.
  func linkTarget(_ path: String) -> String?
  /// One store as `echo VALUE > PATH` makes it: open, one `write(2)` of all the bytes, close.
  /// Nil on success, else the errno (a short write is `EIO`: sysfs stores take one buffer).
  func write(_ path: String, _ bytes: [UInt8]) -> Errno?
}

extension SysfsHost {
  /// The full path, for messages.
  public func fullPath(_ relative: String) -> String {
    root == "/" ? "/" + relative : root + "/" + relative
  }
}

/// A sysfs root reached with POSIX calls: `/sys` on an LPAR, the emulated host's FUSE mount, or a
/// plain copy of either.
public struct POSIXSysfsRoot: SysfsHost, Sendable {
  public let root: String

  /// `root` without a trailing slash (`/` stays `/`).
  public init(_ root: String) {
    self.root = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
  }

  public func read(_ path: String) throws(Errno) -> [UInt8]? {
    do throws(Errno) {
      return try FileContents.read(fullPath(path))
    } catch .noSuchFileOrDirectory {
      return nil
    }
  }

  public func list(_ path: String) throws(Errno) -> [String]? {
    guard let d = opendir(fullPath(path)) else {
      if errno == ENOENT { return nil }
      throw Errno(rawValue: errno)
    }
    defer { closedir(d) }
    var names: [String] = []
    while let e = readdir(d) {
      let name = withUnsafeBytes(of: e.pointee.d_name) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
      }
      if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
  }

  public func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(fullPath(path), &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
  }

  public func linkTarget(_ path: String) -> String? {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink(fullPath(path), &buffer, buffer.count - 1)
    guard n > 0 else { return nil }
    return String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  public func write(_ path: String, _ bytes: [UInt8]) -> Errno? {
    let fd = open(fullPath(path), O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { return Errno(rawValue: errno) }
    defer { close(fd) }
    let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    if n < 0 { return Errno(rawValue: errno) }
    if n != bytes.count { return .ioError }
    return nil
  }
}
