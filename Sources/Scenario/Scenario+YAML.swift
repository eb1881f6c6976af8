import APModel
import Machine

extension Scenario {
  /// The scenario as a file ``ScenarioLoader`` reads back to an equal scenario: the notes as
  /// comments, the machine inline (or its file's name when it came from one and `inlineMachine`
  /// is false), the masks when they are not the default (as chzdev's lists of bits that are on),
  /// the mdevs with their matrices as hex id lists, the guests.
  public func yamlText(inlineMachine: Bool = true) -> String {
    var t = notes.map { "# \($0)\n" }.joined()
    if let machineFile, !inlineMachine {
      t += "machine: \(yamlScalar(machineFile))\n"
    } else {
      t += "machine:\n"
      for line in machine.yamlText.split(separator: "\n") { t += "  \(line)\n" }
    }
    if apmask != .all() || aqmask != .all() {
      t += "kernel:\n"
      if apmask != .all() { t += "  apmask: \(Self.maskText(apmask))\n" }
      if aqmask != .all() { t += "  aqmask: \(Self.maskText(aqmask))\n" }
    }
    if !mdevs.isEmpty {
      t += "mdevs:\n"
      for m in mdevs {
        t += "  - uuid: \(m.uuid)\n"
        if !m.matrix.apm.isEmpty { t += "    adapters: \(MachineDefinition.idList(m.matrix.apm))\n" }
        if !m.matrix.aqm.isEmpty { t += "    domains: \(MachineDefinition.idList(m.matrix.aqm))\n" }
        if !m.matrix.adm.isEmpty { t += "    control-domains: \(MachineDefinition.idList(m.matrix.adm))\n" }
        t += "    start: \(m.start.rawValue)\n"
      }
    }
    if !guests.isEmpty {
      t += "guests:\n"
      for g in guests {
        t += "  - name: \(yamlScalar(g.name))\n"
        t += "    cpu: \(yamlScalar(g.cpu))\n"
        if let mdev = g.mdev { t += "    mdev: \(mdev)\n" }
      }
    }
    return t
  }

  /// A mask as the bits that are on, in decimal as chzdev lists them (`0-4,7-255`; a `0x`
  /// value would be the kernel's hex mask), `""` when none is.
  static func maskText(_ mask: APMask) -> String { MachineDefinition.idList(mask, hex: false) }
}
