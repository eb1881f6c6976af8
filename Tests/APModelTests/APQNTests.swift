import APModel
import Testing

@Suite("APQN")
struct APQNTests {
  @Test(
    "text form is %02x.%04x, lower case",
    arguments: [
      (0x05, 0x04, "05.0004"), (0x0a, 0xab, "0a.00ab"), (0x00, 0x00, "00.0000"), (0xff, 0xff, "ff.00ff"),
      (0x05, 0x47, "05.0047"), (0x10, 0x01, "10.0001"),
    ])
  func text(apid: Int, apqi: Int, text: String) {
    let q = APQN(apid, apqi)
    #expect(q.description == text)
    #expect("\(q)" == text)
    #expect(APQN(text) == q)
  }

  @Test("every APQN's text is hex2(apid).hex4(apqi)")
  func everyText() {
    for raw in 0...0xffff {
      let q = APQN(rawValue: raw)
      #expect(q.description == hex2(q.apid) + "." + hex4(q.apqi))
    }
    var q = APQN(1, 2)
    q.apqi = 0x1234
    #expect(q.description == "01.1234")
  }

  @Test("rawValue is (apid << 8) | apqi")
  func rawValue() {
    #expect(APQN(5, 4).rawValue == 0x0504)
    #expect(APQN(0xff, 0xff).rawValue == 0xffff)
    #expect(APQN(rawValue: 0x0a_ab) == APQN(0x0a, 0xab))
    #expect(APQN(rawValue: 0).description == "00.0000")
    for raw in [0, 1, 0xff, 0x100, 0x1234, 0xfffe, 0xffff] {
      #expect(APQN(rawValue: raw).rawValue == raw)
    }
  }

  @Test("decimal form")
  func decimal() {
    #expect(APQN(5, 4).decimal == "5.4")
    #expect(APQN(0x0a, 0xab).decimal == "10.171")
  }

  @Test("ordering is by adapter, then domain")
  func ordering() {
    let sorted = [APQN(6, 0), APQN(5, 0x47), APQN(5, 4), APQN(0, 255)].sorted()
    #expect(sorted == [APQN(0, 255), APQN(5, 4), APQN(5, 0x47), APQN(6, 0)])
    #expect(APQN(5, 255) < APQN(6, 0))
  }

  @Test(
    "parsing rejects what is not a queue name",
    arguments: [
      "", "05", "05.", ".0004", "05.0004.01", "zz.0004", "05.zz", "100.0000", "05.0100", "05-0004", ".",
    ])
  func parseInvalid(text: String) {
    #expect(APQN(text) == nil)
  }

  @Test("parsing round-trips every APQN of a few adapters")
  func roundTrip() {
    for apid in [0, 1, 0x0b, 0x54, 0xff] {
      for apqi in 0...255 {
        let q = APQN(apid, apqi)
        #expect(APQN(q.description) == q)
      }
    }
  }

  @Test("hex helpers")
  func hexHelpers() {
    #expect(hex2(5) == "05")
    #expect(hex2(0xab) == "ab")
    #expect(hex4(4) == "0004")
    #expect(hex4(0xab) == "00ab")
    #expect(padHex(0xab, 4, uppercase: true) == "00AB")
    #expect(padHex(0x12345, 2) == "12345")
  }
}
