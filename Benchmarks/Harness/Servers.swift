import FUSE
import Foundation
import HostKernel
import Machine
import Synchronization
import SysfsFUSE
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// One of the file systems measured side by side: where the cycles write and read, and, when the
/// server can tell, how many requests of each opcode it has served so far.
protocol BenchServer: AnyObject, Sendable {
  var name: String { get }
  /// The attribute the write cycles and the echoes write `5\n` to.
  var writePath: String { get }
  /// open(2) flags of the write cycle (tmpfs needs O_CREAT|O_TRUNC to be a fair rewrite).
  var writeFlags: Int32 { get }
  /// The attribute the read cycles read (apmask's 67 bytes).
  var readPath: String { get }
  /// Whether `requestCounts()` answers (fixed for the server's life, so that the table can be
  /// laid out after the servers are stopped).
  var countsRequests: Bool { get }
  /// Requests served by opcode; nil where the server cannot be asked.
  func requestCounts() -> [UInt32: Int]?
  func stop()
}

/// The apmask of the embedded default machine after `echo -5 > apmask`, byte for byte; the
/// reference server and the tmpfs file hold the same.
let expectedApmask = "0xfbffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\n"
/// The mdev the write cycles store into (it owns APQN 05.0005, so `echo 5 > assign_domain`
/// is a successful no-op that can be repeated).
let mdevUUID = "0b5e7c1a-fa57-4e5e-8b1d-5e7f5bad0005"
let assignDomainSubpath = "/devices/vfio_ap/matrix/\(mdevUUID)/assign_domain"
let apmaskSubpath = "/bus/ap/apmask"

/// A fresh directory under /tmp.
func makeTemporaryDirectory(_ prefix: String) throws -> String {
  var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
  guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
    throw Errno(rawValue: errno)
  }
  return String(cString: dir)
}

/// A mount point for a FUSE server: `sys` in a fresh directory, `/tmp/PREFIX-XXXXXX/sys`, the
/// depth of the daemon's mount (whose directory is its runtime directory). Every FUSE server is
/// mounted at that one depth: each component of a path costs the client a lookup (and a
/// permission check) at every open, which is no part of the server's cost; one component more
/// was 1% of an open/write/close on one CPU (Benchmarks/README.md).
func makeMountPoint(_ prefix: String) throws -> String {
  let dir = try makeTemporaryDirectory(prefix)
  let mountPoint = dir + "/sys"
  guard mkdir(mountPoint, 0o755) == 0 else {
    let e = Errno(rawValue: errno)
    rmdir(dir)
    throw e
  }
  return mountPoint
}

/// Removes a mount point of ``makeMountPoint(_:)`` and its directory.
func removeMountPoint(_ mountPoint: String) {
  rmdir(mountPoint)
  rmdir((mountPoint as NSString).deletingLastPathComponent)
}

struct HarnessError: Error, CustomStringConvertible {
  var description: String
  init(_ d: String) { description = d }
}

/// The whole content of `path` through open/read/close, or nil.
func readWhole(_ path: String) -> String? {
  let fd = open(path, O_RDONLY | O_CLOEXEC)
  guard fd >= 0 else { return nil }
  defer { close(fd) }
  var buf = [UInt8](repeating: 0, count: 4096)
  let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
  return n >= 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
}

/// `echo TEXT > path` without a shell; throws on failure.
func store(_ path: String, _ text: String) throws {
  let fd = open(path, O_WRONLY | O_CLOEXEC)
  guard fd >= 0 else { throw HarnessError("open \(path): \(Errno(rawValue: errno))") }
  defer { close(fd) }
  let bytes = Array(text.utf8)
  let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
  guard n == bytes.count else { throw HarnessError("write \(path): \(Errno(rawValue: errno))") }
}

/// Polls until `path` reads as `expected` (a mount coming up), or throws after `seconds`.
func waitUntilReadable(_ path: String, expected: String? = nil, seconds: Double = 30) throws {
  let deadline = monotonicNanoseconds() + UInt64(seconds * 1e9)
  while monotonicNanoseconds() < deadline {
    if let text = readWhole(path), !text.isEmpty, expected == nil || text == expected { return }
    usleep(2000)
  }
  throw HarnessError("\(path) did not become readable in \(seconds) s")
}

// MARK: - tmpfs

/// Regular files in /dev/shm: the floor any FUSE file system is compared with.
final class TmpfsServer: BenchServer {
  let name = "tmpfs"
  let writePath: String
  let readPath: String
  let writeFlags = O_WRONLY | O_TRUNC | O_CREAT

