import APModel
import Benchmark
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

// The emulated sysfs served through a real FUSE mount, against the same system calls on tmpfs:
// one open/write/close (or open/read/close) cycle each, so that `mount / tmpfs` can be read off
// one run. Needs root and /dev/fuse; see README.md.

let benchmarks: @Sendable () -> Void = {
  // One sample is one cycle: tens of microseconds through FUSE, a few on tmpfs. Wall clock in
  // nanoseconds; mallocs count the whole process, so through FUSE they are the server's.
  let configuration = Benchmark.Configuration(
    metrics: [.wallClock, .mallocCountTotal],
    timeUnits: .nanoseconds,
    warmupIterations: 100,
    maxDuration: .seconds(3),
    maxIterations: 200_000
  )
  // Through FUSE, also the number of requests the kernel sent the server for the cycle.
  let fuseConfiguration = Benchmark.Configuration(
    metrics: configuration.metrics + [FUSEFixture.requestsMetric],
    timeUnits: configuration.timeUnits,
    warmupIterations: configuration.warmupIterations,
    maxDuration: configuration.maxDuration,
    maxIterations: configuration.maxIterations
  )

  // MARK: write: echo 5 > assign_domain

  Benchmark(
    "write cycle: FUSE sysfs assign_domain",
    configuration: fuseConfiguration,
    closure: { benchmark, fixture in
      for _ in benchmark.scaledIterations {
        let before = fixture.requests()
        benchmark.startMeasurement()
        writeCycle(fixture.assignDomainPath, flags: O_WRONLY)
        benchmark.stopMeasurement()
        benchmark.measurement(FUSEFixture.requestsMetric, fixture.requests() - before)
      }
    },
    setup: { try FUSEFixture.start() },
    teardown: { FUSEFixture.stopCurrent() }
  )

  Benchmark(
    "write cycle: tmpfs file",
    configuration: configuration,
    closure: { benchmark, file in
      for _ in benchmark.scaledIterations {
        benchmark.startMeasurement()
        writeCycle(file.path, flags: O_WRONLY | O_TRUNC | O_CREAT)
        benchmark.stopMeasurement()
      }
    },
    setup: { try TmpfsFile(content: "5\n") },
    teardown: { TmpfsFile.removeAll() }
  )

  // MARK: read: cat /sys/bus/ap/apmask

  Benchmark(
    "read cycle: FUSE sysfs apmask",
    configuration: fuseConfiguration,
    closure: { benchmark, fixture in
      for _ in benchmark.scaledIterations {
        let before = fixture.requests()
        benchmark.startMeasurement()
        let n = readCycle(fixture.apmaskPath)
        benchmark.stopMeasurement()
        precondition(n == fixture.apmask.count, "read \(n) bytes of apmask")
        benchmark.measurement(FUSEFixture.requestsMetric, fixture.requests() - before)
      }
    },
    setup: { try FUSEFixture.start() },
    teardown: { FUSEFixture.stopCurrent() }
  )

  Benchmark(
    "read cycle: tmpfs file",
    configuration: configuration,
    closure: { benchmark, file in
      for _ in benchmark.scaledIterations {
        benchmark.startMeasurement()
        let n = readCycle(file.path)
        benchmark.stopMeasurement()
        precondition(n == file.size, "read \(n) bytes")
      }
    },
    // The content of the emulated apmask after the fixture's `-5`, byte for byte.
    setup: { try TmpfsFile(content: FUSEFixture.expectedApmask) },
    teardown: { TmpfsFile.removeAll() }
  )
}

// MARK: - The measured cycles

// Paths are passed as C strings made once, and the buffers are allocated once, so that a cycle
// is the three system calls and nothing else (no malloc on the benchmark's side).

/// open(2), write(2) of "5\n", close(2): `echo 5 > path` without the shell.
@inline(never)
func writeCycle(_ path: [CChar], flags: Int32) {
  let fd = open(path, flags | O_CLOEXEC, 0o644)
  precondition(fd >= 0, "open \(name(path)): \(Errno(rawValue: errno))")
  let n = write(fd, written.utf8Start, written.utf8CodeUnitCount)
  precondition(
    n == written.utf8CodeUnitCount, "write \(name(path)): \(n < 0 ? "\(Errno(rawValue: errno))" : "\(n)")")
  precondition(close(fd) == 0, "close \(name(path)): \(Errno(rawValue: errno))")
}

