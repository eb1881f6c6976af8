import APModel

/// A CPU's AP instructions: everything a kernel may do to the AP hardware, and all it can learn
/// of it. A kernel holds one and never the machine: the host's CPU is the LPAR's
/// (``LPARCPU``), a guest's is its vCPU, which the hardware interprets against the VM's APCB.
///
/// Each instruction answers what the architecture answers that CPU: PQAP(QCI) its view of the
/// configuration, TAPQ/RAPQ/ZAPQ/NQAP/DQAP rc 01 for an APQN outside it. The coprocessor
/// information requests are NQAP/DQAP pairs whose reply the machine parses for the caller.
public protocol APCPU: AnyObject {
  /// The AP facility bits this CPU reports (STFLE): QCI (12), APFT (15), AQIC (65).
  var facilities: APFacilities { get }
  /// PQAP(QCI); nil when the CPU has no QCI facility.
  func qci() -> QCIInfo?
  /// PQAP(TAPQ).
  func tapq(_ apqn: APQN) -> (APQueueStatus, TAPQInfo?)
  /// PQAP(RAPQ): reset, keeping the owner's residual state.
  @discardableResult func rapq(_ apqn: APQN) -> APQueueStatus
  /// PQAP(ZAPQ): reset and zeroize.
  @discardableResult func zapq(_ apqn: APQN) -> APQueueStatus
  /// PQAP(AQIC): enable or disable the queue's interruptions.
  func aqic(_ apqn: APQN, enable: Bool, notificationAddress: UInt64) -> APQueueStatus
  /// NQAP.
  func nqap(_ apqn: APQN, psmid: UInt64, payload: [UInt8]) -> APQueueStatus
  /// DQAP.
  func dqap(_ apqn: APQN) -> (APQueueStatus, APQueueState.Message?)
  /// A CCA Query Crypto Facility request and its reply; nil when it could not be processed.
  func ccaQueryCryptoFacility(_ apqn: APQN) -> (serial: String, masterKeys: CCAMasterKeys)?
  /// An EP11 module query and its reply; nil when it could not be processed.
  func ep11ModuleQuery(_ apqn: APQN) -> (serial: String, module: EP11ModuleInfo)?
  /// An EP11 domain query and its reply; nil when it could not be processed.
  func ep11DomainQuery(_ apqn: APQN) -> EP11DomainInfo?
  /// SCLP configure (`on`) or deconfigure of an adapter, which needs the SCLP AP reconfiguration
  /// facility: an LPAR has it, a KVM guest (QEMU) does not.
  func sclpConfigureAdapter(_ apid: APID, _ on: Bool) throws(SCLPAPError)
}

/// Why an SCLP AP configure or deconfigure was not carried out.
public enum SCLPAPError: Error, Hashable, Sendable {
  /// The CPU has no SCLP AP reconfiguration facility.
  case facilityNotInstalled
  /// The machine refused the operation.
  case refused(MachineOperationError)
}

/// The LPAR's CPU: the host kernel's AP instructions run under ``APAuthority/lpar`` and reach
/// what the LPAR's configuration holds, with the machine's facilities.
public final class LPARCPU: APCPU {
  public let machine: APMachine

  public init(machine: APMachine) { self.machine = machine }

  public var facilities: APFacilities { machine.definition.facilities }

  public func qci() -> QCIInfo? { facilities.qci ? machine.qci(.lpar) : nil }
  public func tapq(_ apqn: APQN) -> (APQueueStatus, TAPQInfo?) { machine.tapq(apqn, .lpar) }
  public func rapq(_ apqn: APQN) -> APQueueStatus { machine.rapq(apqn, .lpar) }
  public func zapq(_ apqn: APQN) -> APQueueStatus { machine.zapq(apqn, .lpar) }
  public func aqic(_ apqn: APQN, enable: Bool, notificationAddress: UInt64) -> APQueueStatus {
    machine.aqic(apqn, enable: enable, notificationAddress: notificationAddress, .lpar)
  }
  public func nqap(_ apqn: APQN, psmid: UInt64, payload: [UInt8]) -> APQueueStatus {
    machine.nqap(apqn, psmid: psmid, payload: payload, .lpar)
  }
  public func dqap(_ apqn: APQN) -> (APQueueStatus, APQueueState.Message?) { machine.dqap(apqn, .lpar) }
  public func ccaQueryCryptoFacility(_ apqn: APQN) -> (serial: String, masterKeys: CCAMasterKeys)? {
    machine.ccaQueryCryptoFacility(apqn, .lpar)
  }
  public func ep11ModuleQuery(_ apqn: APQN) -> (serial: String, module: EP11ModuleInfo)? {
    machine.ep11ModuleQuery(apqn, .lpar)
  }
  public func ep11DomainQuery(_ apqn: APQN) -> EP11DomainInfo? { machine.ep11DomainQuery(apqn, .lpar) }
  public func sclpConfigureAdapter(_ apid: APID, _ on: Bool) throws(SCLPAPError) {
    do {
      try machine.setConfigured(apid, on)
    } catch {
      throw .refused(error)
    }
  }
}
