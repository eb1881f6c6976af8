import APModel
import Testing

@Suite("APMatrix")
struct APMatrixTests {
  @Test("matrixText with adapters and domains: one APQN a line, adapter then domain ascending")
  func matrixTextBoth() {
    #expect(APMatrix(apm: APMask([5]), aqm: APMask([4, 0x47])).matrixText == "05.0004\n05.0047\n")
    let m = APMatrix(apm: APMask([6, 5]), aqm: APMask([0x47, 4]), adm: APMask([1]))
    #expect(m.matrixText == "05.0004\n05.0047\n06.0004\n06.0047\n")
    #expect(APMatrix(apm: APMask([0xff]), aqm: APMask([0xff])).matrixText == "ff.00ff\n")
  }

  @Test("matrixText with adapters only")
  func matrixTextAdapters() {
    #expect(APMatrix(apm: APMask([6, 5])).matrixText == "05.\n06.\n")
    #expect(APMatrix(apm: APMask([0x0a]), adm: APMask([3])).matrixText == "0a.\n")
  }

  @Test("matrixText with domains only")
  func matrixTextDomains() {
    #expect(APMatrix(aqm: APMask([4])).matrixText == ".0004\n")
    #expect(APMatrix(aqm: APMask([0xab, 4])).matrixText == ".0004\n.00ab\n")
  }

  @Test("matrixText is empty without adapters and domains; control domains are not shown")
  func matrixTextEmpty() {
    #expect(APMatrix.empty.matrixText == "")
    #expect(APMatrix(adm: APMask([1, 2])).matrixText == "")
    #expect(!APMatrix(adm: APMask([1, 2])).isEmpty)
    #expect(APMatrix.empty.isEmpty)
  }

  @Test("apConfigText is three hex masks and a newline, always 201 bytes")
  func apConfigText() {
    let samples = [
      APMatrix.empty,
      APMatrix(apm: .all(), aqm: .all(), adm: .all()),
      APMatrix(apm: APMask([5]), aqm: APMask([4, 0x47]), adm: APMask([255])),
    ]
    for m in samples {
      #expect(m.apConfigText.utf8.count == 201)
      #expect(m.apConfigText.hasSuffix("\n"))
      #expect(m.apConfigText.split(separator: ",").count == 3)
    }
    let m = APMatrix(apm: APMask([0]), aqm: APMask([1, 7]), adm: .empty)
    let zeros = { (n: Int) in String(repeating: "0", count: n) }
    #expect(m.apConfigText == "0x8\(zeros(63)),0x41\(zeros(62)),0x\(zeros(64))\n")
  }

  @Test("apqns lists apm x aqm, adapter then domain ascending")
  func apqns() {
    let m = APMatrix(apm: APMask([6, 5]), aqm: APMask([0x47, 4]))
    #expect(m.apqns == [APQN(5, 4), APQN(5, 0x47), APQN(6, 4), APQN(6, 0x47)])
    #expect(APMatrix(apm: APMask([5])).apqns.isEmpty)
    #expect(APMatrix(apm: .all(), aqm: .all()).apqns.count == 65536)
  }

  @Test("contains needs both the adapter and the domain; control domains do not count")
  func contains() {
    let m = APMatrix(apm: APMask([5]), aqm: APMask([4]), adm: APMask([7]))
    #expect(m.contains(APQN(5, 4)))
    #expect(!m.contains(APQN(5, 7)))
    #expect(!m.contains(APQN(6, 4)))
  }
}