/// open(2) O_RDONLY, one read(2) of up to 4096 bytes, close(2). Returns the count read.
@inline(never)
func readCycle(_ path: [CChar]) -> Int {
  let fd = open(path, O_RDONLY | O_CLOEXEC)
  precondition(fd >= 0, "open \(name(path)): \(Errno(rawValue: errno))")
  let n = read(fd, readBuffer.baseAddress, readBuffer.count)
  precondition(n >= 0, "read \(name(path)): \(Errno(rawValue: errno))")
  precondition(close(fd) == 0, "close \(name(path)): \(Errno(rawValue: errno))")
  return n
}

/// What the write cycles write.
let written: StaticString = "5\n"

/// For messages.
func name(_ path: [CChar]) -> String { path.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } }

/// The read cycles' buffer: only the benchmark's one thread uses it.
nonisolated(unsafe) let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)

// MARK: - The FUSE mount

/// The embedded default machine served through a FUSE mount in a fresh directory under /tmp,
/// as `apvirt up` serves it (same mount options, default cache policy, 4 serving threads), with
/// one mdev that owns APQN (5, 5), so that `echo 5 > assign_domain` succeeds (assigning an
/// assigned domain again is a successful no-op) and can be repeated.
///
/// The plugin runs each benchmark in a process of its own; setup mounts, teardown unmounts
/// (which ends the serving threads) and waits for the threads, so nothing outlives the process.
final class FUSEFixture: Sendable {
  static let uuid = "0b5e7c1a-fa57-4e5e-8b1d-5e7f5bad0005"
  static let requestsMetric = BenchmarkMetric.custom(
    "FUSE requests", polarity: .prefersSmaller, useScalingFactor: true)
  /// apmask after `-5`: every adapter but 5 (bit 5 of the leftmost byte is 0x04).
  static let expectedApmask = "0xfbffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\n"

  let host: EmulatedHost
  let mountPoint: String
  let mount: FUSEMount
  let session: FUSESession
  /// Signalled when `serve` returns.
  let served = DispatchSemaphore(value: 0)
  /// `<mount>/devices/vfio_ap/matrix/<uuid>/assign_domain` and `<mount>/bus/ap/apmask`.
  let assignDomainPath: [CChar]
  let apmaskPath: [CChar]
  let apmask: [UInt8]

  private static let current = Mutex<FUSEFixture?>(nil)

  static func start() throws -> FUSEFixture {
    let fixture = try FUSEFixture()
    do {
      try fixture.check()
    } catch {
      fixture.stop()
      throw error
    }
    current.withLock { $0 = fixture }
    return fixture
  }

  struct SetupError: Error, CustomStringConvertible {
    var description: String
  }

  static func stopCurrent() {
    current.withLock { f in
      f?.stop()
      f = nil
    }
  }

  private init() throws {
    let host = EmulatedHost(definition: .embeddedDefault)
    let mdev = "/devices/vfio_ap/matrix/\(Self.uuid)"
    func store(_ path: String, _ text: String) throws {
      try host.write(path, Array(text.utf8))
    }
    // Free adapter 5 from the zcrypt drivers, then an mdev with adapter 5 and domain 5.
    try store("/bus/ap/apmask", "-5\n")
    try store("/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create", Self.uuid + "\n")
    try store(mdev + "/assign_adapter", "5\n")
    try store(mdev + "/assign_domain", "5\n")
    let matrix = String(decoding: try host.read(mdev + "/matrix"), as: UTF8.self)
    precondition(matrix == "05.0005\n", "mdev matrix: \(matrix)")
    apmask = try host.read("/bus/ap/apmask")
    precondition(String(decoding: apmask, as: UTF8.self) == Self.expectedApmask)

    var template = Array("/tmp/apvirt-bench-XXXXXX".utf8CString)
    guard let dir = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
      throw Errno(rawValue: errno)
    }
    mountPoint = String(cString: dir)
    do {
      mount = try FUSEMount.mount(at: mountPoint, name: "apvirtbench")
    } catch {
      rmdir(mountPoint)
      throw error
    }
    self.host = host
    // The daemon's cache policy (HostDaemon): entries and attributes for a second, removals
    // invalidated at once.
    session = FUSESession(
      fd: mount.fd, fileSystem: SysfsFileSystem(host: host),
      cache: .init(entry: Timeout(seconds: 1), attributes: Timeout(seconds: 1)))
    assignDomainPath = Array((mountPoint + mdev + "/assign_domain").utf8CString)
    apmaskPath = Array((mountPoint + "/bus/ap/apmask").utf8CString)

