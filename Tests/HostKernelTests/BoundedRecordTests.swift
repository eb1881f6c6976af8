import APModel
import Foundation
import Machine
import Testing

@testable import HostKernel

@Suite("Bounded records: the kernel log and the uevents")
struct BoundedRecordTests {
  // MARK: The log

  @Test func theLogKeepsItsFormatAndNumbersLinesFromZero() {
    var log = KernelLog()
    log.append("first", at: 0)
    log.append("second", at: 12_345_678_901)
    log.append("third", at: 123_456_789_012_345)
    #expect(log.dmesgText == "[    0.000000] first\n[   12.345678] second\n[123456.789012] third\n")
    #expect(log.lines.map(\.seq) == [0, 1, 2])
    #expect(log.firstSeq == 0)
    #expect(log.nextSeq == 3)
    #expect(log.byteCount == 5 + 6 + 5)
    let f = log.lines(from: 1)
    #expect(f.lines.map(\.text) == ["second", "third"])
    #expect(f.missed == 0)
    #expect(f.next == 3)
    #expect(log.lines(from: 3).lines.isEmpty)
    #expect(log.messages(from: 2) == ["third"])
  }

  @Test func theLogIsBoundedInBytesAndReadersLearnWhatTheyMissed() {
    var log = KernelLog(capacity: 1000)
    let line = String(repeating: "x", count: 99)
    for i in 0..<100 { log.append(line + String(i % 10), at: UInt64(i)) }
    // 1000 bytes hold ten 100-byte lines: the newest ten.
    #expect(log.count == 10)
    #expect(log.byteCount == 1000)
    #expect(log.firstSeq == 90)
    #expect(log.nextSeq == 100)
    let f = log.lines(from: 50)
    #expect(f.missed == 40)
    #expect(f.lines.map(\.seq) == Array(90..<100))
    #expect(f.next == 100)
    // A reader that kept up misses nothing.
    log.append("new", at: 200)
    #expect(log.lines(from: 100).missed == 0)
    #expect(log.lines(from: 100).lines.map(\.text) == ["new"])
    // One record per 32 bytes at most, as the printk ring's descriptors.
    var short = KernelLog(capacity: 320)
    for i in 0..<50 { short.append("a", at: UInt64(i)) }
    #expect(short.count == 10)
    // Shrinking the ring drops the oldest at once.
    log.capacity = 300
    #expect(log.byteCount <= 300)
    #expect(log.messages.last == "new")
  }

  @Test func theHostLogStaysWithinLogBufLenWhenAStoreLogsMoreThanItHolds() throws {
    let k = bootWithFreedAdapters()
    #expect(k.logBufferLength == 1 << 17)
    k.logBufferLength = 4096
    makeMdev(k, uuid1, adapters: [5], domains: [4, 0x47])
    makeMdev(k, uuid2, domains: [0x47])
    let before = k.log.nextSeq
    for _ in 0..<500 { #expect(echo(k, "5", mdevPath(uuid2) + "/assign_adapter") == .addressInUse) }
    #expect(k.log.byteCount <= 4096)
    #expect(k.log.nextSeq - before == 500)
    let f = k.log.lines(from: before)
    #expect(f.missed + UInt64(f.lines.count) == 500)
    #expect(f.missed > 0)
    #expect(
      f.lines.last?.text
        == "vfio_ap_mdev \(uuid2): Userspace may not assign queue 05.0047 to mdev: already assigned to \(uuid1)"
    )
  }

  // MARK: The uevents

  @Test func ueventsAreNumberedBySeqnumAndFollowedAfterOne() {
    var r = UEventRing(capacity: 3)
    #expect(r.lastSeqnum == 0)
    #expect(r.events(after: 0).events.isEmpty)
    for i in 1...5 { r.send(UEvent(.change, "/devices/ap", ["N=\(i)"])) }
    #expect(r.lastSeqnum == 5)
    #expect(Array(r) == (3...5).map { UEvent(.change, "/devices/ap", ["N=\($0)"]) })
    let all = r.events(after: 0)
    #expect(all.events.map(\.seq) == [3, 4, 5])
    #expect(all.events.map(\.element.environment) == [["N=3"], ["N=4"], ["N=5"]])
    #expect(all.missed == 2)
    #expect(all.lastSeqnum == 5)
    let caughtUp = r.events(after: 3)
    #expect(caughtUp.events.map(\.seq) == [4, 5])
    #expect(caughtUp.missed == 0)
    #expect(r.events(after: 5).events.isEmpty)
    #expect(r.events(after: 5).missed == 0)
    // A number used while recording was off is missed too.
    r.sendUnrecorded()
    r.send(UEvent(.add, "/devices/ap/card05"))
    let f = r.events(after: 5)
    #expect(f.events.map(\.seq) == [7])
    #expect(f.missed == 1)
  }

