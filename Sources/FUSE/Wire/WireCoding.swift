/// Reads the little structures of the FUSE wire format: fixed-size fields in the host's byte
/// order, one after the other, as `linux/fuse.h` lays them out.
public struct WireReader {
  public let bytes: UnsafeRawBufferPointer
  public private(set) var offset: Int

  public init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
    self.bytes = bytes
    self.offset = offset
  }

  public var remaining: Int { bytes.count - offset }

  /// A field of type `T`, or nil when the buffer is too short (a malformed request).
  public mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) -> T? {
    let size = MemoryLayout<T>.size
    guard offset + size <= bytes.count else { return nil }
    let v = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
    offset += size
    return v
  }

  public mutating func skip(_ n: Int) -> Bool {
    guard offset + n <= bytes.count else { return false }
    offset += n
    return true
  }

  /// `n` raw bytes.
  public mutating func readBytes(_ n: Int) -> [UInt8]? {
    guard n >= 0, offset + n <= bytes.count else { return nil }
    let out = Array(bytes[offset..<(offset + n)])
    offset += n
    return out
  }

  /// A NUL-terminated name (LOOKUP's argument).
  public mutating func readCString() -> String? {
    guard let end = bytes[offset...].firstIndex(of: 0) else { return nil }
    let s = String(decoding: bytes[offset..<end], as: UTF8.self)
    offset = end + 1
    return s
  }
}

/// Writes FUSE reply structures.
public struct WireWriter {
  public private(set) var bytes: [UInt8] = []

  public init(capacity: Int = 128) { bytes.reserveCapacity(capacity) }

  public mutating func write<T: FixedWidthInteger>(_ v: T) {
    withUnsafeBytes(of: v) { bytes.append(contentsOf: $0) }
  }

  public mutating func write(bytes b: some Sequence<UInt8>) { bytes.append(contentsOf: b) }

  public mutating func pad(to alignment: Int) {
    while bytes.count % alignment != 0 { bytes.append(0) }
  }

  public mutating func zeros(_ n: Int) { bytes.append(contentsOf: repeatElement(0, count: n)) }
}
