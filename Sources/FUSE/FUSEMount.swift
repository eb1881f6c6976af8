import Foundation
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// A mounted FUSE file system: the `/dev/fuse` descriptor and where it is mounted.
///
/// As root it mounts with mount(2); otherwise it asks `fusermount3` (which passes the descriptor
/// back over a socket, as libfuse does). It knows nothing of what is served.
public struct FUSEMount: Sendable {
  public let mountPoint: String
  public let fd: Int32
  let viaFusermount: Bool

  /// The mount options: `default_permissions` so that the kernel checks modes, and `allow_other`
  /// so that other users can use the tree, where allowed: always for root, for others only when
  /// /etc/fuse.conf says `user_allow_other` (fusermount3 refuses it otherwise).
  public static var defaultOptions: [String] {
    geteuid() == 0 || userAllowOther ? ["default_permissions", "allow_other"] : ["default_permissions"]
  }

  public static var userAllowOther: Bool {
    guard let conf = try? String(contentsOfFile: "/etc/fuse.conf", encoding: .utf8) else { return false }
    return conf.split(separator: "\n").contains {
      $0.trimmingCharacters(in: .whitespaces) == "user_allow_other"
    }
  }

  public enum MountError: Error, CustomStringConvertible {
    case openDevice(Errno)
    case mount(String, Errno)
    case fusermount(String)

    public var description: String {
      switch self {
      case .openDevice(let e): "cannot open /dev/fuse: \(e)"
      case .mount(let p, let e): "cannot mount on \(p): \(e)"
      case .fusermount(let m): "fusermount3: \(m)"
      }
    }
  }

  /// Mounts a new FUSE file system named `name` on `mountPoint` (which must exist).
  public static func mount(at mountPoint: String, name: String = "apvirt", options: [String] = defaultOptions)
    throws(MountError) -> FUSEMount
  {
    if geteuid() == 0 {
      let fd = open("/dev/fuse", O_RDWR | O_CLOEXEC)
      guard fd >= 0 else { throw .openDevice(Errno(rawValue: errno)) }
      let opts = (["fd=\(fd)", "rootmode=40755", "user_id=0", "group_id=0"] + options).joined(separator: ",")
      let rc = Glibc.mount(name, mountPoint, "fuse.\(name)", UInt(MS_NOSUID | MS_NODEV), opts)
      guard rc == 0 else {
        let e = Errno(rawValue: errno)
        close(fd)
        throw .mount(mountPoint, e)
      }
      return FUSEMount(mountPoint: mountPoint, fd: fd, viaFusermount: false)
    }
    return try mountWithFusermount(at: mountPoint, name: name, options: options)
  }

