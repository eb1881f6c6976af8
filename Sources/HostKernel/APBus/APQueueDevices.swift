/// The AP bus's queue devices by APQN raw value (`apid << 8 | apqi`), in one dense table grown by
/// whole adapters as devices come, read as the dictionary it replaces: `count`, `values` and
/// `keys` (by ascending APQN), `mapValues`, and a subscript by raw value. A bulk configuration
/// change adds or removes 65,280 queue devices at once, and the scan looks up every APQN it
/// tests: a slot costs no hashing, and a table of the full architecture's 65,536 devices takes a
/// quarter of a dictionary's memory.
public struct APQueueDevices {
  private var slots = ContiguousArray<APQueue?>()
  /// The devices in the table.
  public private(set) var count = 0

  public init() {}

  public var isEmpty: Bool { count == 0 }

  /// The device of the APQN whose raw value is `raw`, or nil.
  public subscript(raw: Int) -> APQueue? {
    get { raw >= 0 && raw < slots.count ? slots[raw] : nil }
    set {
      guard raw >= 0 && raw <= 0xffff else {
        precondition(newValue == nil, "APQN out of range")
        return
      }
      if raw >= slots.count {
        guard newValue != nil else { return }
        slots.append(contentsOf: repeatElement(nil, count: (raw >> 8 + 1) << 8 - slots.count))
      }
      let had = slots[raw] != nil
      slots[raw] = newValue
      count += (newValue == nil ? 0 : 1) - (had ? 1 : 0)
    }
  }

  /// The devices by ascending APQN.
  public var values: Values { Values(slots: slots) }

  /// The raw values of the devices' APQNs, ascending.
  public var keys: [Int] {
    var keys: [Int] = []
    keys.reserveCapacity(count)
    for i in slots.indices where slots[i] != nil { keys.append(i) }
    return keys
  }

  /// A dictionary of the devices' raw values to `transform`'s value of each.
  public func mapValues<T>(_ transform: (APQueue) throws -> T) rethrows -> [Int: T] {
    var result: [Int: T] = [:]
    result.reserveCapacity(count)
    for i in slots.indices { if let q = slots[i] { result[i] = try transform(q) } }
    return result
  }

  /// The devices of a table, by ascending APQN (a copy of the table's slots: the table may change
  /// while they are walked).
  public struct Values: Sequence {
    let slots: ContiguousArray<APQueue?>

    public func makeIterator() -> Iterator { Iterator(slots: slots) }

    public struct Iterator: IteratorProtocol {
      let slots: ContiguousArray<APQueue?>
      var index = 0

      public mutating func next() -> APQueue? {
        while index < slots.count {
          defer { index += 1 }
          if let q = slots[index] { return q }
        }
        return nil
      }
    }
  }
}
