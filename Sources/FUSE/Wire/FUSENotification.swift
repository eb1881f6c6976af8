/// The messages the server sends the kernel unasked (`enum fuse_notify_code`): an out header
/// whose `unique` is 0 and whose `error` is the notification's code, then its structure.
public enum FUSENotification: Sendable, Hashable {
  /// `FUSE_NOTIFY_INVAL_ENTRY`: drop the cached entry `name` in the directory `parent`.
  case invalidateEntry(parent: NodeID, name: String)
  /// `FUSE_NOTIFY_INVAL_INODE`: drop the cached attributes and the data from `offset` on (`length`
  /// 0: to the end; a negative `offset`: the attributes only).
  case invalidateInode(NodeID, offset: Int64, length: Int64)
  /// `FUSE_NOTIFY_DELETE`: the entry `name` of `parent`, which was `child`, is gone.
  case delete(parent: NodeID, child: NodeID, name: String)

  /// The code in the header's error field.
  public var code: Int32 {
    switch self {
    case .invalidateInode: 2
    case .invalidateEntry: 3
    case .delete: 6
    }
  }

  /// The whole message, header included.
  public func encode() -> [UInt8] {
    switch self {
    case .invalidateEntry(let parent, let name):
      // `struct fuse_notify_inval_entry_out`: parent, namelen, flags; the name, NUL-terminated.
      let bytes = Array(name.utf8)
      var w = header(body: 16 + bytes.count + 1)
      w.write(parent.rawValue)
      w.write(UInt32(bytes.count))
      w.write(UInt32(0))
      w.write(bytes: bytes)
      w.write(UInt8(0))
      return w.bytes
    case .invalidateInode(let node, let offset, let length):
      // `struct fuse_notify_inval_inode_out`: ino, off, len.
      var w = header(body: 24)
      w.write(node.rawValue)
      w.write(offset)
      w.write(length)
      return w.bytes
    case .delete(let parent, let child, let name):
      // `struct fuse_notify_delete_out`: parent, child, namelen, padding; the name.
      let bytes = Array(name.utf8)
      var w = header(body: 24 + bytes.count + 1)
      w.write(parent.rawValue)
      w.write(child.rawValue)
      w.write(UInt32(bytes.count))
      w.write(UInt32(0))
      w.write(bytes: bytes)
      w.write(UInt8(0))
      return w.bytes
    }
  }

  func header(body: Int) -> WireWriter {
    var w = WireWriter(capacity: 16 + body)
    FUSEWire.outHeader(into: &w, len: 16 + body, error: code, unique: 0)
    return w
  }
}
