import Foundation
import Synchronization
import SystemPackage
import Testing

@testable import FUSE

#if canImport(Glibc)
  import Glibc
#endif

/// A file `/hello` to read, and two files whose stores wait until the test lets them go:
/// `/wait`, whose store says so first (`beforeWaiting`), as a sysfs `remove` waiting for a VMM
/// does, and `/hold`, whose store does not.
private final class WaitingFileSystem: FileSystem {
  /// Signalled when a store starts waiting.
  let waiting = DispatchSemaphore(value: 0)
  /// Lets a waiting store go.
  let letGo = DispatchSemaphore(value: 0)
  let stores = Mutex<[String]>([])

  func attributes(of path: String) throws(Errno) -> FileAttributes {
    switch path {
    case "/": FileAttributes(kind: .directory, permissions: 0o755, size: 0, inode: 1)
    case "/hello": FileAttributes(kind: .regular, permissions: 0o444, size: 4096, inode: 2)
    case "/wait", "/hold": FileAttributes(kind: .regular, permissions: 0o200, size: 4096, inode: 3)
    default: throw .noSuchFileOrDirectory
    }
  }
  func entries(of path: String) throws(Errno) -> [FileSystemEntry] { [] }
  func readLink(_ path: String) throws(Errno) -> String { throw .invalidArgument }
  func open(_ path: String, read: Bool, write: Bool) throws(Errno) {}
  func read(_ path: String) throws(Errno) -> [UInt8] { Array("hello\n".utf8) }
  func write(_ path: String, _ data: [UInt8]) throws(Errno) -> Int { data.count }
  func truncate(_ path: String, to size: UInt64) throws(Errno) {}

  func store(_ node: FileNode, _ data: [UInt8], beforeWaiting: () -> Void) -> StoreOutcome {
    if node.path == "/wait" { beforeWaiting() }
    waiting.signal()
    letGo.wait()
    stores.withLock { $0.append(node.path + " " + String(decoding: data, as: UTF8.self)) }
    return StoreOutcome(result: .success(data.count), invalidations: [])
  }
}

/// A directory `/d` with files `x` and `y`, and a file `/s` whose store removes `/d/x`, after a
/// pause in which the test looks `/d/y` up: the kernel holds `/d`'s lock while that LOOKUP
/// waits to be read, and the store's invalidation of `/d/x` waits for the same lock.
private final class RemovingFileSystem: FileSystem {
  /// Signalled when the store starts.
  let storing = DispatchSemaphore(value: 0)

  func attributes(of path: String) throws(Errno) -> FileAttributes {
    switch path {
    case "/", "/d": FileAttributes(kind: .directory, permissions: 0o755, size: 0, inode: UInt64(path.count))
    case "/d/x", "/d/y": FileAttributes(kind: .regular, permissions: 0o444, size: 4096, inode: 10)
    case "/s": FileAttributes(kind: .regular, permissions: 0o200, size: 4096, inode: 11)
    default: throw .noSuchFileOrDirectory
    }
  }
  func entries(of path: String) throws(Errno) -> [FileSystemEntry] { [] }
  func readLink(_ path: String) throws(Errno) -> String { throw .invalidArgument }
  func open(_ path: String, read: Bool, write: Bool) throws(Errno) {}
  func read(_ path: String) throws(Errno) -> [UInt8] { [] }
  func write(_ path: String, _ data: [UInt8]) throws(Errno) -> Int { data.count }
  func truncate(_ path: String, to size: UInt64) throws(Errno) {}

  func store(_ node: FileNode, _ data: [UInt8], beforeWaiting: () -> Void) -> StoreOutcome {
    storing.signal()
    usleep(300_000)
    return StoreOutcome(result: .success(data.count), invalidations: ["/d/x"])
  }
}

/// A read of a whole file on a thread of its own: its content (nil on an error), once
/// `finished` is signalled.
private final class BackgroundRead: Sendable {
  let finished = DispatchSemaphore(value: 0)
  private let result = Mutex<String?>(nil)
  var content: String? { result.withLock { $0 } }

  init(_ path: String) {
    Thread.detachNewThread { [self] in
      let text = try? String(contentsOfFile: path, encoding: .utf8)
      result.withLock { $0 = text }
      finished.signal()
    }
  }
}

/// `path`'s content, read on a thread of its own; nil when the read does not end within
/// `seconds` (it then ends later, on its own).
private func read(_ path: String, within seconds: Double) -> String? {
  let r = BackgroundRead(path)
  guard r.finished.wait(timeout: .now() + seconds) == .success else { return nil }
  return r.content
}

/// A stat(2) on a thread of its own: whether the file was there, once `finished` is signalled.
private final class BackgroundLookUp: Sendable {
  let finished = DispatchSemaphore(value: 0)
  private let result = Mutex(false)
  var found: Bool { result.withLock { $0 } }