  /// The unprivileged path: `fusermount3 -o OPTS -- MOUNTPOINT` with `_FUSE_COMMFD` naming our
  /// end of a socket pair; it sends the `/dev/fuse` descriptor back with SCM_RIGHTS.
  static func mountWithFusermount(at mountPoint: String, name: String, options: [String]) throws(MountError)
    -> FUSEMount
  {
    var sv: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sv) == 0 else {
      throw .fusermount("socketpair: \(Errno(rawValue: errno))")
    }
    defer { close(sv[0]) }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    let opts = (["fsname=\(name)", "subtype=\(name)"] + options).joined(separator: ",")
    p.arguments = ["-c", "exec fusermount3 -o \"$1\" -- \"$2\"", "sh", opts, mountPoint]
    // Foundation's Process passes the child no descriptors but 0, 1 and 2: our end of the socket
    // pair goes in as fusermount3's standard input, and _FUSE_COMMFD names it as 0.
    var env = ProcessInfo.processInfo.environment
    env["_FUSE_COMMFD"] = "0"
    p.environment = env
    p.standardInput = FileHandle(fileDescriptor: sv[1], closeOnDealloc: false)
    do {
      try p.run()
    } catch {
      close(sv[1])
      throw .fusermount("cannot run: \(error)")
    }
    close(sv[1])
    let fd = receiveDescriptor(sv[0])
    p.waitUntilExit()
    guard p.terminationStatus == 0, let fd else {
      throw .fusermount("exited with status \(p.terminationStatus)")
    }
    return FUSEMount(mountPoint: mountPoint, fd: fd, viaFusermount: true)
  }

  static func receiveDescriptor(_ socket: Int32) -> Int32? {
    var byte: UInt8 = 0
    let controlSize = MemoryLayout<cmsghdr>.size + MemoryLayout<Int32>.size + 8
    let control = UnsafeMutableRawPointer.allocate(byteCount: controlSize, alignment: 8)
    defer { control.deallocate() }
    return withUnsafeMutablePointer(to: &byte) { bp -> Int32? in
      var iov = iovec(iov_base: UnsafeMutableRawPointer(bp), iov_len: 1)
      return withUnsafeMutablePointer(to: &iov) { iovp -> Int32? in
        var msg = msghdr()
        msg.msg_iov = iovp
        msg.msg_iovlen = 1
        msg.msg_control = control
        msg.msg_controllen = controlSize
        guard recvmsg(socket, &msg, 0) > 0 else { return nil }
        let cmsg = control.assumingMemoryBound(to: cmsghdr.self)
        guard msg.msg_controllen >= MemoryLayout<cmsghdr>.size, cmsg.pointee.cmsg_level == SOL_SOCKET,
          cmsg.pointee.cmsg_type == Int32(SCM_RIGHTS)
        else { return nil }
        return control.advanced(by: MemoryLayout<cmsghdr>.size).load(as: Int32.self)
      }
    }
  }

  /// Unmounts (lazily, so that a process still inside does not keep it busy) and closes the
  /// descriptor, which ends the session's threads.
  public func unmount() {
    Self.unmount(mountPoint, viaFusermount: viaFusermount)
    close(fd)
  }

  static func unmount(_ path: String, viaFusermount: Bool) {
    if viaFusermount || geteuid() != 0 {
      let p = Process()
      p.executableURL = URL(fileURLWithPath: "/bin/sh")
      p.arguments = ["-c", "exec fusermount3 -u -z -- \"$1\"", "sh", path]
      try? p.run()
      p.waitUntilExit()
    } else {
      _ = umount2(path, Int32(MNT_DETACH))
    }
  }

  /// Whether `path` is a FUSE mount whose server is gone (ENOTCONN), as a killed daemon leaves
  /// it. `statvfs` always asks the server (`stat` may be answered from the attribute cache).
  public static func isStale(_ path: String) -> Bool {
    var st = statvfs()
    return statvfs(path, &st) != 0 && errno == ENOTCONN
  }

  /// Clears a stale mount at `path`; true if there was one.
  @discardableResult
  public static func clearStale(_ path: String) -> Bool {
    guard isStale(path) else { return false }
    unmount(path, viaFusermount: false)
    return true
  }

  /// Whether something is mounted exactly at `path` (from /proc/self/mountinfo).
  public static func isMountPoint(_ path: String) -> Bool {
    guard let text = readProcFile("/proc/self/mountinfo") else { return false }
    // Plain string work: anything that stats the path would hang on a mount nobody serves.
    var target = path
    while target.count > 1 && target.hasSuffix("/") { target.removeLast() }
    return text.split(separator: "\n").contains { line in
      let fields = line.split(separator: " ")
      return fields.count > 4 && unescapingSpaces(fields[4]) == target
    }
  }

  /// A mountinfo path with its `\040` (a space, as the kernel escapes it) put back: the bytes
  /// replaced left to right, without Foundation's `replacingOccurrences` (CFString's search code,
  /// pages the daemon would keep mapped for this alone).
  static func unescapingSpaces(_ field: Substring) -> String {
    let escape: [UInt8] = Array("\\040".utf8)
    guard field.utf8.contains(escape[0]) else { return String(field) }
    let bytes = Array(field.utf8)
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count)
    var i = 0
    while i < bytes.count {
      if bytes[i] == escape[0] && bytes[i...].starts(with: escape) {
        out.append(UInt8(ascii: " "))
        i += escape.count
      } else {
        out.append(bytes[i])
        i += 1
      }
    }
    return String(decoding: out, as: UTF8.self)
  }

  /// The whole of a /proc file. Foundation's `String(contentsOfFile:)` trusts the size that
  /// `stat` reports, 0 for these, and returns what one read gives: about 4 KiB of
  /// `/proc/self/mountinfo`, so that with a few dozen mounts the later ones were not found.
  public static func readProcFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
      let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n < 0 && errno == EINTR { continue }
      if n < 0 { return nil }
      if n == 0 { break }
      out += chunk[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
  }
}
