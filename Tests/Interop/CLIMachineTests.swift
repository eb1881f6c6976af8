import Foundation
import Testing

/// `Examples/` of the package.
let examplesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Examples").path

/// `apvirt machine FILE` and `apvirt demo --machine FILE` as a user sees them (issue 11, 6 and 7).
@Suite("Interop: apvirt machine and apvirt demo on machine files")
struct CLIMachineTests {
  func file(_ text: String) throws -> String {
    let path = NSTemporaryDirectory() + "apvirt-machine-\(UUID().uuidString.prefix(8)).yaml"
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  @Test func aFileThatCannotBeReadSaysWhyAsTheSystemDoes() throws {
    var r = try run(apvirtBinary, ["machine", "/etc"])
    #expect(r.status == 1)
    #expect(r.stdout == "")
    #expect(r.stderr == "Error: /etc: Is a directory\n")
    r = try run(apvirtBinary, ["machine", "nofile.yaml"])
    #expect(r.status == 1)
    #expect(r.stderr == "Error: nofile.yaml: No such file or directory\n")
    r = try run(apvirtBinary, ["demo", "--machine", "/etc"])
    #expect(r.status == 1)
    #expect(r.stderr == "Error: /etc: Is a directory\n")
  }

  @Test func anUnknownAdapterTypeIsRefusedWithTheKnownOnesAndTheLine() throws {
    let path = try file("name: new\nadapters:\n  - { apid: 1 }\n  - { apid: 2, type: CEX9 }\n")
    defer { try? FileManager.default.removeItem(atPath: path) }
    let r = try run(apvirtBinary, ["machine", path])
    #expect(r.status == 1)
    #expect(
      r.stderr
        == "Error: \(path): adapters[1].type: unknown adapter type 'CEX9' (line 4) (known: CEX4, CEX5, CEX6, CEX7, CEX8)\n"
    )
    #expect(!r.stdout.contains("type15"))
  }

  @Test func crycbFormat1WithAPXAIsRefusedWithTheFormatToUse() throws {
    let path = try file("name: f1\napxa: true\ncrycb-format: 1\n")
    defer { try? FileManager.default.removeItem(atPath: path) }
    let r = try run(apvirtBinary, ["machine", path])
    #expect(r.status == 1)
    #expect(
      r.stderr
        == "Error: \(path): crycb-format 1 contradicts apxa: true (line 3): KVM uses format 2 when APXA is installed (0 when MSAX3 is not); use crycb-format: 2, or apxa: false for format 1\n"
    )
  }

  @Test func theExamplesCheckOut() throws {
    let r = try run(apvirtBinary, ["machine", examplesDirectory + "/z15-lab.yaml"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout.hasPrefix("machine z15-lab: Na 84, Nd 84, APXA yes, CRYCB format 2\n"))
    #expect(r.stdout.contains("  05  CEX7A  Accelerator\n"))
  }

  @Test func theDemoRunsOnEveryExampleAndRefusesATooSmallMachine() throws {
    // The machine definitions, not the scenarios beside them (a top-level `machine:` key).
    let names = try FileManager.default.contentsOfDirectory(atPath: examplesDirectory).filter {
      $0.hasSuffix(".yaml")
        && !((try? String(contentsOfFile: examplesDirectory + "/" + $0, encoding: .utf8)) ?? "")
          .split(separator: "\n").contains { $0.hasPrefix("machine:") }
    }
    #expect(names.count >= 3)
    for name in names {
      let r = try run(apvirtBinary, ["demo", "--machine", examplesDirectory + "/" + name])
      #expect(r.status == 0, "\(name): \(r.stderr)")
      #expect(r.stderr == "")
      #expect(r.stdout.components(separatedBy: "write error").count == 4, "\(name): only the three refusals")
    }
    let path = try file("name: two\nadapters:\n  - { apids: 1-2 }\n")
    defer { try? FileManager.default.removeItem(atPath: path) }
    let r = try run(apvirtBinary, ["demo", "--machine", path])
    #expect(r.status == 1)
    #expect(r.stdout == "")
    #expect(
      r.stderr
        == "Error: \(path): the host sees 2 configured adapters of the 2 in machine 'two' and 256 usage domains with queues on them; the demo needs 3 adapters (two for the guests, one the host keeps) and 5 usage domains (four for the guests, one to hot plug): add them to the machine file, or run the demo without --machine\n"
    )
  }
}
