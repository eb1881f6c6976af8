/// The structures of `linux/fuse.h` that apvirt's server speaks, encoded and decoded by hand.
/// Sizes and field orders are the kernel's; every decoder returns nil for a short buffer.
public enum FUSEWire {
  /// The protocol version this server implements. The kernel negotiates down to the lower of
  /// its own and ours.
  public static let kernelVersion: UInt32 = 7
  public static let kernelMinorVersion: UInt32 = 33

  /// `struct fuse_in_header`: 40 bytes.
  public struct InHeader: Sendable {
    public var len: UInt32
    public var opcode: UInt32
    public var unique: UInt64
    public var nodeid: UInt64
    public var uid: UInt32
    public var gid: UInt32
    public var pid: UInt32
    public static let size = 40

    public static func decode(_ r: inout WireReader) -> InHeader? {
      guard let len = r.read(UInt32.self), let opcode = r.read(UInt32.self), let unique = r.read(UInt64.self),
        let nodeid = r.read(UInt64.self), let uid = r.read(UInt32.self), let gid = r.read(UInt32.self),
        let pid = r.read(UInt32.self), r.skip(4)
      else { return nil }
      return InHeader(len: len, opcode: opcode, unique: unique, nodeid: nodeid, uid: uid, gid: gid, pid: pid)
    }
  }

  /// `struct fuse_out_header`: 16 bytes. `error` is 0 or a negated errno (a notification's
  /// code, with `unique` 0). A reply's header is written by ``ReplyBuffer/seal(error:unique:)``
  /// in front of its payload once the payload's length is known.
  public static func outHeader(into w: inout some WireSink, len: Int, error: Int32, unique: UInt64) {
    w.write(UInt32(len))
    w.write(error)
    w.write(unique)
  }

  /// `struct fuse_init_in` (the first 16 bytes, which every version has).
  public struct InitIn: Sendable {
    public var major: UInt32
    public var minor: UInt32
    public var maxReadahead: UInt32
    public var flags: UInt32

    public static func decode(_ r: inout WireReader) -> InitIn? {
      guard let major = r.read(UInt32.self), let minor = r.read(UInt32.self),
        let ra = r.read(UInt32.self), let flags = r.read(UInt32.self)
      else { return nil }
      return InitIn(major: major, minor: minor, maxReadahead: ra, flags: flags)
    }
  }

  /// INIT flags this server uses.
  public enum InitFlags {
    public static let asyncRead: UInt32 = 1 << 0
    public static let atomicOTrunc: UInt32 = 1 << 3
    public static let bigWrites: UInt32 = 1 << 5
    public static let dontMask: UInt32 = 1 << 6
    public static let autoInvalData: UInt32 = 1 << 12
    public static let doReaddirplus: UInt32 = 1 << 13
    public static let parallelDirops: UInt32 = 1 << 18
    public static let maxPages: UInt32 = 1 << 22
    /// 7.33: the server clears suid/sgid and capabilities itself, so the kernel asks for no
    /// `security.capability` before a write or a truncating open.
    public static let handleKillprivV2: UInt32 = 1 << 28
  }

  /// `struct fuse_init_out`: 64 bytes from 7.23 on (24 before).
  public static func initOut(
    into w: inout some WireSink, minor: UInt32, maxReadahead: UInt32, flags: UInt32, maxWrite: UInt32,
    maxPages: UInt16
  ) {
    w.write(kernelVersion)
    w.write(minor)
    w.write(maxReadahead)
    w.write(flags)
    w.write(UInt16(16))  // max_background
    w.write(UInt16(12))  // congestion_threshold
    w.write(maxWrite)
    if minor >= 23 {
      w.write(UInt32(1))  // time_gran: 1 ns
      w.write(maxPages)
      w.write(UInt16(0))  // map_alignment
      w.zeros(32)  // flags2, max_stack_depth, unused[6]
    }
  }

  /// `struct fuse_attr`: 88 bytes.
  public static func encodeAttr(_ a: FileAttributes, into w: inout some WireSink) {
    w.write(a.inode)
    w.write(a.size)
    w.write((a.size + 511) / 512)  // blocks
    w.write(a.time)  // atime
    w.write(a.time)  // mtime
    w.write(a.time)  // ctime
    w.write(UInt32(0))
    w.write(UInt32(0))
    w.write(UInt32(0))
    w.write(a.kind.modeBits | UInt32(a.permissions))
    w.write(UInt32(a.kind == .directory ? 2 : 1))  // nlink
    w.write(a.uid)
    w.write(a.gid)
    w.write(UInt32(0))  // rdev
    w.write(UInt32(4096))  // blksize
    w.write(UInt32(0))  // flags
  }

