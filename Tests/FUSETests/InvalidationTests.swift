import Foundation
import Synchronization
import SystemPackage
import Testing

@testable import FUSE

#if canImport(Glibc)
  import Glibc
#endif

/// A file system with a directory `/m` holding `remove` and `matrix`, which it reports removed.
private final class RemovingFileSystem: FileSystem {
  let removed = Mutex<[String]>([])

  func attributes(of path: String) throws(Errno) -> FileAttributes {
    switch path {
    case "/m": FileAttributes(kind: .directory, permissions: 0o755, size: 0, inode: 2)
    case "/m/remove", "/m/matrix": FileAttributes(kind: .regular, permissions: 0o644, size: 4096, inode: 3)
    default: throw .noSuchFileOrDirectory
    }
  }
  func entries(of path: String) throws(Errno) -> [FileSystemEntry] { [] }
  func readLink(_ path: String) throws(Errno) -> String { throw .invalidArgument }
  func open(_ path: String, read: Bool, write: Bool) throws(Errno) {}
  func read(_ path: String) throws(Errno) -> [UInt8] { [] }
  func write(_ path: String, _ data: [UInt8]) throws(Errno) -> Int { data.count }
  func truncate(_ path: String, to size: UInt64) throws(Errno) {}
  func takeInvalidations() -> [String] {
    removed.withLock { r in
      defer { r = [] }; return r
    }
  }
}

@Suite("FUSESession: invalidating removed nodes")
struct InvalidationTests {
  /// A LOOKUP request for `name` in `parent`.
  static func lookup(_ name: String, in parent: UInt64, unique: UInt64) -> [UInt8] {
    var w = WireWriter(capacity: 64)
    let body = Array(name.utf8) + [0]
    w.write(UInt32(40 + body.count))
    w.write(FUSEOpcode.lookup.rawValue)
    w.write(unique)
    w.write(parent)
    w.write(UInt32(0))
    w.write(UInt32(0))
    w.write(UInt32(0))
    w.write(UInt32(0))
    w.write(bytes: body)
    return w.bytes
  }

  /// The node id in a LOOKUP reply (`fuse_entry_out.nodeid`, right after the 16-byte header).
  static func nodeID(_ reply: [UInt8]) -> UInt64 {
    reply[16..<24].enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * $1.offset) }
  }

  /// The (parent node id, name) of each FUSE_NOTIFY_INVAL_ENTRY message in `bytes`.
  static func invalidations(_ bytes: [UInt8]) -> [(UInt64, String)] {
    func u32(_ i: Int) -> Int { (0..<4).reduce(0) { $0 | Int(bytes[i + $1]) << (8 * $1) } }
    func u64(_ i: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(bytes[i + $1]) << (8 * $1) } }
    var out: [(UInt64, String)] = []
    var i = 0
    while i + 32 <= bytes.count {
      let len = u32(i)
      let nameLength = u32(i + 24)
      out.append((u64(i + 16), String(decoding: bytes[(i + 32)..<(i + 32 + nameLength)], as: UTF8.self)))
      i += len
    }
    return out
  }

  @Test func theNodesBelowARemovedDirectoryAreInvalidatedDeepestFirst() throws {
    var fds: [Int32] = [0, 0]
    #expect(pipe(&fds) == 0)
    defer {
      close(fds[0])
      close(fds[1])
    }
    let fs = RemovingFileSystem()
    let session = FUSESession(fd: fds[1], fileSystem: fs)
    let m = try #require(Self.lookup("m", in: 1, unique: 1).withUnsafeBytes { session.handle($0) })
    let mID = Self.nodeID(m)
    _ = Self.lookup("remove", in: mID, unique: 2).withUnsafeBytes { session.handle($0) }
    #expect(session.state.withLock { $0.nodes.count } == 3)
    // The directory goes (its `remove` is still open in the writer); `matrix` was never looked up.
    fs.removed.withLock { $0 = ["/m"] }
    session.sendInvalidations()
    var buffer = [UInt8](repeating: 0, count: 4096)
    let n = buffer.withUnsafeMutableBytes { Glibc.read(fds[0], $0.baseAddress, $0.count) }
    let sent = Self.invalidations(Array(buffer.prefix(max(0, n))))
    #expect(sent.map(\.0) == [mID, 1])
    #expect(sent.map(\.1) == ["remove", "m"])
  }

  @Test func theTableFindsANodesDescendants() {
    var t = NodeTable()
    for p in ["/a", "/a/b", "/a/b/c", "/a/d", "/e", "/ab"] { _ = t.lookUp(p) }
    let d = t.descendants(of: "/a")
    #expect(Set(d) == ["/a/b", "/a/b/c", "/a/d"])
    #expect(d.firstIndex(of: "/a/b/c")! < d.firstIndex(of: "/a/b")!)
    t.forget(t.id(of: "/a/b/c")!, 1)
    #expect(Set(t.descendants(of: "/a")) == ["/a/b", "/a/d"])
    #expect(t.descendants(of: "/e").isEmpty)
    #expect(NodeTable.parent(of: "/a") == "/")
    #expect(NodeTable.parent(of: "/a/b/c") == "/a/b")
  }
}
