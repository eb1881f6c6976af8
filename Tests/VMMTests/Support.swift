import Foundation
import HostKernel
import Machine
import Synchronization
import SystemPackage
import Testing

@testable import VMM

#if canImport(Glibc)
  import Glibc
#endif

let uuid1 = "62177883-f1bb-47f0-914d-32a22e3a8804"
let uuid2 = "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3"
let fixedClock: @Sendable () -> (seconds: Int, microseconds: Int) = { (1_700_000_000, 123_456) }

/// A host with adapters 5 and 6 free and two mdevs: uuid1 with 05/06 x 0004, uuid2 with 05/06 x 0047.
func makeHost() throws -> EmulatedHost {
  let host = EmulatedHost(definition: .embeddedDefault)
  try host.withKernel { (k) throws(Errno) in
    try k.write("/bus/ap/apmask", "-5,-6")
    for (u, d) in [(uuid1, "4"), (uuid2, "0x47")] {
      try k.write("/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create", u)
      try k.write("/devices/vfio_ap/matrix/\(u)/assign_adapter", "5")
      try k.write("/devices/vfio_ap/matrix/\(u)/assign_adapter", "6")
      try k.write("/devices/vfio_ap/matrix/\(u)/assign_domain", d)
    }
  }
  return host
}

func guest(_ host: EmulatedHost, _ args: [String], version: QEMUVersion = .current) throws -> Guest {
  try Guest(host: host, configuration: try QEMUCommandLine.parse(args), version: version, clock: fixedClock)
}

/// A raw QMP connection over a real Unix socket: bytes in, lines out, CRLF kept.
final class RawQMP {
  let server: JSONStreamServer
  let fd: Int32
  var buffer: [UInt8] = []

  init(guest: Guest) throws {
    let path = "/tmp/apvirt-qmp-\(UUID().uuidString.prefix(8)).sock"
    server = try JSONStreamServer(path: path)
    let s = server
    Thread.detachNewThread { s.run { c in QMPSession(guest: guest).serve(c) } }
    var client = try JSONStreamClient(path: path)
    fd = client.fd
    _ = client
  }

  func send(_ text: String) {
    let b = Array(text.utf8)
    _ = b.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
  }

  func sendBytes(_ b: [UInt8]) {
    _ = b.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
  }

  /// The next line, with its CRLF.
  func line() -> String {
    while true {
      if let i = buffer.firstIndex(of: 10) {
        let l = String(decoding: buffer[...i], as: UTF8.self)
        buffer.removeSubrange(...i)
        return l
      }
      var chunk = [UInt8](repeating: 0, count: 4096)
      let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n <= 0 { return "<eof>" }
      buffer += chunk[0..<n]
    }
  }

  /// Sends and returns the next line.
  func exchange(_ text: String) -> String {
    send(text)
    return line()
  }

  deinit {
    close(fd)
    server.stop()
  }
}
