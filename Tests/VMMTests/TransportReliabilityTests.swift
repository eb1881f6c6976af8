import Foundation
import HostKernel
import Synchronization
import Testing

@testable import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// A client of a shared server whose reads time out (a reply that does not come within the
/// time-out is a hang, and fails the test).
final class TimedClient {
  var client: JSONStreamClient

  init(path: String, timeout: Int = 1) throws {
    client = try JSONStreamClient(path: path, timeout: Double(timeout))
  }

  func send(_ text: String) { client.sendBytes(Array(text.utf8)) }

  /// The next line without its line end, or nil when none came in time (or the stream ended).
  func line() -> String? { (try? client.receiveLine()).map { String(decoding: $0, as: UTF8.self) } }

  /// The next reply (`return` or `error`), skipping events; nil if none came in time.
  func reply() -> String? {
    while let l = line() {
      if !l.hasPrefix("{\"event\"") { return l }
    }
    return nil
  }

  /// The next event named `name`, skipping other lines; nil if none came in time.
  func event(_ name: String) -> String? {
    while let l = line() {
      if l.hasPrefix("{\"event\": \"\(name)\"") { return l }
    }
    return nil
  }

  /// Closes once. (The test process runs every suite at once: a second close could hit a
  /// descriptor number another test has been given since.)
  func close() {
    guard !closed else { return }
    closed = true
    client.close()
  }

  private var closed = false

  deinit { close() }
}

/// Finding 1 of the reliability audit: a QMP client that stops reading must not stall the
/// guest, other clients or the host. Finding 4: accept loops survive failures, connections
/// are bounded.
@Suite("QMP transport: slow readers, bounded output, accept failures", .serialized)
struct TransportReliabilityTests {
  static func socketPath() -> String { "/tmp/apvirt-tr-\(UUID().uuidString.prefix(8)).sock" }

  @Test func aClientThatNeverReadsStallsNobody() throws {
    let host = try makeHost()
    let g = try guest(
      host,
      [
        "-name", "slow", "-cpu", "host", "-device",
        "vfio-ap,id=hostdev0,sysfsdev=/sys/bus/mdev/devices/\(uuid1)",
      ])
    let path = Self.socketPath()
    let server = try JSONStreamServer(path: path)
    defer { server.stop() }
    Thread.detachNewThread { server.run { c in QMPSession(guest: g).serve(c) } }

    // The client that stops reading: negotiated, so it is sent every event.
    let silent = try TimedClient(path: path)
    silent.send("{\"execute\": \"qmp_capabilities\"}\n")
    // Its greeting and reply are read by nobody either.

    let busy = try TimedClient(path: path)
    #expect(busy.line()?.hasPrefix("{\"QMP\"") == true)
    busy.send("{\"execute\": \"qmp_capabilities\"}\n")
    #expect(busy.reply() == "{\"return\": {}}")
    // 3,000 stop/cont pairs: 6,000 events (some 600 kB) pile up for the silent client, far more
    // than its socket holds. Each reply must still come within the time-out.
    var answered = 0
    for _ in 0..<3000 {
      busy.send("{\"execute\": \"stop\"}\n")
      guard busy.reply() == "{\"return\": {}}" else { break }
      busy.send("{\"execute\": \"cont\"}\n")
      guard busy.reply() == "{\"return\": {}}" else { break }
      answered += 1
    }
    #expect(answered == 3000)
    // The host's removal of the guest's mdev raises the request IRQ, the guest unplugs and
    // emits DEVICE_DELETED to both clients: the removal completes (it used to block for ever).
    let removed = Atomic<Bool>(false)
    Thread.detachNewThread {
      _ = try? host.write("/devices/vfio_ap/matrix/\(uuid1)/remove", Array("1".utf8))
      removed.store(true, ordering: .relaxed)
    }
    for _ in 0..<20 where !removed.load(ordering: .relaxed) { usleep(50_000) }
    let didRemove = removed.load(ordering: .relaxed)
    #expect(didRemove, "the host's remove waited on a client that does not read")
    #expect(g.device == nil)
    // And the guest can still quit.
    busy.send("{\"execute\": \"quit\"}\n")
    #expect(busy.reply() == "{\"return\": {}}")
    // As in QEMU, the quit takes effect after its reply has gone out, and SHUTDOWN says so.
    #expect(busy.event("SHUTDOWN") != nil)
    #expect(g.isQuit)
  }