  /// The ring keeps its records in a circle of slots: whatever the mix of appends, skips and
  /// drops, what it keeps and what a follower gets and misses are those of a plain list of the
  /// records (the model).
  @Test func theRingAnswersAsAListWhenItWrapsAndGrows() {
    var ring = SequenceRing<Int>(firstSeq: 10)
    var model: [(seq: UInt64, element: Int)] = []
    var next: UInt64 = 10
    var rng = SystemRandomNumberGenerator()
    for step in 0..<5000 {
      // Phases that keep about 5, 40 and 300 records, so that the circle wraps while small and
      // grows while wrapped.
      let bound = step < 1500 ? 5 : step < 3000 ? 40 : 300
      switch Int.random(in: 0..<10, using: &rng) {
      case 0:
        ring.skip()
        next += 1
      case 1, 2, 3:
        if model.count > bound / 2 {
          #expect(ring.removeOldest() == model.removeFirst().element)
        }
      default:
        #expect(ring.append(step) == next)
        model.append((next, step))
        next += 1
        while model.count > bound {
          #expect(ring.removeOldest() == model.removeFirst().element)
        }
      }
      #expect(ring.count == model.count)
      #expect(ring.nextSeq == next)
      #expect(ring.firstSeq == (model.first?.seq ?? next))
      if step % 97 == 0 {
        #expect(ring.kept.map(\.seq) == model.map(\.seq))
        #expect(ring.kept.map(\.element) == model.map(\.element))
        for from in [UInt64(0), model.first?.seq ?? next, (model.first?.seq ?? next) + 3, next, next + 5] {
          let f = ring.records(from: from)
          let expected = model.filter { $0.seq >= from }
          #expect(f.records.map(\.seq) == expected.map(\.seq))
          #expect(f.missed == (from < next ? next - from : 0) - UInt64(expected.count))
          #expect(f.next == max(from, next))
        }
      }
    }
    #expect(ring.removeOldest() != nil || model.isEmpty)
    ring.removeAll()
    #expect(ring.isEmpty && ring.kept.isEmpty && ring.firstSeq == ring.nextSeq)
  }

  @Test func theKernelsUEventRecordIsBoundedAndNumbersEveryEvent() throws {
    let k = HostKernel()
    // The boot alone sends more uevents than the record keeps (3072 queues, 12 cards).
    #expect(k.uevents.lastSeqnum > 4096)
    #expect(k.uevents.count == 4096)
    #expect(k.uevents.last == UEvent(.change, "/devices/ap", ["INITSCAN=done"]))
    let seq = k.uevents.lastSeqnum
    #expect(echo(k, "-5", "/bus/ap/apmask") == nil)
    let f = k.uevents.events(after: seq)
    #expect(f.missed == 0)
    // 256 unbinds and 256 binds, then the mask's change.
    #expect(f.events.count == 513)
    #expect(
      f.events.first?.element
        == UEvent(.unbind, "/devices/ap/card05/05.0000", ["DEVTYPE=ap_queue", "MODE=cca"]))
    #expect(f.events.last?.element.environment.first?.hasPrefix("APMASK=") == true)
    #expect(k.uevents.count == 4096)
    k.recordsUEvents = false
    #expect(echo(k, "+5", "/bus/ap/apmask") == nil)
    #expect(k.uevents.lastSeqnum == seq + 513 * 2)
    #expect(k.uevents.events(after: seq + 513).missed == 513)
  }

  // MARK: The growth harness

  /// apmask flips and assign/unassign cycles through sysfs leave every record at its bound: the
  /// uevents, the log, and the sysfs removal journal a FUSE server takes from. 300 of each here;
  /// `APVIRT_GROWTH_ITERATIONS=10000` runs the audit's 10,000 and prints the resident memory.
  @Test func flipsAndCyclesDoNotGrowTheRecords() throws {
    let n = ProcessInfo.processInfo.environment["APVIRT_GROWTH_ITERATIONS"].flatMap(Int.init) ?? 300
    let k = bootWithFreedAdapters()
    makeMdev(k, uuid1, adapters: [5], domains: [4, 0x47])
    makeMdev(k, uuid2, domains: [0x47])
    // A server that started taking the journal and then stopped.
    _ = k.sysfs.takeRemovedPaths()
    let rss0 = residentKiB()
    for i in 0..<n {
      try k.write("/bus/ap/apmask", i % 2 == 0 ? "-0" : "+0")
      try k.write(mdevPath(uuid1) + "/assign_domain", "7")
      try k.write(mdevPath(uuid1) + "/unassign_domain", "7")
      // And one refusal that logs.
      #expect(echo(k, "5", mdevPath(uuid2) + "/assign_adapter") == .addressInUse)
    }
    let rss1 = residentKiB()
    print(
      "growth harness: \(n) flips and cycles: resident \(rss0) -> \(rss1) KiB; uevents \(k.uevents.count) kept"
        + " of \(k.uevents.lastSeqnum); log \(k.log.byteCount) bytes, \(k.log.count) lines; journal"
        + " \(k.sysfs.pendingRemovalCount) paths, \(k.sysfs.removalJournal.dropped) dropped")
    #expect(k.uevents.count <= k.ueventCapacity)
    #expect(k.log.byteCount <= k.logBufferLength)
    #expect(k.sysfs.pendingRemovalCount <= k.sysfs.removalJournal.capacity)
    // The journal keeps a path once: a flip removes the same links each time.
    #expect(k.sysfs.pendingRemovalCount < 2000)
  }
}

/// The process's resident set, from `/proc/self/statm` (0 where there is none).
func residentKiB() -> Int {
  guard let s = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
  let fields = s.split(separator: " ")
  guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
  return pages * Int(sysconf(Int32(_SC_PAGESIZE))) / 1024
}
