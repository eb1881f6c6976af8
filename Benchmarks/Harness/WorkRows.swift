import FUSE
import Foundation
import SysfsFUSE

#if canImport(Glibc)
  import Glibc
#endif

/// The server's own work per cycle: the requests of one open/write/close (OPEN, WRITE, RELEASE)
/// and of one open/read/close (OPEN, READ, RELEASE) handed to `FUSESession.handle` directly, on
/// one thread, without a kernel: what the FUSE rows' apvirt lines pay on top of the round trips.
/// The session is the in-process server's (the embedded default machine, the same mdev, the same
/// cache policy); `handle` copies each reply into an array, which the serving threads do not.
struct WorkRows {
  var cycles = setting("WORK_CYCLES", 200_000)
  /// Cycles per timed sample (a sample is their mean, so that the clock's own cost is negligible).
  let perSample = 100

  func run() throws -> [TableLine] {
    // No connection: `handle` returns each reply, and nothing here is removed, so nothing is sent.
    let session = FUSESession(
      fd: -1, fileSystem: SysfsFileSystem(host: try InProcessServer.makeHost()), cache: InProcessServer.cache)
    var wire = RequestWriter()
    _ = try wire.send(session, wire.initRequest())
    func lookUp(_ path: String) throws -> UInt64 {
      var node: UInt64 = 1
      for name in path.split(separator: "/") {
        node = try wire.send(session, wire.lookup(String(name), in: node)).u64(at: 16)
      }
      return node
    }
    let writeNode = try lookUp(assignDomainSubpath)
    let readNode = try lookUp(apmaskSubpath)

    // The requests are written once; each cycle patches in the handle OPEN returned and a new
    // unique id, so that the harness's own work stays out of the samples.
    var open = [wire.open(writeNode, flags: O_WRONLY), wire.open(readNode, flags: O_RDONLY)]
    var transfer = [wire.write(0, node: writeNode, "5\n"), wire.read(0, node: readNode)]
    var release = [wire.release(0, node: writeNode), wire.release(0, node: readNode)]
    func cycle(_ k: Int) throws {
      wire.unique += 1
      open[k].put(wire.unique, at: 8)
      let fh = try wire.send(session, open[k]).u64(at: 16)
      transfer[k].put(wire.unique, at: 8)
      transfer[k].put(fh, at: 40)
      let reply = try wire.send(session, transfer[k])
      if k == 0 {
        guard reply.u32(at: 16) == 2 else {
          throw HarnessError("work: WRITE stored \(reply.u32(at: 16)) bytes")
        }
      } else {
        guard reply.count == 16 + expectedApmask.utf8.count else {
          throw HarnessError("work: READ returned \(reply.count - 16) bytes")
        }
      }
      release[k].put(wire.unique, at: 8)
      release[k].put(fh, at: 40)
      _ = try wire.send(session, release[k])
    }
    note("work: \(cycles) open/write/close and open/read/close cycles through FUSESession.handle")
    var lines: [TableLine] = []
    for (k, what) in ["OPEN, WRITE, RELEASE", "OPEN, READ, RELEASE"].enumerated() {
      let write = k == 0
      for _ in 0..<1000 { try cycle(k) }
      var samples = Samples()
      for _ in 0..<max(1, cycles / perSample) {
        let start = monotonicNanoseconds()
        for _ in 0..<perSample { try cycle(k) }
        samples.append(Double(monotonicNanoseconds() - start) / Double(perSample))
      }
      lines.append(
        TableLine(
          row: write ? "server work per open/write/close" : "server work per open/read/close",
          what: "apvirt, \(what) by `handle`", unit: .nanoseconds, samples: samples))
    }
    return lines
  }
}

/// FUSE requests as the kernel writes them (protocol 7.33: `fuse_in_header` of 40 bytes, then
/// the opcode's body), each with the next unique id.
struct RequestWriter {
  var unique: UInt64 = 0
  let pid = UInt32(getpid())

  mutating func send(_ session: FUSESession, _ request: [UInt8]) throws -> [UInt8] {
    guard let reply = request.withUnsafeBytes({ session.handle($0) }) else {
      throw HarnessError("work: a request got no reply")
    }
    let error = Int32(bitPattern: reply.u32(at: 4))
    guard error == 0 else { throw HarnessError("work: a request failed with errno \(-error)") }
    return reply
  }

  mutating func request(_ opcode: FUSEOpcode, node: UInt64, _ body: [UInt8]) -> [UInt8] {
    unique += 1
    var out: [UInt8] = []
    out.reserveCapacity(40 + body.count)
    out.append(le: UInt32(40 + body.count))
    out.append(le: opcode.rawValue)
    out.append(le: unique)
    out.append(le: node)
    out.append(le: UInt32(0))  // uid
    out.append(le: UInt32(0))  // gid
    out.append(le: pid)
    out.append(le: UInt32(0))  // total_extlen, padding
    return out + body
  }

  mutating func initRequest() -> [UInt8] {
    var body: [UInt8] = []
    for v: UInt32 in [7, 33, 128 * 1024, 0] { body.append(le: v) }
    return request(.`init`, node: 0, body)
  }

  mutating func lookup(_ name: String, in parent: UInt64) -> [UInt8] {
    request(.lookup, node: parent, Array(name.utf8) + [0])
  }

  mutating func open(_ node: UInt64, flags: Int32) -> [UInt8] {
    var body: [UInt8] = []
    body.append(le: UInt32(bitPattern: flags))
    body.append(le: UInt32(0))
    return request(.open, node: node, body)
  }

  /// `fuse_write_in` and `fuse_read_in`, which have the same 40 bytes: the handle, offset 0,
  /// the size, no write or read flags, no lock owner, and the file's open flags.
  static func transferBody(_ fh: UInt64, size: Int, openFlags: Int32) -> [UInt8] {
    var body: [UInt8] = []
    body.append(le: fh)
    body.append(le: UInt64(0))
    body.append(le: UInt32(size))
    body.append(le: UInt32(0))
    body.append(le: UInt64(0))
    body.append(le: UInt32(bitPattern: openFlags))
    body.append(le: UInt32(0))
    return body
  }

  mutating func write(_ fh: UInt64, node: UInt64, _ text: String) -> [UInt8] {
    let data = Array(text.utf8)
    return request(.write, node: node, Self.transferBody(fh, size: data.count, openFlags: O_WRONLY) + data)
  }

  /// One page at offset 0.
  mutating func read(_ fh: UInt64, node: UInt64) -> [UInt8] {
    request(.read, node: node, Self.transferBody(fh, size: 4096, openFlags: O_RDONLY))
  }

  /// `fuse_release_in` (24 bytes).
  mutating func release(_ fh: UInt64, node: UInt64) -> [UInt8] {
    var body: [UInt8] = []
    body.append(le: fh)
    body.append(le: UInt32(0))
    body.append(le: UInt32(0))
    body.append(le: UInt64(0))
    return request(.release, node: node, body)
  }
}

extension Array where Element == UInt8 {
  mutating func append<T: FixedWidthInteger>(le value: T) {
    Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
  }

  /// Overwrites the 8 bytes at `offset` (a unique id, a file handle).
  mutating func put(_ value: UInt64, at offset: Int) {
    for i in 0..<8 { self[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * i)) }
  }

  func u32(at offset: Int) -> UInt32 {
    (0..<4).reduce(0) { $0 | UInt32(self[offset + $1]) << (8 * $1) }
  }

  func u64(at offset: Int) -> UInt64 {
    (0..<8).reduce(0) { $0 | UInt64(self[offset + $1]) << (8 * $1) }
  }
}