  /// `struct fuse_entry_out`: 128 bytes.
  public static func entryOut(
    into w: inout some WireSink, nodeid: UInt64, attr: FileAttributes, entryValid: Timeout, attrValid: Timeout
  ) {
    w.write(nodeid)
    w.write(UInt64(0))  // generation
    w.write(entryValid.seconds)
    w.write(attrValid.seconds)
    w.write(entryValid.nanoseconds)
    w.write(attrValid.nanoseconds)
    encodeAttr(attr, into: &w)
  }

  /// `struct fuse_attr_out`: 104 bytes.
  public static func attrOut(into w: inout some WireSink, _ attr: FileAttributes, valid: Timeout) {
    w.write(valid.seconds)
    w.write(valid.nanoseconds)
    w.write(UInt32(0))
    encodeAttr(attr, into: &w)
  }

  /// `FUSE_GETATTR_FH` in `fuse_getattr_in.getattr_flags`: the request names an open file.
  public static let getattrFH: UInt32 = 1 << 0

  /// `struct fuse_open_out`: 16 bytes.
  public struct OpenOut: Sendable, Hashable {
    public var fh: HandleID
    public var openFlags: UInt32

    public func encode(into w: inout some WireSink) {
      w.write(fh.rawValue)
      w.write(openFlags)
      w.write(UInt32(0))
    }
  }

  public static func openOut(fh: HandleID, openFlags: UInt32) -> OpenOut {
    OpenOut(fh: fh, openFlags: openFlags)
  }

  public enum OpenFlags {
    public static let directIO: UInt32 = 1 << 0
    public static let keepCache: UInt32 = 1 << 1
    public static let nonSeekable: UInt32 = 1 << 2
  }

  /// `struct fuse_read_in` (the fields used: fh, offset, size).
  public struct ReadIn: Sendable {
    public var fh: HandleID
    public var offset: UInt64
    public var size: UInt32

    public static func decode(_ r: inout WireReader) -> ReadIn? {
      guard let fh = r.read(UInt64.self), let off = r.read(UInt64.self), let size = r.read(UInt32.self) else {
        return nil
      }
      return ReadIn(fh: HandleID(fh), offset: off, size: size)
    }
  }

  /// `struct fuse_write_in`: 40 bytes from 7.9 on, then the data.
  public struct WriteIn: Sendable {
    public var fh: HandleID
    public var offset: UInt64
    public var size: UInt32

    public static func decode(_ r: inout WireReader) -> WriteIn? {
      guard let fh = r.read(UInt64.self), let off = r.read(UInt64.self), let size = r.read(UInt32.self),
        r.skip(4 + 8 + 4 + 4)
      else { return nil }
      return WriteIn(fh: HandleID(fh), offset: off, size: size)
    }
  }

  /// `struct fuse_write_out`: 8 bytes.
  public static func writeOut(into w: inout some WireSink, size: UInt32) {
    w.write(size)
    w.write(UInt32(0))
  }

  /// `struct fuse_getxattr_out`: the size a GETXATTR or LISTXATTR with a zero size asks for.
  public static func getxattrOut(into w: inout some WireSink, size: UInt32) {
    w.write(size)
    w.write(UInt32(0))
  }

  /// `struct fuse_setattr_in` (the fields used: valid, fh, size).
  public struct SetattrIn: Sendable {
    public var valid: UInt32
    public var fh: UInt64
    public var size: UInt64
    public static let validSize: UInt32 = 1 << 3

    public static func decode(_ r: inout WireReader) -> SetattrIn? {
      guard let valid = r.read(UInt32.self), r.skip(4), let fh = r.read(UInt64.self),
        let size = r.read(UInt64.self)
      else { return nil }
      return SetattrIn(valid: valid, fh: fh, size: size)
    }
  }

  /// `struct fuse_kstatfs` inside `fuse_statfs_out`: 80 bytes.
  public static func statfsOut(into w: inout some WireSink) {
    w.zeros(40)  // blocks, bfree, bavail, files, ffree
    w.write(UInt32(4096))  // bsize
    w.write(UInt32(255))  // namelen
    w.write(UInt32(4096))  // frsize
    w.write(UInt32(0))
    w.zeros(24)
  }

  /// Appends one `struct fuse_dirent` (padded to 8 bytes); false when it would exceed `limit`.
  public static func appendDirent(
    _ w: inout some WireSink, inode: UInt64, offset: UInt64, kind: FileKind, name: String, limit: Int
  ) -> Bool {
    let length = name.utf8.count
    let size = (24 + length + 7) & ~7
    guard w.count + size <= limit else { return false }
    w.write(inode)
    w.write(offset)
    w.write(UInt32(length))
    w.write(kind.direntType)
    w.write(utf8: name)
    w.pad(to: 8)
    return true
  }
}

/// A cache timeout handed to the kernel (entry and attribute validity).
public struct Timeout: Sendable, Hashable {
  public var seconds: UInt64
  public var nanoseconds: UInt32
  public init(seconds: UInt64 = 0, nanoseconds: UInt32 = 0) {
    self.seconds = seconds
    self.nanoseconds = nanoseconds
  }
  public static let none = Timeout()
}
