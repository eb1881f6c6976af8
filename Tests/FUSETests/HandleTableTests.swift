import Foundation
import Synchronization
import SystemPackage
import Testing

@testable import FUSE

#if canImport(Glibc)
  import Glibc
#endif

/// One file `/f` whose content counts the reads that generated it; its writes are kept.
private final class CountingFileSystem: FileSystem {
  let generated = Mutex(0)
  let written = Mutex<[[UInt8]]>([])

  func attributes(of path: String) throws(Errno) -> FileAttributes {
    switch path {
    case "/": FileAttributes(kind: .directory, permissions: 0o755, size: 0, inode: 1)
    case "/f": FileAttributes(kind: .regular, permissions: 0o644, size: 4096, inode: 2)
    default: throw .noSuchFileOrDirectory
    }
  }
  func entries(of path: String) throws(Errno) -> [FileSystemEntry] {
    guard path == "/" else { throw .notDirectory }
    return [FileSystemEntry(name: "f", kind: .regular, inode: 2)]
  }
  func readLink(_ path: String) throws(Errno) -> String { throw .invalidArgument }
  func open(_ path: String, read: Bool, write: Bool) throws(Errno) {}
  func read(_ path: String) throws(Errno) -> [UInt8] {
    let n = generated.withLock {
      $0 += 1
      return $0
    }
    return Array("generation \(n)\n".utf8)
  }
  func write(_ path: String, _ data: [UInt8]) throws(Errno) -> Int {
    written.withLock { $0.append(data) }
    return data.count
  }
  func truncate(_ path: String, to size: UInt64) throws(Errno) {}
}

/// A WRITE's body: `struct fuse_write_in` for `fh` at offset 0, then the bytes of `text`.
func writeBody(_ fh: UInt64, _ text: String) -> [UInt8] {
  var w = WireWriter(capacity: 40 + text.utf8.count)
  w.write(fh)
  w.write(UInt64(0))
  w.write(UInt32(text.utf8.count))
  w.write(UInt32(0))  // write_flags
  w.write(UInt64(0))  // lock_owner
  w.write(UInt32(0))  // flags
  w.write(UInt32(0))  // padding
  w.write(bytes: Array(text.utf8))
  return w.bytes
}

/// The `unique` of each OPEN, numbered as the kernel numbers its requests: up by 2.
private final class Uniques {
  private var last: UInt64 = 0
  func next() -> UInt64 {
    last += 2
    return last
  }
}

/// The session's open handles as the kernel sees them: an id works from its OPEN to its
/// RELEASE and never after, though the table uses its slot again.
@Suite("FUSESession: file handles")
struct HandleTableTests {
  fileprivate let fs = CountingFileSystem()
  private let uniques = Uniques()
  let session: FUSESession
  let file: UInt64

  init() throws {
    session = FUSESession(fd: -1, fileSystem: fs)
    let reply = try #require(Self.request(.lookup, node: 1, unique: 1, Array("f".utf8) + [0], session))
    #expect(Self.error(reply) == 0)
    file = InvalidationTests.nodeID(reply)
  }

  static func request(
    _ op: FUSEOpcode, node: UInt64, unique: UInt64, _ body: [UInt8], _ session: FUSESession
  ) -> [UInt8]? {
    var w = WireWriter(capacity: 64 + body.count)
    w.write(UInt32(40 + body.count))
    w.write(op.rawValue)
    w.write(unique)
    w.write(node)
    for _ in 0..<4 { w.write(UInt32(0)) }
    w.write(bytes: body)
    return w.bytes.withUnsafeBytes { session.handle($0) }
  }

  static func error(_ reply: [UInt8]) -> Int32 {
    Int32(
      bitPattern: reply[4..<8].enumerated().reduce(UInt32(0)) { $0 | UInt32($1.element) << (8 * $1.offset) })
  }

