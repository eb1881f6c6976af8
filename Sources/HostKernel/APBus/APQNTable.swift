/// The AP bus's queue devices by APQN raw value (`apid << 8 | apqi`): what the bus's
/// ``APBus/queues`` is.
public typealias APQueueDevices = APQNTable<APQueue>

/// Objects by APQN raw value (`apid << 8 | apqi`) in one dense table grown by whole adapters as
/// entries come, read as the dictionary it replaces: `count`, `values` and `keys` (by ascending
/// APQN), `mapValues`, and a subscript by raw value. The AP bus keeps its queue devices in one,
/// zcrypt and vfio_ap their records of the queues they drive: a full-architecture boot adds
/// 65,536 queues and a bulk configuration change adds or removes 65,280 at once, and each is
/// looked up by its APQN several times on the way; vfio_ap's ownership index (which mdev holds
/// an APQN) is one too. A slot costs no hashing, and a table of 65,536 entries takes a quarter
/// of a dictionary's memory; a table of a few adapters' entries takes their slots only (none
/// before the first: nothing is written at boot for an index that stays empty).
public struct APQNTable<Element: AnyObject> {
  private var slots = ContiguousArray<Element?>()
  /// The entries in the table.
  public private(set) var count = 0

  public init() {}

  public var isEmpty: Bool { count == 0 }

  /// The entry of the APQN whose raw value is `raw`, or nil.
  public subscript(raw: Int) -> Element? {
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

  /// The entries by ascending APQN.
  public var values: Values { Values(slots: slots) }

  /// The raw values of the entries' APQNs, ascending.
  public var keys: [Int] {
    var keys: [Int] = []
    keys.reserveCapacity(count)
    for i in slots.indices where slots[i] != nil { keys.append(i) }
    return keys
  }

  /// A dictionary of the entries' raw values to `transform`'s value of each.
  public func mapValues<T>(_ transform: (Element) throws -> T) rethrows -> [Int: T] {
    var result: [Int: T] = [:]
    result.reserveCapacity(count)
    for i in slots.indices { if let q = slots[i] { result[i] = try transform(q) } }
    return result
  }

  /// The entries of a table, by ascending APQN (a copy of the table's slots: the table may change
  /// while they are walked).
  public struct Values: Sequence {
    let slots: ContiguousArray<Element?>

    public func makeIterator() -> Iterator { Iterator(slots: slots) }

    public struct Iterator: IteratorProtocol {
      let slots: ContiguousArray<Element?>
      var index = 0

      public mutating func next() -> Element? {
        while index < slots.count {
          defer { index += 1 }
          if let q = slots[index] { return q }
        }
        return nil
      }
    }
  }
}
