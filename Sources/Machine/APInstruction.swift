/// The AP instructions the machine counts (``APMachine/instructionCounts``), named by their
/// mnemonics.
public enum APInstruction: String, CaseIterable, Hashable, Sendable {
  case qci = "QCI"
  case tapq = "TAPQ"
  case rapq = "RAPQ"
  case zapq = "ZAPQ"
  case aqic = "AQIC"
  case nqap = "NQAP"
  case dqap = "DQAP"

  /// The instruction's counter in a fixed table: its position among ``allCases``.
  var slot: Int {
    switch self {
    case .qci: 0
    case .tapq: 1
    case .rapq: 2
    case .zapq: 3
    case .aqic: 4
    case .nqap: 5
    case .dqap: 6
    }
  }
}
