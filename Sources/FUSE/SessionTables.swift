import Synchronization

/// The open file handles of a session by id, in shards each behind a lock of its own.
/// Consecutive ids fall in different shards: an OPEN and the RELEASE of the handle before it
/// (which the kernel sends after close(2) has returned, while the caller opens again) take
/// different locks, and no request of an open file waits for the node table.
final class HandleTable: Sendable {
  static let shardCount = 16

  final class Shard: Sendable {
    let handles = Mutex<[UInt64: FUSESession.Handle]>([:])
  }

  let shards: [Shard] = (0..<HandleTable.shardCount).map { _ in Shard() }
  /// The next id to hand out; ids are never reused.
  let next = Atomic<UInt64>(1)

  func shard(_ id: UInt64) -> Shard { shards[Int(id % UInt64(Self.shardCount))] }

  /// Keeps `handle` under a new id.
  func insert(_ handle: FUSESession.Handle) -> HandleID {
    let id = next.wrappingAdd(1, ordering: .relaxed).oldValue
    shard(id).handles.withLock { $0[id] = handle }
    return HandleID(id)
  }

  subscript(_ fh: HandleID) -> FUSESession.Handle? {
    shard(fh.rawValue).handles.withLock { $0[fh.rawValue] }
  }

  /// RELEASE: the id goes. The handle is freed outside the lock.
  func remove(_ fh: HandleID) {
    _ = shard(fh.rawValue).handles.withLock { $0.removeValue(forKey: fh.rawValue) }
  }

  /// How many handles are open.
  var count: Int { shards.reduce(0) { n, s in n + s.handles.withLock { $0.count } } }
}

/// Counts of requests by opcode: one atomic counter per opcode (those of `linux/fuse.h` are all
/// below 64), so that counting takes no lock.
final class RequestCounters: Sendable {
  private let counts = InlineArray<64, Atomic<Int>> { _ in Atomic(0) }

  /// One more request of `opcode` (an opcode the protocol does not have is not counted).
  func increment(_ opcode: UInt32) {
    guard opcode < counts.count else { return }
    counts[Int(opcode)].add(1, ordering: .relaxed)
  }

  func count(of opcode: UInt32) -> Int {
    guard opcode < counts.count else { return 0 }
    return counts[Int(opcode)].load(ordering: .relaxed)
  }
}