  init(_ path: String) {
    Thread.detachNewThread { [self] in
      var st = stat()
      let ok = stat(path, &st) == 0
      result.withLock { $0 = ok }
      finished.signal()
    }
  }
}

/// A write(2) on a thread of its own: what it returned, once `finished` is signalled.
private final class BackgroundWrite: Sendable {
  let finished = DispatchSemaphore(value: 0)
  private let result = Mutex(0)
  var returned: Int { result.withLock { $0 } }

  /// Writes `text` to `path` with one write(2).
  init(_ path: String, _ text: String) {
    Thread.detachNewThread { [self] in
      let fd = Glibc.open(path, O_WRONLY)
      let n = fd < 0 ? -1 : text.withCString { Glibc.write(fd, $0, strlen($0)) }
      if fd >= 0 { close(fd) }
      result.withLock { $0 = n }
      finished.signal()
    }
  }
}

@Suite("FUSE: serving threads that read the connection in turns", .serialized)
struct ReadTurnsTests {
  @Test func aStoreThatWaitsHandsOnTheOneTurnSoThatTheRequestsBehindItAreServed() throws {
    let fs = WaitingFileSystem()
    try withMount(fs, threads: 3, readers: 1) { dir, _ in
      let writer = BackgroundWrite(dir + "/wait", "1\n")
      #expect(fs.waiting.wait(timeout: .now() + 10) == .success)
      // The one thread that read the WRITE waits in it; another reads meanwhile.
      #expect(read(dir + "/hello", within: 10) == "hello\n")
      #expect(read(dir + "/hello", within: 10) == "hello\n")
      #expect(writer.finished.wait(timeout: .now()) == .timedOut)
      fs.letGo.signal()
      #expect(writer.finished.wait(timeout: .now() + 10) == .success)
      #expect(writer.returned == 2)
      #expect(fs.stores.withLock { $0 } == ["/wait 1\n"])
      // The thread that waited reads again in its turn.
      #expect(read(dir + "/hello", within: 10) == "hello\n")
    }
  }

  @Test func withOneReaderARequestWaitsForTheTurnThatAStoreKeeps() throws {
    let fs = WaitingFileSystem()
    try withMount(fs, threads: 3, readers: 1) { dir, _ in
      let writer = BackgroundWrite(dir + "/hold", "1\n")
      #expect(fs.waiting.wait(timeout: .now() + 10) == .success)
      // The store keeps the only turn: nobody reads the next request until it is let go, though
      // two more threads are there.
      let reader = BackgroundRead(dir + "/hello")
      #expect(reader.finished.wait(timeout: .now() + 0.3) == .timedOut)
      fs.letGo.signal()
      #expect(writer.finished.wait(timeout: .now() + 10) == .success)
      #expect(reader.finished.wait(timeout: .now() + 10) == .success)
      #expect(reader.content == "hello\n")
      #expect(writer.returned == 2)
    }
  }

  @Test func aStoreThatRemovesHandsOnItsTurnBeforeTheInvalidationWaitsForALookUp() throws {
    let fs = RemovingFileSystem()
    // Entries cached, as the daemon's are: the lookup of /d/y finds /d without asking, and asks
    // for y holding /d's lock.
    let cache = FUSESession.CachePolicy(entry: Timeout(seconds: 60), attributes: Timeout(seconds: 60))
    try withMount(fs, cache: cache, threads: 2, readers: 1) { dir, _ in
      // The kernel knows /d/x: the store's invalidation of it goes to the kernel.
      #expect(FileManager.default.fileExists(atPath: dir + "/d/x"))
      let writer = BackgroundWrite(dir + "/s", "1\n")
      #expect(fs.storing.wait(timeout: .now() + 10) == .success)
      // A LOOKUP in /d, queued while the one reader is in the store.
      let look = BackgroundLookUp(dir + "/d/y")
      #expect(writer.finished.wait(timeout: .now() + 10) == .success)
      #expect(writer.returned == 2)
      #expect(look.finished.wait(timeout: .now() + 10) == .success)
      #expect(look.found)
    }
  }

  @Test func withAReaderPerThreadAStoreThatKeepsItsTurnStopsNobody() throws {
    let fs = WaitingFileSystem()
    try withMount(fs, threads: 3, readers: 3) { dir, _ in
      let writer = BackgroundWrite(dir + "/hold", "1\n")
      #expect(fs.waiting.wait(timeout: .now() + 10) == .success)
      #expect(read(dir + "/hello", within: 10) == "hello\n")
      fs.letGo.signal()
      #expect(writer.finished.wait(timeout: .now() + 10) == .success)
      #expect(writer.returned == 2)
    }
  }
}
