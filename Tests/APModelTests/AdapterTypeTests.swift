import APModel
import Testing

@Suite("AdapterType and AdapterMode")
struct AdapterTypeTests {
  @Test("CEX4 to CEX8 are types 10 to 14")
  func numbers() {
    #expect(AdapterType.cex4.rawValue == 10)
    #expect(AdapterType.cex5.rawValue == 11)
    #expect(AdapterType.cex6.rawValue == 12)
    #expect(AdapterType.cex7.rawValue == 13)
    #expect(AdapterType.cex8.rawValue == 14)
    #expect(AdapterType.cex8.name == "CEX8")
    #expect(AdapterType.cex4.description == "CEX4")
    #expect(AdapterType(rawValue: 9).name == "type9")
    #expect(AdapterType(rawValue: 15).name == "type15")
    #expect(AdapterType.cex4 < AdapterType.cex8)
  }

  @Test("parsing names and numbers")
  func parse() {
    #expect(AdapterType(name: "CEX8") == .cex8)
    #expect(AdapterType(name: "cex7") == .cex7)
    #expect(AdapterType(name: "14") == .cex8)
    #expect(AdapterType(name: "CEX9") == AdapterType(rawValue: 15))
    #expect(AdapterType(name: "CEX3") == nil)
    #expect(AdapterType(name: "PCIXCC") == nil)
    #expect(AdapterType(name: "0") == nil)
    #expect(AdapterType(name: "") == nil)
  }

  @Test("support and the compatible type")
  func compatible() {
    #expect(!AdapterType(rawValue: 9).isSupported)
    #expect(AdapterType.cex4.isSupported)
    #expect(AdapterType.cex7.compatible == .cex7)
    #expect(AdapterType(rawValue: 15).compatible == .cex8)
    #expect(AdapterType(rawValue: 15).isSupported)
  }

  @Test("modes: type suffix, uevent and lszcrypt names, function bits")
  func modes() {
    #expect(AdapterMode.cca.typeSuffix == "C")
    #expect(AdapterMode.accel.typeSuffix == "A")
    #expect(AdapterMode.ep11.typeSuffix == "P")
    #expect(AdapterMode.cca.ueventName == "cca")
    #expect(AdapterMode.accel.ueventName == "accel")
    #expect(AdapterMode.ep11.ueventName == "ep11")
    #expect(AdapterMode.ep11.lszcryptName == "EP11-Coproc")
    // S, the mode's bit (D, A with M and C: 4K RSA, X), and N with APXA.
    #expect(AdapterMode.cca.functions(apxa: true) == 0x9200_0000)
    #expect(AdapterMode.accel.functions(apxa: true) == 0xEA00_0000)
    #expect(AdapterMode.ep11.functions(apxa: true) == 0x8600_0000)
    #expect(AdapterMode.cca.functions(apxa: false) == 0x9000_0000)
    #expect(AdapterMode.accel.functions(apxa: false) == 0xE800_0000)
    #expect(AdapterMode.ep11.functions(apxa: false) == 0x8400_0000)
    #expect(AdapterMode(name: "CCA") == .cca)
    #expect(AdapterMode(name: "accelerator") == .accel)
    #expect(AdapterMode(name: "EP11") == .ep11)
    #expect(AdapterMode(name: "turbo") == nil)
  }
}
