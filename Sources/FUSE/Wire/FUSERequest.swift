/// A node id as the kernel names a node in a request (`fuse_in_header.nodeid`, the `nodeid` of a
/// LOOKUP reply). `1` is the root (`FUSE_ROOT_ID`).
public struct NodeID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt64
  public init(rawValue: UInt64) { self.rawValue = rawValue }
  public init(_ rawValue: UInt64) { self.rawValue = rawValue }
  public static let root = NodeID(1)
  public var description: String { "node \(rawValue)" }
}

/// A file handle as the server handed it out in an OPEN or OPENDIR reply (`fuse_open_out.fh`)
/// and the kernel hands it back (READ, WRITE, RELEASE, ...).
public struct HandleID: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt64
  public init(rawValue: UInt64) { self.rawValue = rawValue }
  public init(_ rawValue: UInt64) { self.rawValue = rawValue }
  public var description: String { "handle \(rawValue)" }
}

/// One request from the kernel, decoded: the header's identity of the caller and the operation
/// with its arguments.
public struct FUSERequest: Sendable {
  public var header: FUSEWire.InHeader
  public var operation: FUSEOperation

  public var unique: UInt64 { header.unique }

  /// Decodes one request as `read(2)` on `/dev/fuse` returned it; nil when not even the header
  /// is there. A body too short for its opcode's structure decodes as ``FUSEOperation/malformed(_:)``.
  public static func decode(_ bytes: UnsafeRawBufferPointer) -> FUSERequest? {
    var payload: [UInt8] = []
    return decode(bytes, payload: &payload)
  }

  /// Decodes one request as ``decode(_:)`` does, a WRITE's data into `payload` (see
  /// ``WireReader/readBytes(_:into:)``): a serving thread hands the same buffer to every
  /// request it reads, and once the request is done with, its next WRITE reuses its memory.
  public static func decode(_ bytes: UnsafeRawBufferPointer, payload: inout [UInt8]) -> FUSERequest? {
    var r = WireReader(bytes)
    guard let h = FUSEWire.InHeader.decode(&r) else { return nil }
    let op: FUSEOperation
    if let opcode = FUSEOpcode(rawValue: h.opcode) {
      op =
        FUSEOperation.decode(opcode, node: NodeID(h.nodeid), body: &r, payload: &payload)
        ?? .malformed(opcode)
    } else {
      op = .unknown(h.opcode)
    }
    return FUSERequest(header: h, operation: op)
  }
}

/// A FORGET's node and how many lookups the kernel drops (`fuse_forget_one`).
public struct Forget: Sendable, Hashable {
  public var node: NodeID
  public var lookups: UInt64
}

/// The operations of `linux/fuse.h`, one case per opcode that the server answers, each with its
/// arguments decoded from the opcode's `fuse_*_in` structure.
public enum FUSEOperation: Sendable {
  case `init`(FUSEWire.InitIn)
  case destroy
  case forget(Forget)
  case batchForget([Forget])
  case interrupt(unique: UInt64)

  case lookup(parent: NodeID, name: String)
  /// `handle` when the kernel asks about an open file (`FUSE_GETATTR_FH`).
  case getattr(NodeID, handle: HandleID?)
  case setattr(NodeID, FUSEWire.SetattrIn)
  case readlink(NodeID)
  case access(NodeID, mask: UInt32)
  case statfs(NodeID)

  case open(NodeID, flags: Int32)
  case read(NodeID, FUSEWire.ReadIn)
  case write(NodeID, FUSEWire.WriteIn, data: [UInt8])
  case flush(NodeID, HandleID)
  case fsync(NodeID, HandleID)
  case release(NodeID, HandleID)

  case opendir(NodeID, flags: Int32)
  case readdir(NodeID, FUSEWire.ReadIn)
  case fsyncdir(NodeID, HandleID)
  case releasedir(NodeID, HandleID)

  case getxattr(NodeID, name: String, size: UInt32)
  case listxattr(NodeID, size: UInt32)
  case setxattr(NodeID, name: String)
  case removexattr(NodeID, name: String)

  case mknod(parent: NodeID, name: String, mode: UInt32)
  case mkdir(parent: NodeID, name: String, mode: UInt32)
  case create(parent: NodeID, name: String, flags: Int32, mode: UInt32)
  case tmpfile(parent: NodeID, flags: Int32, mode: UInt32)
  case symlink(parent: NodeID, name: String, target: String)
  case link(NodeID, newParent: NodeID, newName: String)
  case unlink(parent: NodeID, name: String)
  case rmdir(parent: NodeID, name: String)
  case rename(parent: NodeID, name: String, newParent: NodeID, newName: String, flags: UInt32)

  /// An opcode of the protocol that this server does not implement (locks, ioctl, poll, ...).
  case unsupported(FUSEOpcode)
  /// An opcode this server does not know.
  case unknown(UInt32)
  /// A known opcode whose body is shorter than its structure.
  case malformed(FUSEOpcode)