  static func u64(_ bytes: [UInt8], at i: Int) -> UInt64 {
    bytes[i..<(i + 8)].enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * $1.offset) }
  }

  func open(_ flags: Int32 = O_RDWR) throws -> UInt64 {
    var w = WireWriter(capacity: 8)
    w.write(UInt32(bitPattern: flags))
    w.write(UInt32(0))
    let reply = try #require(Self.request(.open, node: file, unique: uniques.next(), w.bytes, session))
    #expect(Self.error(reply) == 0)
    return Self.u64(reply, at: 16)
  }

  /// READ of `fh` at `offset`: the errno (negative) and the bytes.
  func read(_ fh: UInt64, offset: UInt64 = 0) throws -> (Int32, String) {
    var w = WireWriter(capacity: 40)
    w.write(fh)
    w.write(offset)
    w.write(UInt32(4096))
    for _ in 0..<3 { w.write(UInt32(0)) }
    w.write(UInt64(0))
    let reply = try #require(Self.request(.read, node: file, unique: 3, w.bytes, session))
    return (Self.error(reply), String(decoding: reply[16...], as: UTF8.self))
  }

  func write(_ fh: UInt64, _ text: String) throws -> Int32 {
    let reply = try #require(Self.request(.write, node: file, unique: 4, writeBody(fh, text), session))
    return Self.error(reply)
  }

  func release(_ fh: UInt64) throws {
    var w = WireWriter(capacity: 24)
    w.write(fh)
    w.write(UInt32(0))
    w.write(UInt32(0))
    w.write(UInt64(0))
    let reply = try #require(Self.request(.release, node: file, unique: 5, w.bytes, session))
    #expect(Self.error(reply) == 0)
  }

  @Test func aReleasedHandleIsBadThoughItsSlotIsUsedAgain() throws {
    let first = try open()
    #expect(try write(first, "5\n") == 0)
    #expect(try read(first).1 == "generation 1\n")
    try release(first)
    #expect(try write(first, "6\n") == -EBADF)
    #expect(try read(first).0 == -EBADF)
    #expect(fs.written.withLock { $0 } == [Array("5\n".utf8)])

    // Every shard's slot of the first round is used again by the next round of opens, each
    // under an id of its own.
    var ids: Set<UInt64> = [first]
    for _ in 0..<3 {
      let round = try (0..<HandleTable.shardCount).map { _ in try open() }
      // Consecutive opens go round the shards (the id's lowest bits), by their requests' unique.
      #expect(Set(round.map { $0 % UInt64(HandleTable.shardCount) }).count == HandleTable.shardCount)
      for fh in round { #expect(ids.insert(fh).inserted) }
      for fh in round { #expect(try write(fh, "7\n") == 0) }
      for fh in round { try release(fh) }
    }
    #expect(session.handles.count == 0)
    for fh in ids {
      #expect(try write(fh, "8\n") == -EBADF)
    }
    // Nor does an id the session never handed out find anything, or a second RELEASE undo one.
    for fh: UInt64 in [0, 1, .max, 1 << 32 | 5 << 4, ids.first! ^ (1 << 40)] {
      #expect(try read(fh).0 == -EBADF)
      try release(fh)
    }
    #expect(session.handles.count == 0)
  }

  @Test func aHandleKeepsItsReadsContentUntilItsRelease() throws {
    let a = try open(O_RDONLY)
    let b = try open(O_RDONLY)
    #expect(try read(a).1 == "generation 1\n")
    #expect(try read(b).1 == "generation 2\n")
    // Later offsets continue the handle's own generation, as seq_file does.
    #expect(try read(a, offset: 11).1 == "1\n")
    #expect(try read(b, offset: 11).1 == "2\n")
    try release(a)
    #expect(try read(a, offset: 11).0 == -EBADF)
    // A new open keeps nothing of a's: its first later-offset read generates anew.
    let c = try open(O_RDONLY)
    #expect(try read(c, offset: 11).1 == "3\n")
    #expect(try read(b, offset: 11).1 == "2\n")
    #expect(session.handles.count == 2)
  }
}

/// A serving thread decodes every WRITE's data into one buffer of its own: a store that keeps
/// the bytes it was given keeps them whatever the thread's next WRITE brings.
@Suite("FUSERequest: WRITE data in the thread's buffer")
struct WritePayloadTests {
  static func write(_ text: String) -> [UInt8] {
    let body = writeBody(1 << 32 | 1, text)
    var w = WireWriter(capacity: 40 + body.count)
    w.write(UInt32(40 + body.count))
    w.write(FUSEOpcode.write.rawValue)
    w.write(UInt64(7))
    w.write(UInt64(2))
    for _ in 0..<4 { w.write(UInt32(0)) }
    w.write(bytes: body)
    return w.bytes
  }

  static func data(_ request: FUSERequest?) -> [UInt8]? {
    guard case .write(_, _, let data)? = request?.operation else { return nil }
    return data
  }

  @Test func aKeptWriteKeepsItsBytes() throws {
    var payload: [UInt8] = []
    let first = try #require(
      Self.data(Self.write("5\n").withUnsafeBytes { FUSERequest.decode($0, payload: &payload) }))
    let second = try #require(
      Self.data(Self.write("0x1f\n").withUnsafeBytes { FUSERequest.decode($0, payload: &payload) }))
    #expect(first == Array("5\n".utf8))
    #expect(second == Array("0x1f\n".utf8))
    // A large WRITE, then a small one: each decodes to exactly its own bytes.
    let big = String(repeating: "a", count: 70_000)
    let third = try #require(
      Self.data(Self.write(big).withUnsafeBytes { FUSERequest.decode($0, payload: &payload) }))
    let fourth = try #require(
      Self.data(Self.write("1").withUnsafeBytes { FUSERequest.decode($0, payload: &payload) }))
    #expect(third.count == 70_000 && third.allSatisfy { $0 == 0x61 })
    #expect(fourth == [0x31])
    #expect(first == Array("5\n".utf8))
    // A body shorter than its size is malformed.
    var short = Self.write("abc")
    short.removeLast()
    let malformed = short.withUnsafeBytes { FUSERequest.decode($0, payload: &payload) }
    guard case .malformed(.write)? = malformed?.operation else {
      Issue.record("a short WRITE decoded as \(String(describing: malformed?.operation))")
      return
    }
  }
}