  init() throws {
    let base = "/dev/shm/apvirt-table-\(getpid())"
    writePath = base + "-assign_domain"
    readPath = base + "-apmask"
    try Data("5\n".utf8).write(to: URL(fileURLWithPath: writePath))
    try Data(expectedApmask.utf8).write(to: URL(fileURLWithPath: readPath))
  }

  let countsRequests = false
  func requestCounts() -> [UInt32: Int]? { nil }

  func stop() {
    unlink(writePath)
    unlink(readPath)
  }
}

// MARK: - libfuse reference

/// `sysfs-ref` (Benchmarks/Reference/sysfs-ref.c, libfuse 3 low-level API) mounted on a fresh
/// directory, in a process of its own. Its counters are a file it maps shared: reading them
/// costs no request.
final class ReferenceServer: BenchServer {
  let name: String
  let mountPoint: String
  let countsPath: String
  let process: Process
  let writeFlags = O_WRONLY
  var writePath: String { mountPoint + assignDomainSubpath }
  var readPath: String { mountPoint + apmaskSubpath }

  /// With `xattrENOSYS`, GETXATTR is answered ENOSYS (a libfuse server without the handler):
  /// the kernel stops asking for security.capability at every truncating open.
  init(executable: String, threads: Int, xattrENOSYS: Bool = false) throws {
    name = xattrENOSYS ? "libfuse, GETXATTR ENOSYS" : "libfuse (sysfs-ref)"
    mountPoint = try makeMountPoint("apvirt-table-ref")
    countsPath = "/dev/shm/apvirt-table-ref-counts-\(getpid())-\(xattrENOSYS ? "enosys" : "sysfs")"
    process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = [
      mountPoint, "--threads", "\(threads)", "--counts", countsPath, "--uuid", mdevUUID,
      "--xattr", xattrENOSYS ? "enosys" : "sysfs",
    ]
    try process.run()
    do {
      try waitUntilReadable(mountPoint + apmaskSubpath, expected: expectedApmask, seconds: 10)
    } catch {
      stop()
      throw error
    }
  }

  let countsRequests = true
  func requestCounts() -> [UInt32: Int]? {
    let fd = open(countsPath, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var raw = [UInt64](repeating: 0, count: 64)
    let n = raw.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
    guard n == 64 * 8 else { return nil }
    var out: [UInt32: Int] = [:]
    for (op, c) in raw.enumerated() where c > 0 { out[UInt32(op)] = Int(c) }
    return out
  }

  func stop() {
    if process.isRunning {
      process.terminate()  // SIGTERM: libfuse's handler ends the loop, which unmounts.
      let deadline = monotonicNanoseconds() + 5_000_000_000
      while process.isRunning && monotonicNanoseconds() < deadline { usleep(10_000) }
    }
    if FUSEMount.isMountPoint(mountPoint) { _ = umount2(mountPoint, Int32(MNT_DETACH)) }
    removeMountPoint(mountPoint)
    unlink(countsPath)
  }
}

// MARK: - apvirt, in process

/// The embedded default machine served by apvirt's FUSE session in this process, as `apvirt up`
/// serves it: the same mount (FUSEMount.mount, the daemon's options), the same file-system
/// adapter (SysfsFileSystem) and cache policy (entries and attributes for 1 s), 4 threads. The
/// daemon's after-store work (dmesg file, uevent broadcast, store log) is not here: see
/// DaemonServer for the real daemon. In process, the session's own counters are readable.
final class InProcessServer: BenchServer {
  let name = "apvirt (in process)"
  let host: EmulatedHost
  let mountPoint: String
  let mount: FUSEMount
  let session: FUSESession
  let served = DispatchSemaphore(value: 0)
  let writeFlags = O_WRONLY
  var writePath: String { mountPoint + assignDomainSubpath }
  var readPath: String { mountPoint + apmaskSubpath }

  /// The embedded default machine with the mdev every server has: adapter 5 given to vfio_ap,
  /// the mdev made, adapter 5 and domain 5 assigned.
  static func makeHost() throws -> EmulatedHost {
    let host = EmulatedHost(definition: .embeddedDefault)
    let mdev = "/devices/vfio_ap/matrix/\(mdevUUID)"
    func put(_ path: String, _ text: String) throws { _ = try host.write(path, Array(text.utf8)) }
    try put("/bus/ap/apmask", "-5\n")
    try put("/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create", mdevUUID + "\n")
    try put(mdev + "/assign_adapter", "5\n")
    try put(mdev + "/assign_domain", "5\n")
    return host
  }

  /// The daemon's cache policy: entries and attributes for 1 s.
  static let cache = FUSESession.CachePolicy(entry: Timeout(seconds: 1), attributes: Timeout(seconds: 1))