  @Test func outputPastTheLimitDropsTheClientNotTheServer() throws {
    let path = Self.socketPath()
    let server = try JSONStreamServer(path: path)
    defer { server.stop() }
    let dropped = Atomic<Bool>(false)
    let sent = Atomic<Int>(0)
    Thread.detachNewThread {
      server.run { c in
        // A flood for a client that reads nothing: 64 KiB lines up to twice the bound.
        let line = String(repeating: "x", count: 65536)
        for _ in 0..<(2 * JSONStreamServer.Connection.outputLimit / 65536) {
          c.sendLine(line)
          sent.add(1, ordering: .relaxed)
        }
        dropped.store(c.overrun, ordering: .relaxed)
        #expect(c.pendingOutput == 0)
      }
    }
    let silent = try TimedClient(path: path, timeout: 5)
    for _ in 0..<100 where sent.load(ordering: .relaxed) < 2 * JSONStreamServer.Connection.outputLimit / 65536
    {
      usleep(20_000)
    }
    usleep(50_000)
    let wasDropped = dropped.load(ordering: .relaxed)
    #expect(wasDropped, "the connection was kept although its output passed the bound")
    // The client sees the end of the stream after what had been sent.
    var bytes = 0
    while let l = silent.line() { bytes += l.utf8.count + 1 }
    #expect(bytes <= JSONStreamServer.Connection.outputLimit + 2 * 65538 + 4 * 1024 * 1024)
    // The server serves the next client.
    let next = try TimedClient(path: path, timeout: 5)
    #expect(next.line()?.count == 65536)
  }

  @Test func connectionsAreBoundedAndTheNextWaitsInTheBacklog() throws {
    let path = Self.socketPath()
    let server = try JSONStreamServer(path: path, maxConnections: 2)
    defer { server.stop() }
    Thread.detachNewThread {
      server.run { c in
        c.sendLine("{\"hello\": 1}")
        while c.receive() != nil {}
      }
    }
    let a = try TimedClient(path: path)
    let b = try TimedClient(path: path)
    #expect(a.line() == "{\"hello\": 1}")
    #expect(b.line() == "{\"hello\": 1}")
    // The third connects (the backlog takes it) but is not served while two are.
    let c = try TimedClient(path: path)
    #expect(c.line() == nil)
    #expect(server.connectionCount == 2)
    // One goes; the third is served.
    a.close()
    let c2 = c
    var served: String?
    for _ in 0..<5 where served == nil { served = c2.line() }
    #expect(served == "{\"hello\": 1}")
  }

  @Test func aSocketPathThatIsNotASocketIsLeftAlone() throws {
    let path = "/tmp/apvirt-tr-\(UUID().uuidString.prefix(8)).file"
    FileManager.default.createFile(atPath: path, contents: Data("precious".utf8))
    defer { unlink(path) }
    #expect(throws: JSONStreamServer.ServerError.self) { try JSONStreamServer(path: path) }
    #expect((try? String(contentsOfFile: path, encoding: .utf8)) == "precious")
    // A live server's socket is not taken over either.
    let live = Self.socketPath()
    let server = try JSONStreamServer(path: live)
    defer { server.stop() }
    Thread.detachNewThread { server.run { c in while c.receive() != nil {} } }
    do {
      _ = try JSONStreamServer(path: live)
      Issue.record("a second server replaced a live socket")
    } catch {
      #expect("\(error)".contains("Address already in use"))
    }
    // A stale one (nobody listens) is replaced.
    server.stop()
    let again = try JSONStreamServer(path: live)
    again.stop()
  }

  /// The test process's umask (022) would leave a socket 0755: the mode is set, not inherited.
  @Test func theSocketModeIsNotTheUmasks() throws {
    let path = Self.socketPath()
    let server = try JSONStreamServer(path: path)
    defer { server.stop() }
    var st = stat()
    #expect(lstat(path, &st) == 0)
    #expect(st.st_mode & 0o777 == 0o600)
  }
}
