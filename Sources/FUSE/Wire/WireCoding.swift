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

  /// `n` bytes into `buffer`, replacing what it held: a buffer that nobody else holds, and of
  /// at most a page, keeps its memory, so that a serving thread's WRITEs allocate nothing.
  public mutating func readBytes(_ n: Int, into buffer: inout [UInt8]) -> Bool {
    guard n >= 0, offset + n <= bytes.count else { return false }
    buffer.removeAll(keepingCapacity: buffer.capacity <= 4096)
    buffer.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)]))
    offset += n
    return true
  }

  /// A NUL-terminated name (LOOKUP's argument).
  public mutating func readCString() -> String? {
    guard let end = bytes[offset...].firstIndex(of: 0) else { return nil }
    let s = String(decoding: bytes[offset..<end], as: UTF8.self)
    offset = end + 1
    return s
  }
}

/// Where FUSE reply structures are written: a growing array (``WireWriter``) or a serving
/// thread's reply buffer.
public protocol WireSink {
  /// The bytes written so far.
  var count: Int { get }
  mutating func write<T: FixedWidthInteger>(_ v: T)
  mutating func write(raw: UnsafeRawBufferPointer)
  mutating func zeros(_ n: Int)
}

extension WireSink {
  /// The UTF-8 bytes of `s`.
  public mutating func write(utf8 s: String) {
    var s = s
    s.withUTF8 { write(raw: UnsafeRawBufferPointer($0)) }
  }

  /// Zeros up to the next multiple of `alignment`.
  public mutating func pad(to alignment: Int) {
    let r = count % alignment
    if r != 0 { zeros(alignment - r) }
  }
}

/// Writes FUSE reply structures.
public struct WireWriter: WireSink {
  public private(set) var bytes: [UInt8] = []

  public init(capacity: Int = 128) { bytes.reserveCapacity(capacity) }

  public var count: Int { bytes.count }

  public mutating func write<T: FixedWidthInteger>(_ v: T) {
    withUnsafeBytes(of: v) { bytes.append(contentsOf: $0) }
  }

  public mutating func write(bytes b: some Sequence<UInt8>) { bytes.append(contentsOf: b) }

  public mutating func write(raw: UnsafeRawBufferPointer) { bytes.append(contentsOf: raw) }

  public mutating func zeros(_ n: Int) { bytes.append(contentsOf: repeatElement(0, count: n)) }
}

/// A reply as a serving thread builds it: the 16-byte `fuse_out_header`, then the payload, in
/// memory the thread keeps from request to request, so that a reply costs no allocation. It
/// grows when a payload needs more. Its owner deallocates it.
struct ReplyBuffer: WireSink {
  static let headerSize = 16
  private(set) var base: UnsafeMutableRawPointer
  private(set) var capacity: Int
  /// The end of what is written, header included.
  private(set) var end = headerSize

  init(capacity: Int) {
    self.capacity = max(capacity, 256)
    base = .allocate(byteCount: self.capacity, alignment: 16)
  }

  func deallocate() { base.deallocate() }

  /// The payload's length.
  var count: Int { end - Self.headerSize }

  /// Forgets the payload: the next reply begins.
  mutating func reset() { end = Self.headerSize }

  /// Room for `n` more bytes.
  mutating func reserve(_ n: Int) {
    guard end + n > capacity else { return }
    let grown = max(capacity * 2, end + n)
    let new = UnsafeMutableRawPointer.allocate(byteCount: grown, alignment: 16)
    new.copyMemory(from: base, byteCount: end)
    base.deallocate()
    base = new
    capacity = grown
  }

  mutating func write<T: FixedWidthInteger>(_ v: T) {
    reserve(MemoryLayout<T>.size)
    base.storeBytes(of: v, toByteOffset: end, as: T.self)
    end += MemoryLayout<T>.size
  }

  mutating func write(raw: UnsafeRawBufferPointer) {
    guard let from = raw.baseAddress, raw.count > 0 else { return }
    reserve(raw.count)
    (base + end).copyMemory(from: from, byteCount: raw.count)
    end += raw.count
  }

  mutating func zeros(_ n: Int) {
    guard n > 0 else { return }
    reserve(n)
    (base + end).initializeMemory(as: UInt8.self, repeating: 0, count: n)
    end += n
  }

  /// Writes the header; an error reply has no payload.
  mutating func seal(error: Int32, unique: UInt64) {
    if error != 0 { end = Self.headerSize }
    base.storeBytes(of: UInt32(end), as: UInt32.self)
    base.storeBytes(of: error, toByteOffset: 4, as: Int32.self)
    base.storeBytes(of: unique, toByteOffset: 8, as: UInt64.self)
  }

  /// The whole message, header and payload, once sealed.
  var sealed: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: end) }
}
