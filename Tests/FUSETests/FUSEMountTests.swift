import Foundation
import Synchronization
import SystemPackage
import Testing

@testable import FUSE

#if canImport(Glibc)
  import Glibc
#endif

/// A small file system for the tests: a read-only file, a write-only file that records its
/// stores, one whose stores fail, a directory and a symlink.
final class MemoryFileSystem: FileSystem {
  let stores = Mutex<[String]>([])
  let counter = Mutex(0)

  func attributes(of path: String) throws(Errno) -> FileAttributes {
    switch path {
    case "/", "/dir":
      return FileAttributes(kind: .directory, permissions: 0o755, size: 0, inode: UInt64(path.count))
    case "/hello", "/counter":
      return FileAttributes(kind: .regular, permissions: 0o444, size: 4096, inode: 10)
    case "/store", "/fail": return FileAttributes(kind: .regular, permissions: 0o200, size: 4096, inode: 11)
    case "/link": return FileAttributes(kind: .symlink, permissions: 0o777, size: 3, inode: 12)
    case "/dir/big": return FileAttributes(kind: .regular, permissions: 0o444, size: 4096, inode: 13)
    default: throw .noSuchFileOrDirectory
    }
  }

  func entries(of path: String) throws(Errno) -> [FileSystemEntry] {
    switch path {
    case "/":
      return [
        .init(name: "counter", kind: .regular, inode: 10), .init(name: "dir", kind: .directory, inode: 4),
        .init(name: "fail", kind: .regular, inode: 11), .init(name: "hello", kind: .regular, inode: 10),
        .init(name: "link", kind: .symlink, inode: 12), .init(name: "store", kind: .regular, inode: 11),
      ]
    case "/dir": return [.init(name: "big", kind: .regular, inode: 13)]
    default: throw .notDirectory
    }
  }

  func readLink(_ path: String) throws(Errno) -> String {
    guard path == "/link" else { throw .invalidArgument }
    return "dir"
  }

  func open(_ path: String, read: Bool, write: Bool) throws(Errno) {
    let a = try attributes(of: path)
    if read && a.permissions & 0o444 == 0 { throw .permissionDenied }
    if write && a.permissions & 0o222 == 0 { throw .permissionDenied }
  }

  func read(_ path: String) throws(Errno) -> [UInt8] {
    switch path {
    case "/hello": return Array("hello\n".utf8)
    case "/counter":
      let n = counter.withLock { c in
        c += 1
        return c
      }
      return Array("\(n)\n".utf8)
    case "/dir/big": return Array(String(repeating: "0123456789abcdef", count: 1000).utf8)
    default: throw .permissionDenied
    }
  }

  func write(_ path: String, _ data: [UInt8]) throws(Errno) -> Int {
    if path == "/fail" { throw .addressInUse }
    stores.withLock { $0.append(String(decoding: data, as: UTF8.self)) }
    return data.count
  }

  func truncate(_ path: String, to size: UInt64) throws(Errno) {}
}

/// Mounts `fs` on a fresh directory for the duration of `body`, served by `threads` threads of
/// which `readers` read at once (by default as ``FUSESession/serve(threads:readers:)`` decides).
func withMount(
  _ fs: any FileSystem, cache: FUSESession.CachePolicy? = nil, threads: Int = 2, readers: Int? = nil,
  _ body: (String, FUSESession) throws -> Void
) throws {
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fuse-\(UUID().uuidString)").path
  try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  let m = try FUSEMount.mount(at: dir, name: "apvirttest")
  let session =
    cache.map { FUSESession(fd: m.fd, fileSystem: fs, cache: $0) } ?? FUSESession(fd: m.fd, fileSystem: fs)
  let done = DispatchSemaphore(value: 0)
  Thread.detachNewThread {
    session.serve(threads: threads, readers: readers)
    done.signal()
  }
  defer {
    m.unmount()
    // Every thread stops at the unmount, those waiting for a turn too.
    #expect(done.wait(timeout: .now() + 10) == .success)
    try? FileManager.default.removeItem(atPath: dir)
  }
  try body(dir, session)
}

