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

  /// The slots, used as a circle: the kept records are the `count` slots from `head` on,
  /// wrapping at the end, oldest first; the other slots are empty (nil). Sequence numbers
  /// increase along the circle, with gaps where a number was skipped. A full circle grows (the
  /// array's own doubling, at the end once the records are put in order again), so it settles
  /// at the most records the owner ever kept at once: an owner that drops the oldest before it
  /// appends at its bound keeps exactly that many slots, each written once per record.
  private var slots: ContiguousArray<Record?> = []
  private var head = 0
  /// How many records are kept.
  public private(set) var count = 0
  /// The sequence number the next record gets.
  public private(set) var nextSeq: UInt64

  public init(firstSeq: UInt64 = 0) {
    nextSeq = firstSeq
  }

  /// The slot of the kept record at `offset` from the oldest.
  private func slot(_ offset: Int) -> Int {
    let i = head + offset
    return i < slots.count ? i : i - slots.count
  }

  /// The sequence number of the oldest kept record (``nextSeq`` when none is kept).
  public var firstSeq: UInt64 { count > 0 ? slots[head]!.seq : nextSeq }

  /// Adds a record and returns its sequence number.
  @discardableResult
  public mutating func append(_ element: Element) -> UInt64 {
    let seq = nextSeq
    let record = Record(seq: seq, element: element)
    if count < slots.count {
      slots[slot(count)] = record
    } else {
      if head != 0 {
        // Full and wrapped: put the records in order so that the new slots follow the newest.
        slots = ContiguousArray(slots[head...] + slots[..<head])
        head = 0
      }
      slots.append(record)
    }
    count += 1
    nextSeq += 1
    return seq
  }

  /// Uses up a number without keeping a record (an event nobody records), so that followers
  /// learn they missed it.
  public mutating func skip() { nextSeq += 1 }

  /// Drops the oldest kept record (its slot lets go of it at once).
  @discardableResult
  public mutating func removeOldest() -> Element? {
    guard count > 0 else { return nil }
    let e = slots[head]!.element
    slots[head] = nil
    head = slot(1)
    count -= 1
    if count == 0 { head = 0 }
    return e
  }

  /// Drops every kept record; the numbering goes on.
  public mutating func removeAll() {
    slots = []
    head = 0
    count = 0
  }

  public var isEmpty: Bool { count == 0 }

  /// The kept records, oldest first.
  public var kept: Kept { Kept(slots: slots, head: head, count: count) }

  /// The kept records of a ring, oldest first (a copy: the ring may change while they are
  /// walked).
  public struct Kept: RandomAccessCollection, Sendable {
    let slots: ContiguousArray<Record?>
    let head: Int
    public let count: Int

    public var startIndex: Int { 0 }
    public var endIndex: Int { count }
    public subscript(position: Int) -> Record {
      precondition(position >= 0 && position < count, "index out of range")
      let i = head + position
      return slots[i < slots.count ? i : i - slots.count]!
    }
  }

  /// The records numbered `seq` or later. `missed` counts the numbers from `seq` on that have no
  /// record any more (dropped, or skipped).
  public func records(from seq: UInt64) -> Follow {
    let kept = self.kept
    // Binary search for the first kept record at or after `seq`.
    var lo = 0
    var hi = kept.count
    while lo < hi {
      let mid = (lo + hi) / 2
      if kept[mid].seq < seq { lo = mid + 1 } else { hi = mid }
    }
    let records = Array(kept[lo...])
    let expected = seq < nextSeq ? nextSeq - seq : 0
    return Follow(records: records, missed: expected - UInt64(records.count), next: max(seq, nextSeq))
  }
}