    let (session, served) = (session, served)
    let thread = Thread {
      session.serve(threads: 4)
      served.signal()
    }
    thread.start()
  }

  /// Through the mount, once: the store succeeds and apmask reads as in the kernel. Throws (and
  /// `start` unmounts) rather than trapping, which would leave a stale mount behind.
  func check() throws {
    let mdev = "/devices/vfio_ap/matrix/\(Self.uuid)"
    let fd = open(assignDomainPath, O_WRONLY | O_CLOEXEC)
    guard fd >= 0 else { throw SetupError(description: "open assign_domain: \(Errno(rawValue: errno))") }
    let n = write(fd, written.utf8Start, written.utf8CodeUnitCount)
    let e = Errno(rawValue: errno)
    close(fd)
    guard n == written.utf8CodeUnitCount else { throw SetupError(description: "write assign_domain: \(e)") }
    let matrix = String(decoding: try host.read(mdev + "/matrix"), as: UTF8.self)
    guard matrix == "05.0005\n" else {
      throw SetupError(description: "mdev matrix after the store: \(matrix)")
    }
    let text = try String(contentsOfFile: name(apmaskPath), encoding: .utf8)
    guard text == Self.expectedApmask else { throw SetupError(description: "apmask through FUSE: \(text)") }
  }

  /// The requests served so far, all opcodes.
  func requests() -> Int {
    Self.opcodes.reduce(0) { $0 + session.requestCount($1) }
  }

  /// Every opcode a cycle can cause.
  static let opcodes: [FUSEOpcode] = [
    .lookup, .forget, .batchForget, .getattr, .setattr, .open, .read, .write, .flush, .release, .access,
    .getxattr, .statx, .interrupt,
  ]

  /// Unmounts, waits for the serving threads to end, removes the mount point. With
  /// `APVIRT_BENCH_PROFILE` set, first prints the requests served by opcode to stderr.
  func stop() {
    if ProcessInfo.processInfo.environment["APVIRT_BENCH_PROFILE"] != nil {
      let counts = Self.opcodes.map { ($0, session.requestCount($0)) }.filter { $0.1 > 0 }
      let text = counts.map { "\($0.0): \($0.1)" }.joined(separator: ", ")
      FileHandle.standardError.write(Data("FUSE requests served: \(text)\n".utf8))
    }
    mount.unmount()
    if served.wait(timeout: .now() + .seconds(10)) == .timedOut {
      FileHandle.standardError.write(Data("FUSEBenchmarks: the FUSE session did not end\n".utf8))
    }
    rmdir(mountPoint)
  }
}

// MARK: - tmpfs

/// A regular file in /dev/shm (tmpfs) holding `content`.
final class TmpfsFile: Sendable {
  let path: [CChar]
  let size: Int
  private static let created = Mutex<[String]>([])

  init(content: String) throws {
    let path = "/dev/shm/apvirt-bench-\(getpid())-\(UUID().uuidString)"
    try Data(content.utf8).write(to: URL(fileURLWithPath: path))
    Self.created.withLock { $0.append(path) }
    self.path = Array(path.utf8CString)
    size = content.utf8.count
  }

  static func removeAll() {
    let paths = created.withLock { p in
      let all = p
      p.removeAll()
      return all
    }
    for path in paths { unlink(path) }
  }
}
