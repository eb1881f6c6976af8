import APModel
import ArgumentParser
import Machine

/// `apvirt machine`: check a machine definition and show what it describes.
struct MachineCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "machine",
    abstract: "Check a machine definition (YAML) and print what it describes.",
    discussion: """
      Without a file, prints the embedded default machine as YAML: a starting point for your own. \
      With a file, reads it, reports the first problem with its key, or summarises the LPAR's AP \
      configuration.
      """)

  @Argument(help: "A machine definition file. Omitted: print the embedded default.")
  var file: String?

  func run() throws {
    guard let file else {
      print(embeddedDefaultYAML, terminator: "")
      return
    }
    let d: MachineDefinition
    do {
      d = try MachineDefinitionLoader.load(path: file)
    } catch {
      // The file is wrong, not the command line: exit 1 with the file's problem, no usage text.
      throw RuntimeError("\(error)")
    }
    print(
      "machine \(d.name): Na \(d.na), Nd \(d.nd), APXA \(d.apxa ? "yes" : "no"), CRYCB format \(d.crycbFormat)"
    )
    var f: [String] = []
    if d.facilities.qci { f.append("QCI") }
    if d.facilities.apft { f.append("APFT") }
    if d.facilities.aqic { f.append("AQIC") }
    print("facilities: \(f.isEmpty ? "none" : f.joined(separator: " "))")
    print("usage domains: \(d.usageDomains.count), control domains: \(d.controlDomains.count)")
    for a in d.adapters {
      print(
        "  \(hex2(a.apid))  \(a.type.name)\(a.mode.typeSuffix)  \(a.mode.lszcryptName)\(a.configured ? "" : "  (deconfigured)")"
      )
    }
  }
}
