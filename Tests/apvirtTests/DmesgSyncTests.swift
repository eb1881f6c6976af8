import Foundation
import HostKernel
import Testing

@testable import apvirt

/// The dmesg file beside the mount follows the log by sequence number: a store costs the lines it
/// logged, however full the log. The work is counted (lines formatted, bytes written), not timed.
@Suite("DmesgSync: the dmesg file follows the log")
struct DmesgSyncTests {
  static let u1 = "62177883-f1bb-47f0-914d-32a22e3a8804"
  static let u2 = "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3"
  static let matrix = "/devices/vfio_ap/matrix/"

  /// A host where assigning adapter 5 to the second mdev is refused and logs one line.
  static func refusingHost(logBufferLength: Int = KernelLog.defaultCapacity) throws -> EmulatedHost {
    let k = HostKernel()
    k.logBufferLength = logBufferLength
    try k.write("/bus/ap/apmask", "-5,-6")
    for u in [u1, u2] { try k.write(matrix + "mdev_supported_types/vfio_ap-passthrough/create", u) }
    try k.write(matrix + u1 + "/assign_adapter", "5")
    try k.write(matrix + u1 + "/assign_domain", "0x47")
    try k.write(matrix + u2 + "/assign_domain", "0x47")
    return EmulatedHost(kernel: k)
  }

  static func refuse(_ host: EmulatedHost) {
    #expect(throws: (any Error).self) { try host.write(matrix + u2 + "/assign_adapter", Array("5".utf8)) }
  }

  static func temporaryPath() -> String {
    NSTemporaryDirectory() + "apvirt-dmesg-\(UUID().uuidString)"
  }

  static let refusal =
    "[    0.000000] vfio_ap_mdev \(u2): Userspace may not assign queue 05.0047 to mdev: already assigned to \(u1)\n"

  /// What one refused store and the sync after it cost.
  static func costOfOneRefusal(_ host: EmulatedHost, _ sync: KernelLogFile) -> KernelLogFile.Stats {
    let before = sync.stats
    refuse(host)
    sync.sync()
    let after = sync.stats
    return KernelLogFile.Stats(
      linesFormatted: after.linesFormatted - before.linesFormatted,
      bytesWritten: after.bytesWritten - before.bytesWritten, rewrites: after.rewrites - before.rewrites,
      missed: after.missed - before.missed)
  }

  @Test func aRefusedStoreCostsOneLineWithAnEmptyLogAndWithAFullOne() throws {
    let host = try Self.refusingHost()
    let path = Self.temporaryPath()
    defer { try? FileManager.default.removeItem(atPath: path) }
    let sync = KernelLogFile(host: host, path: path)
    sync.sync()
    #expect(sync.stats.rewrites == 1)
    let empty = Self.costOfOneRefusal(host, sync)
    let one = KernelLogFile.Stats(
      linesFormatted: 1, bytesWritten: Self.refusal.utf8.count, rewrites: 0, missed: 0)
    #expect(empty == one)
    // Fill the ring until it drops lines, syncing after each store as the daemon does.
    var stores = 0
    while host.withKernel({ $0.log.firstSeq }) == 0 {
      Self.refuse(host)
      sync.sync()
      stores += 1
    }
    #expect(stores > 800)
    #expect(host.withKernel { $0.log.byteCount } > KernelLog.defaultCapacity - 200)
    let full = Self.costOfOneRefusal(host, sync)
    #expect(full == one)
    // The file holds every line in order: its end is the whole ring.
    let file = try String(contentsOfFile: path, encoding: .utf8)
    #expect(file.hasSuffix(host.withKernel { $0.log.dmesgText }))
    #expect(file.hasSuffix(Self.refusal + Self.refusal))
    #expect(sync.stats.rewrites == 1)
    // Nothing new: nothing formatted, nothing written.
    let idle = sync.stats
    sync.sync()
    #expect(sync.stats == idle)
  }

  @Test func theFileStaysWithinItsBoundByRewritingItFromTheRing() throws {
    let host = try Self.refusingHost(logBufferLength: 4096)
    let path = Self.temporaryPath()
    defer { try? FileManager.default.removeItem(atPath: path) }
    let sync = KernelLogFile(host: host, path: path, maxFileBytes: 16384)
    sync.sync()
    for _ in 0..<1000 {
      Self.refuse(host)
      sync.sync()
      let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? -1
      #expect(size > 0 && size <= 16384)
    }
    #expect(sync.stats.rewrites > 1)
    #expect(sync.stats.missed == 0)
    let file = try String(contentsOfFile: path, encoding: .utf8)
    #expect(file.hasSuffix(host.withKernel { $0.log.dmesgText }))
    // A removed file is written anew.
    try FileManager.default.removeItem(atPath: path)
    Self.refuse(host)
    sync.sync()
    #expect(try String(contentsOfFile: path, encoding: .utf8) == host.withKernel { $0.log.dmesgText })
  }

  @Test func linesThatFellOutOfTheRingBeforeASyncAreCountedMissed() throws {
    let host = try Self.refusingHost(logBufferLength: 4096)
    let path = Self.temporaryPath()
    defer { try? FileManager.default.removeItem(atPath: path) }
    let sync = KernelLogFile(host: host, path: path)
    sync.sync()
    let start = try String(contentsOfFile: path, encoding: .utf8)
    for _ in 0..<100 { Self.refuse(host) }
    sync.sync()
    let kept = host.withKernel { $0.log.count }
    #expect(sync.stats.missed == UInt64(100 - kept))
    #expect(
      try String(contentsOfFile: path, encoding: .utf8)
        == start + String(repeating: Self.refusal, count: kept))
  }
}