/// Runs a shell command and returns (status, stdout, stderr).
func shell(_ script: String) throws -> (Int32, String, String) {
  let p = Process()
  p.executableURL = URL(fileURLWithPath: "/bin/bash")
  p.arguments = ["-c", script]
  let out = Pipe()
  let err = Pipe()
  p.standardOutput = out
  p.standardError = err
  try p.run()
  let o = out.fileHandleForReading.readDataToEndOfFile()
  let e = err.fileHandleForReading.readDataToEndOfFile()
  p.waitUntilExit()
  return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

@Suite("FUSE: a mounted file system served over the kernel's wire protocol", .serialized)
struct FUSEMountTests {
  @Test func readsWritesListsAndLinks() throws {
    let fs = MemoryFileSystem()
    try withMount(fs) { dir, session in
      #expect(try shell("cat \(dir)/hello").1 == "hello\n")
      #expect(try shell("echo 5 > \(dir)/store").0 == 0)
      #expect(try shell("printf abc > \(dir)/store").0 == 0)
      #expect(fs.stores.withLock { $0 } == ["5\n", "abc"])
      let failed = try shell("echo 5 > \(dir)/fail")
      #expect(failed.0 != 0)
      #expect(failed.2.contains("write error: Address already in use"))
      #expect(try shell("cat \(dir)/store").2.contains("Permission denied"))
      #expect(try shell("echo x > \(dir)/hello").2.contains("Permission denied"))
      #expect(try shell("ls \(dir)").1 == "counter\ndir\nfail\nhello\nlink\nstore\n")
      #expect(try shell("readlink \(dir)/link").1 == "dir\n")
      #expect(try shell("ls \(dir)/link/").1 == "big\n")
      #expect(
        try shell("stat -c '%a %F' \(dir)/store \(dir)/dir \(dir)/link").1
          == "200 regular file\n755 directory\n777 symbolic link\n")
      #expect(try shell("cat \(dir)/nothing").2.contains("No such file or directory"))
      #expect(try shell("mkdir \(dir)/new").0 != 0)
      // Every read generates the file anew.
      #expect(try shell("cat \(dir)/counter; cat \(dir)/counter").1 == "1\n2\n")
      // A file larger than one read comes in chunks of one generation.
      #expect(try shell("wc -c < \(dir)/dir/big").1 == "16000\n")
      #expect(session.requestCount(.`init`) == 1)
    }
  }

  /// `echo N > attr` (an O_TRUNC open, a write, a close) costs three requests: OPEN, WRITE and
  /// RELEASE. FUSE_ATOMIC_O_TRUNC carries the truncation in the OPEN (no SETATTR). The kernel's
  /// killpriv check (`dentry_needs_remove_privs` in `do_truncate`) asks for `security.capability`
  /// only while the inode is not S_NOSEC: FUSE_HANDLE_KILLPRIV_V2 sets SB_NOSEC, the cached
  /// (written-through) write of a write-only open marks the inode S_NOSEC after one GETXATTR,
  /// and a refresh of its attributes clears the mark again. So at most one GETXATTR per
  /// attribute refresh, while getxattr(2) keeps sysfs's answers (no data for security and
  /// trusted names, no user namespace).
  @Test func anEchoCostsThreeRequests() throws {
    let fs = MemoryFileSystem()
    // The daemon's caching: entries and attributes for a second.
    let cache = FUSESession.CachePolicy(entry: Timeout(seconds: 1), attributes: Timeout(seconds: 1))
    try withMount(fs, cache: cache) { (dir: String, session: FUSESession) throws in
      #expect(try shell("echo 1 > \(dir)/store").0 == 0)
      // RELEASE is sent after close(2) returns: wait until every OPEN has its RELEASE.
      func settle() {
        for _ in 0..<200 where session.requestCount(.release) < session.requestCount(.open) { usleep(10_000) }
      }
      settle()
      let ops: [FUSEOpcode] = [.lookup, .getattr, .setattr, .open, .write, .flush, .release, .getxattr]
      let before = ops.map { session.requestCount($0) }
      #expect(try shell("for i in $(seq 1 100); do echo $i > \(dir)/store; done").0 == 0)
      settle()
      let spent = zip(ops, zip(ops.map { session.requestCount($0) }, before)).map { ($0.0, $0.1.0 - $0.1.1) }
        .filter { $0.1 > 0 }
      let perEcho = spent.map { "\($0.0)=\($0.1)" }.joined(separator: " ")
      // (A LOOKUP or GETATTR where the one-second cache runs out is not the echo's; after each,
      // one GETXATTR may follow.)
      let count = Dictionary(uniqueKeysWithValues: spent)
      let refreshes = (count[.lookup] ?? 0) + (count[.getattr] ?? 0)
      #expect(
        spent.filter { $0.0 != .lookup && $0.0 != .getattr && $0.0 != .getxattr }.map { "\($0.0)=\($0.1)" }
          == ["open=100", "write=100", "release=100"], "\(perEcho)")
      #expect((count[.getxattr] ?? 0) <= 1 + refreshes, "\(perEcho)")
      #expect(fs.stores.withLock { $0.suffix(1) } == ["100\n"])
      // Only the truncating open asks for security.capability; a write never does.
      let g0 = session.requestCount(.getxattr)
      _ = try shell(
        "python3 -c 'import os,sys; fd=os.open(sys.argv[1], os.O_WRONLY); [os.write(fd, b\"1\") for _ in range(3)]; os.close(fd)' \(dir)/store"
      )
      #expect(session.requestCount(.getxattr) == g0)
      // sysfs's xattr answers: no security or trusted attribute, no user namespace at all.
      let xattr = """
        import os, sys
        for name in ("security.selinux", "trusted.x", "user.x"):
            try:
                os.getxattr(sys.argv[1], name); print(name, "found")
            except OSError as e:
                print(name, os.strerror(e.errno))
        """
      #expect(
        try shell("python3 -c '\(xattr)' \(dir)/store").1
          == "security.selinux No data available\ntrusted.x No data available\nuser.x Operation not supported\n"
      )
    }
  }

  /// Among many mounts, a mount point is still found (reading mountinfo with Foundation gave its
  /// first 4 KiB only, and a host with a few dozen mounts lost the later ones).
  @Test func aMountPointIsFoundAmongManyMounts() throws {
    let base = FileManager.default.temporaryDirectory.appendingPathComponent(
      "many-\(UUID().uuidString.prefix(8))"
    ).path
    var made: [String] = []
    defer {
      for d in made.reversed() { _ = umount2(d, Int32(MNT_DETACH)) }
      try? FileManager.default.removeItem(atPath: base)
    }
    // Enough, with long enough names, that mountinfo passes 8 KiB on a machine with few mounts.
    for i in 0..<120 {
      let d = base + "/mount-point-with-a-long-name-\(i)"
      try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
      guard mount("none", d, "tmpfs", 0, "size=4k") == 0 else { break }
      made.append(d)
    }
    #expect(made.count == 120)
    #expect((FUSEMount.readProcFile("/proc/self/mountinfo") ?? "").utf8.count > 8192)
    #expect(FUSEMount.isMountPoint(made.last!))
    #expect(!FUSEMount.isMountPoint(base))
  }

  @Test func unmountEndsTheSessionAndStaleMountsAreCleared() throws {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fuse-stale-\(UUID().uuidString)")
      .path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // A mount whose server closed its descriptor without unmounting: what a killed daemon leaves.
    let m = try FUSEMount.mount(at: dir, name: "apvirttest")
    #expect(FUSEMount.isMountPoint(dir))
    close(m.fd)
    #expect(FUSEMount.isStale(dir))
    #expect(FUSEMount.clearStale(dir))
    #expect(!FUSEMount.isMountPoint(dir))
    #expect(!FUSEMount.isStale(dir))
  }
}
