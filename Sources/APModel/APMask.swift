/// A 256-bit AP mask (adapters, usage domains or control domains) in the architecture's bit order:
/// bit 0 is the leftmost, most significant bit of the first 64-bit word.
///
/// This is the order of QCI and the CRYCB, and of the kernel's `set_bit_inv`: bit `n` is bit
/// `63 - n % 64` of word `n / 64`. Printing the four words with `%016lx` therefore gives the hex
/// strings of sysfs (`apmask`, `ap_config`), left-aligned.
public struct APMask: Hashable, Sendable, Sequence, CustomStringConvertible {
  public static let bitCount = 256

  public var w0: UInt64 = 0
  public var w1: UInt64 = 0
  public var w2: UInt64 = 0
  public var w3: UInt64 = 0

  public init() {}

  public init(words: (UInt64, UInt64, UInt64, UInt64)) {
    (w0, w1, w2, w3) = words
  }

  public init(_ bits: some Sequence<Int>) {
    for b in bits { insert(b) }
  }

  /// All bits 0 through `last` set.
  public static func all(through last: Int = 255) -> APMask {
    var m = APMask()
    for i in 0..<4 {
      let lo = i * 64
      if last >= lo + 63 {
        m[word: i] = ~0
      } else if last >= lo {
        let n = last - lo + 1
        m[word: i] = ~UInt64(0) << (64 - n)
      }
    }
    return m
  }

  public static let empty = APMask()

  public subscript(word i: Int) -> UInt64 {
    get {
      switch i {
      case 0: w0
      case 1: w1
      case 2: w2
      default: w3
      }
    }
    set {
      switch i {
      case 0: w0 = newValue
      case 1: w1 = newValue
      case 2: w2 = newValue
      default: w3 = newValue
      }
    }
  }

  @inline(__always) static func locate(_ bit: Int) -> (Int, UInt64) {
    precondition((0..<256).contains(bit), "AP mask bit out of range")
    return (bit >> 6, UInt64(1) << (63 - UInt64(bit & 63)))
  }

  public func contains(_ bit: Int) -> Bool {
    guard (0..<256).contains(bit) else { return false }
    let (w, m) = Self.locate(bit)
    return self[word: w] & m != 0
  }

  public mutating func insert(_ bit: Int) {
    let (w, m) = Self.locate(bit)
    self[word: w] |= m
  }

  public mutating func remove(_ bit: Int) {
    let (w, m) = Self.locate(bit)
    self[word: w] &= ~m
  }

  public subscript(bit: Int) -> Bool {
    get { contains(bit) }
    set { if newValue { insert(bit) } else { remove(bit) } }
  }

  public var isEmpty: Bool { (w0 | w1 | w2 | w3) == 0 }
  public var count: Int {
    w0.nonzeroBitCount + w1.nonzeroBitCount + w2.nonzeroBitCount + w3.nonzeroBitCount
  }

  public func union(_ o: APMask) -> APMask {
    APMask(words: (w0 | o.w0, w1 | o.w1, w2 | o.w2, w3 | o.w3))
  }
  public func intersection(_ o: APMask) -> APMask {
    APMask(words: (w0 & o.w0, w1 & o.w1, w2 & o.w2, w3 & o.w3))
  }
  public func subtracting(_ o: APMask) -> APMask {
    APMask(words: (w0 & ~o.w0, w1 & ~o.w1, w2 & ~o.w2, w3 & ~o.w3))
  }
  public func intersects(_ o: APMask) -> Bool { !intersection(o).isEmpty }
  public func isSubset(of o: APMask) -> Bool { subtracting(o).isEmpty }

  public static func | (a: APMask, b: APMask) -> APMask { a.union(b) }
  public static func & (a: APMask, b: APMask) -> APMask { a.intersection(b) }

  /// The highest bit number set, or nil.
  public var last: Int? {
    for i in stride(from: 3, through: 0, by: -1) where self[word: i] != 0 {
      return i * 64 + 63 - self[word: i].trailingZeroBitCount
    }
    return nil
  }

  /// The bits above `max` (used for the `apm_max`/`aqm_max` checks).
  public func hasBits(above max: Int) -> Bool { !subtracting(.all(through: max)).isEmpty }

  /// `0x` and 64 lower-case hex digits: the four words printed with `%016lx`.
  public var hexString: String {
    // Written digit by digit into the string's own storage: every read of apmask, aqmask or an
    // mdev's matrix formats masks, and the map-and-join of per-word strings was a third of it.
    String(unsafeUninitializedCapacity: 66) { out in
      out[0] = UInt8(ascii: "0")
      out[1] = UInt8(ascii: "x")
      let digits: StaticString = "0123456789abcdef"
      for k in 0..<4 {
        let word = self[word: k]
        for d in 0..<16 {
          let nibble = Int(truncatingIfNeeded: word >> UInt64(60 - 4 * d)) & 0xf
          out[2 + 16 * k + d] = digits.utf8Start[nibble]
        }
      }
      return 66
    }
  }

  /// The kernel's `"0x%08x"` x 8 form of the QCI masks in `/sys/bus/ap`: identical digits.
  public var description: String { hexString }

  /// Ascending bit numbers.
  public func makeIterator() -> Iterator { Iterator(mask: self) }

  public struct Iterator: IteratorProtocol {
    var mask: APMask
    var word = 0
    public mutating func next() -> Int? {
      while word < 4 {
        let w = mask[word: word]
        if w != 0 {
          let lz = w.leadingZeroBitCount
          mask[word: word] = w & ~(UInt64(1) << (63 - UInt64(lz)))
          return word * 64 + lz
        }
        word += 1
      }
      return nil
    }
  }

  /// Only bits 0 through `n - 1`: what survives in an APCB0, which holds 64 adapters and 16
  /// domains (`kvm_arch_crypto_set_masks` copies 8 bytes of APM and 2 of AQM and ADM).
  public func truncated(toBits n: Int) -> APMask {
    intersection(.all(through: n - 1))
  }
}
