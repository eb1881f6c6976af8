/// Records numbered in the order they were added, of which only the newest are kept: the shape of
/// the kernel's printk ring and of what a uevent listener can still receive.
///
/// Each record gets the next sequence number; the owner drops the oldest to stay within its
/// bound. A reader remembers the next number it wants and asks for everything from there
/// (``records(from:)``): it gets what is still kept and learns how many records it missed, as a
/// `/dev/kmsg` reader gets `EPIPE` when its position fell out of the ring, or a netlink listener
/// sees the gap in `SEQNUM`. Appending and dropping are amortised O(1).
public struct SequenceRing<Element: Sendable>: Sendable {
  /// A kept record and its sequence number.
  public struct Record: Sendable {
    public let seq: UInt64
    public let element: Element
  }

  /// What a reader following the ring gets: the records from its position on, how many records
  /// between its position and the oldest kept one were dropped before it read them, and the
  /// position to ask for next time.
  public struct Follow: Sendable {
    public var records: [Record]
    public var missed: UInt64
    public var next: UInt64
  }

  /// The kept records, oldest first, from `head` on; the slots before `head` are dropped ones not
  /// yet compacted away. Sequence numbers increase along it, with gaps where a number was
  /// skipped.
  private var storage: [Record] = []
  private var head = 0
  /// The sequence number the next record gets.
  public private(set) var nextSeq: UInt64

  public init(firstSeq: UInt64 = 0) {
    nextSeq = firstSeq
  }

  /// The sequence number of the oldest kept record (``nextSeq`` when none is kept).
  public var firstSeq: UInt64 { head < storage.count ? storage[head].seq : nextSeq }

  /// Adds a record and returns its sequence number.
  @discardableResult
  public mutating func append(_ element: Element) -> UInt64 {
    let seq = nextSeq
    storage.append(Record(seq: seq, element: element))
    nextSeq += 1
    return seq
  }

  /// Uses up a number without keeping a record (an event nobody records), so that followers
  /// learn they missed it.
  public mutating func skip() { nextSeq += 1 }

  /// Drops the oldest kept record.
  @discardableResult
  public mutating func removeOldest() -> Element? {
    guard head < storage.count else { return nil }
    let e = storage[head].element
    head += 1
    // Compact once the dropped slots are half the storage: each record moves at most once per
    // halving, so dropping stays amortised O(1).
    if head >= 64 && head * 2 >= storage.count {
      storage.removeFirst(head)
      head = 0
    }
    return e
  }

  /// Drops every kept record; the numbering goes on.
  public mutating func removeAll() {
    storage = []
    head = 0
  }

  public var count: Int { storage.count - head }
  public var isEmpty: Bool { count == 0 }

  /// The kept records, oldest first.
  public var kept: ArraySlice<Record> { storage[head...] }

  /// The records numbered `seq` or later. `missed` counts the numbers from `seq` on that have no
  /// record any more (dropped, or skipped).
  public func records(from seq: UInt64) -> Follow {
    // Binary search for the first kept record at or after `seq`.
    var lo = head
    var hi = storage.count
    while lo < hi {
      let mid = (lo + hi) / 2
      if storage[mid].seq < seq { lo = mid + 1 } else { hi = mid }
    }
    let records = Array(storage[lo...])
    let expected = seq < nextSeq ? nextSeq - seq : 0
    return Follow(records: records, missed: expected - UInt64(records.count), next: max(seq, nextSeq))
  }
}
