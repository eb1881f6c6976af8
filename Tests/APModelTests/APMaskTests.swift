import APModel
import Testing

@Suite("APMask")
struct APMaskTests {
  @Test("bit 0 is the most significant bit of word 0")
  func bitOrder() {
    #expect(APMask([0]).w0 == 0x8000_0000_0000_0000)
    #expect(APMask([1]).w0 == 0x4000_0000_0000_0000)
    #expect(APMask([63]).w0 == 1)
    #expect(APMask([64]).w1 == 0x8000_0000_0000_0000)
    #expect(APMask([64]).w0 == 0)
    #expect(APMask([127]).w1 == 1)
    #expect(APMask([128]).w2 == 0x8000_0000_0000_0000)
    #expect(APMask([255]).w3 == 1)
    #expect(APMask([255]).w0 == 0 && APMask([255]).w1 == 0 && APMask([255]).w2 == 0)
  }

  @Test("words, subscript(word:) and init(words:) agree")
  func words() {
    var m = APMask(words: (1, 2, 3, 4))
    #expect(m[word: 0] == 1 && m[word: 1] == 2 && m[word: 2] == 3 && m[word: 3] == 4)
    #expect(Array(m) == [63, 126, 190, 191, 253])
    m[word: 2] = 0
    #expect(m.w2 == 0)
    #expect(m == APMask([63, 126, 253]))
  }

  @Test("hexString: 0x and 64 lower-case digits, left-aligned")
  func hexString() {
    #expect(APMask([0]).hexString == "0x8" + String(repeating: "0", count: 63))
    #expect(APMask([255]).hexString == "0x" + String(repeating: "0", count: 63) + "1")
    #expect(APMask([1, 7]).hexString == "0x41" + String(repeating: "0", count: 62))
    #expect(APMask.empty.hexString == "0x" + String(repeating: "0", count: 64))
    #expect(APMask.all().hexString == "0x" + String(repeating: "f", count: 64))
    #expect(APMask([4, 5, 6, 7]).hexString.hasPrefix("0x0f"))
    #expect(APMask([60, 61, 62, 63, 64]).hexString.hasPrefix("0x000000000000000f8"))
    for m in [APMask.empty, APMask([0]), APMask([255]), APMask.all(), APMask([3, 100, 200])] {
      #expect(m.hexString.utf8.count == 66)
      #expect(m.description == m.hexString)
    }
  }

  @Test("hexString is each word printed with %016lx, for any bits")
  func hexStringOfAnyWords() {
    var rng = SystemRandomNumberGenerator()
    for _ in 0..<500 {
      let words = (rng.next() as UInt64, rng.next() as UInt64, rng.next() as UInt64, rng.next() as UInt64)
      let expected = [words.0, words.1, words.2, words.3].map { word in
        let digits = String(word, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
      }
      #expect(APMask(words: words).hexString == "0x" + expected.joined())
    }
  }

  @Test("iteration is ascending")
  func iteration() {
    let m = APMask([200, 3, 64, 0, 255, 63, 128])
    #expect(Array(m) == [0, 3, 63, 64, 128, 200, 255])
    #expect(Array(APMask.empty).isEmpty)
    #expect(Array(APMask.all()) == Array(0...255))
    #expect(Array(APMask.all(through: 70)) == Array(0...70))
  }

  @Test("all(through:)")
  func allThrough() {
    #expect(APMask.all() == APMask(0...255))
    #expect(APMask.all().count == 256)
    #expect(APMask.all().w0 == ~0 && APMask.all().w3 == ~0)
    #expect(APMask.all(through: 0) == APMask([0]))
    #expect(APMask.all(through: 15) == APMask(0...15))
    #expect(APMask.all(through: 15).hexString == "0xffff" + String(repeating: "0", count: 60))
    #expect(APMask.all(through: 63).w0 == ~0)
    #expect(APMask.all(through: 63).w1 == 0)
    #expect(APMask.all(through: 64) == APMask(0...64))
    #expect(APMask.all(through: 64).w1 == 0x8000_0000_0000_0000)
    #expect(APMask.all(through: 84) == APMask(0...84))
    #expect(APMask.all(through: 84).count == 85)
    #expect(APMask.all(through: 254) == APMask(0...254))
    #expect(APMask.all(through: -1).isEmpty)
  }

  @Test("truncated(toBits:) keeps only the low bit numbers")
  func truncated() {
    #expect(APMask.all().truncated(toBits: 64) == APMask.all(through: 63))
    #expect(APMask.all().truncated(toBits: 16) == APMask.all(through: 15))
    #expect(APMask([3, 15, 16, 63, 64, 200]).truncated(toBits: 16) == APMask([3, 15]))
    #expect(APMask([3, 15, 16, 63, 64, 200]).truncated(toBits: 64) == APMask([3, 15, 16, 63]))
    #expect(APMask([3, 200]).truncated(toBits: 256) == APMask([3, 200]))
    #expect(APMask([3, 200]).truncated(toBits: 0).isEmpty)
  }

  @Test("count, isEmpty and last")
  func countAndLast() {
    #expect(APMask.empty.count == 0)
    #expect(APMask.empty.isEmpty)
    #expect(APMask.empty.last == nil)
    #expect(APMask([5]).last == 5)
    #expect(APMask([0]).last == 0)
    #expect(APMask([63]).last == 63)
    #expect(APMask([64]).last == 64)
    #expect(APMask([0, 130]).last == 130)
    #expect(APMask([0, 130, 255]).last == 255)
    #expect(APMask.all(through: 84).last == 84)
    #expect(APMask([1, 2, 3, 100, 200]).count == 5)
    #expect(!APMask([1]).isEmpty)
  }

  @Test("insert, remove, contains and the bit subscript")
  func membership() {
    var m = APMask()
    m.insert(7)
    m.insert(7)
    m[100] = true
    #expect(m.contains(7) && m[100] && m.count == 2)
    m.remove(7)
    m[100] = false
    m.remove(42)
    #expect(m.isEmpty)
    #expect(!APMask.all().contains(-1))
    #expect(!APMask.all().contains(256))
    #expect(!APMask.all()[300])
  }

  @Test("set algebra")
  func algebra() {
    let a = APMask([1, 2, 3, 200])
    let b = APMask([3, 4, 200, 255])
    #expect(a.union(b) == APMask([1, 2, 3, 4, 200, 255]))
    #expect((a | b) == a.union(b))
    #expect(a.intersection(b) == APMask([3, 200]))
    #expect((a & b) == a.intersection(b))
    #expect(a.subtracting(b) == APMask([1, 2]))
    #expect(a.intersects(b))
    #expect(!a.intersects(APMask([0, 5])))
    #expect(APMask([1, 200]).isSubset(of: a))
    #expect(!b.isSubset(of: a))
    #expect(APMask.empty.isSubset(of: .empty))
  }

  @Test("hasBits(above:)")
  func hasBitsAbove() {
    #expect(!APMask([0, 15]).hasBits(above: 15))
    #expect(APMask([0, 16]).hasBits(above: 15))
    #expect(APMask([64]).hasBits(above: 63))
    #expect(!APMask.all().hasBits(above: 255))
    #expect(!APMask.empty.hasBits(above: 0))
  }
}