  /// The operation of `opcode` with its body; nil when the body is too short.
  static func decode(
    _ opcode: FUSEOpcode, node: NodeID, body r: inout WireReader, payload: inout [UInt8]
  ) -> FUSEOperation? {
    switch opcode {
    case .`init`:
      return FUSEWire.InitIn.decode(&r).map { .`init`($0) }
    case .destroy:
      return .destroy
    case .forget:
      return r.read(UInt64.self).map { .forget(Forget(node: node, lookups: $0)) }
    case .batchForget:
      guard let count = r.read(UInt32.self), r.skip(4) else { return nil }
      var forgets: [Forget] = []
      forgets.reserveCapacity(Int(min(count, UInt32(r.remaining / 16))))
      // The entries that are there (a short list forgets what it holds).
      for _ in 0..<count {
        guard let id = r.read(UInt64.self), let n = r.read(UInt64.self) else { break }
        forgets.append(Forget(node: NodeID(id), lookups: n))
      }
      return .batchForget(forgets)
    case .interrupt:
      return r.read(UInt64.self).map { .interrupt(unique: $0) }
    case .lookup:
      return r.readCString().map { .lookup(parent: node, name: $0) }
    case .getattr:
      // `struct fuse_getattr_in`: getattr_flags, dummy, fh.
      guard let flags = r.read(UInt32.self), r.skip(4), let fh = r.read(UInt64.self) else { return nil }
      return .getattr(node, handle: flags & FUSEWire.getattrFH != 0 ? HandleID(fh) : nil)
    case .setattr:
      return FUSEWire.SetattrIn.decode(&r).map { .setattr(node, $0) }
    case .readlink:
      return .readlink(node)
    case .access:
      return r.read(UInt32.self).map { .access(node, mask: $0) }
    case .statfs:
      return .statfs(node)
    case .open, .opendir:
      // `struct fuse_open_in`: flags, open_flags (unused before 7.36).
      guard let flags = r.read(Int32.self) else { return nil }
      return opcode == .open ? .open(node, flags: flags) : .opendir(node, flags: flags)
    case .read, .readdir:
      guard let rd = FUSEWire.ReadIn.decode(&r) else { return nil }
      return opcode == .read ? .read(node, rd) : .readdir(node, rd)
    case .write:
      guard let wr = FUSEWire.WriteIn.decode(&r), r.readBytes(Int(wr.size), into: &payload) else {
        return nil
      }
      return .write(node, wr, data: payload)
    case .flush, .fsync, .fsyncdir, .release, .releasedir:
      // `fuse_flush_in`, `fuse_fsync_in`, `fuse_release_in`: all begin with fh.
      guard let raw = r.read(UInt64.self) else { return nil }
      let fh = HandleID(raw)
      switch opcode {
      case .flush: return .flush(node, fh)
      case .fsync: return .fsync(node, fh)
      case .fsyncdir: return .fsyncdir(node, fh)
      case .release: return .release(node, fh)
      default: return .releasedir(node, fh)
      }
    case .getxattr:
      guard let size = r.read(UInt32.self), r.skip(4), let name = r.readCString() else { return nil }
      return .getxattr(node, name: name, size: size)
    case .listxattr:
      return r.read(UInt32.self).map { .listxattr(node, size: $0) }
    case .setxattr:
      // `struct fuse_setxattr_in` without FUSE_SETXATTR_EXT: size, flags; then name and value.
      guard r.skip(8), let name = r.readCString() else { return nil }
      return .setxattr(node, name: name)
    case .removexattr:
      return r.readCString().map { .removexattr(node, name: $0) }
    case .mknod:
      // `struct fuse_mknod_in`: mode, rdev, umask, padding.
      guard let mode = r.read(UInt32.self), r.skip(12), let name = r.readCString() else { return nil }
      return .mknod(parent: node, name: name, mode: mode)
    case .mkdir:
      // `struct fuse_mkdir_in`: mode, umask.
      guard let mode = r.read(UInt32.self), r.skip(4), let name = r.readCString() else { return nil }
      return .mkdir(parent: node, name: name, mode: mode)
    case .create, .tmpfile:
      // `struct fuse_create_in`: flags, mode, umask, open_flags.
      guard let flags = r.read(Int32.self), let mode = r.read(UInt32.self), r.skip(8) else { return nil }
      if opcode == .tmpfile { return .tmpfile(parent: node, flags: flags, mode: mode) }
      return r.readCString().map { .create(parent: node, name: $0, flags: flags, mode: mode) }
    case .symlink:
      guard let name = r.readCString(), let target = r.readCString() else { return nil }
      return .symlink(parent: node, name: name, target: target)
    case .link:
      guard let old = r.read(UInt64.self), let name = r.readCString() else { return nil }
      return .link(NodeID(old), newParent: node, newName: name)
    case .unlink:
      return r.readCString().map { .unlink(parent: node, name: $0) }
    case .rmdir:
      return r.readCString().map { .rmdir(parent: node, name: $0) }
    case .rename, .rename2:
      // `struct fuse_rename_in`: newdir; `fuse_rename2_in`: newdir, flags, padding.
      guard let newDir = r.read(UInt64.self) else { return nil }
      var flags: UInt32 = 0
      if opcode == .rename2 {
        guard let f = r.read(UInt32.self), r.skip(4) else { return nil }
        flags = f
      }
      guard let name = r.readCString(), let newName = r.readCString() else { return nil }
      return .rename(parent: node, name: name, newParent: NodeID(newDir), newName: newName, flags: flags)
    case .getlk, .setlk, .setlkw, .bmap, .ioctl, .poll, .notifyReply, .fallocate, .readdirplus, .lseek,
      .copyFileRange, .setupMapping, .removeMapping, .syncfs, .statx:
      return .unsupported(opcode)
    }
  }
}