  init(threads: Int) throws {
    let host = try Self.makeHost()
    self.host = host
    mountPoint = try makeMountPoint("apvirt-table-inproc")
    do {
      mount = try FUSEMount.mount(at: mountPoint, name: "apvirtbench")
    } catch {
      removeMountPoint(mountPoint)
      throw HarnessError("\(error)")
    }
    session = FUSESession(fd: mount.fd, fileSystem: SysfsFileSystem(host: host), cache: Self.cache)
    let (session, served) = (session, served)
    let thread = Thread {
      session.serve(threads: threads)
      served.signal()
    }
    thread.start()
    do {
      try waitUntilReadable(mountPoint + apmaskSubpath, expected: expectedApmask, seconds: 10)
    } catch {
      stop()
      throw error
    }
  }

  let countsRequests = true
  func requestCounts() -> [UInt32: Int]? {
    var out: [UInt32: Int] = [:]
    for raw in UInt32(0)..<64 {
      guard let op = FUSEOpcode(rawValue: raw) else { continue }
      let c = session.requestCount(op)
      if c > 0 { out[raw] = c }
    }
    return out
  }

  func stop() {
    mount.unmount()
    if served.wait(timeout: .now() + .seconds(10)) == .timedOut {
      note("the in-process FUSE session did not end")
    }
    removeMountPoint(mountPoint)
  }
}

// MARK: - apvirt up

/// A real `apvirt up` daemon (the release build), default machine, prepared through its mount
/// like the in-process server (adapter 5 freed, the mdev with 05.0005). It serves with its
/// after-store work (dmesg file, store log) but its request counters are not reachable from
/// outside the process: no request counts for it.
final class DaemonServer: BenchServer {
  let name = "apvirt up (daemon)"
  let runtime: String
  let mountPoint: String
  let process: Process
  let writeFlags = O_WRONLY
  var writePath: String { mountPoint + assignDomainSubpath }
  var readPath: String { mountPoint + apmaskSubpath }

  init(apvirt: String, threads: Int) throws {
    runtime = try makeTemporaryDirectory("apvirt-table-up")
    mountPoint = runtime + "/sys"
    process = Process()
    process.executableURL = URL(fileURLWithPath: apvirt)
    process.arguments = [
      "up", "--mount", mountPoint, "--state", runtime + "/state", "--threads", "\(threads)",
    ]
    let log = FileHandle(forWritingAtPath: "/dev/null")
    process.standardOutput = log
    process.standardError = log
    try process.run()
    do {
      try waitUntilReadable(mountPoint + apmaskSubpath, seconds: 30)
      try store(mountPoint + apmaskSubpath, "-5\n")
      try store(
        mountPoint + "/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create",
        mdevUUID + "\n")
      try store(mountPoint + "/devices/vfio_ap/matrix/\(mdevUUID)/assign_adapter", "5\n")
      try store(mountPoint + assignDomainSubpath, "5\n")
      guard readWhole(mountPoint + apmaskSubpath) == expectedApmask else {
        throw HarnessError("apvirt up: apmask after -5 is not \(expectedApmask)")
      }
    } catch {
      stop()
      throw error
    }
  }

  let countsRequests = false
  func requestCounts() -> [UInt32: Int]? { nil }

  func stop() {
    stopDaemon(process, mountPoint: mountPoint)
    try? FileManager.default.removeItem(atPath: runtime)
  }
}

/// SIGTERM (the daemon unmounts and exits), then SIGKILL and a lazy unmount if it does not.
func stopDaemon(_ process: Process, mountPoint: String) {
  if process.isRunning {
    process.terminate()
    let deadline = monotonicNanoseconds() + 10_000_000_000
    while process.isRunning && monotonicNanoseconds() < deadline { usleep(10_000) }
    if process.isRunning {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
  }
  for m in [mountPoint, (mountPoint as NSString).deletingLastPathComponent + "/guests"]
  where FUSEMount.isMountPoint(m) {
    _ = umount2(m, Int32(MNT_DETACH))
  }
}

/// Opcode names for the request breakdowns (linux/fuse.h).
let opcodeNames: [UInt32: String] = [
  1: "LOOKUP", 2: "FORGET", 3: "GETATTR", 4: "SETATTR", 14: "OPEN", 15: "READ", 16: "WRITE", 17: "STATFS",
  18: "RELEASE", 20: "FSYNC", 22: "GETXATTR", 23: "LISTXATTR", 25: "FLUSH", 26: "INIT", 27: "OPENDIR",
  28: "READDIR", 29: "RELEASEDIR", 34: "ACCESS", 36: "INTERRUPT", 38: "DESTROY", 42: "BATCH_FORGET",
  52: "STATX",
]
