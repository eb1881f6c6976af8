import APModel
import Machine

/// A vCPU of a KVM guest as far as AP goes: the hardware interprets its AP instructions against
/// the VM's APCB as the CRYCB holds it at each instruction (an APQN outside it answers rc 01, as
/// if the queue did not exist); PQAP(QCI) answers the APCB. Its facilities are the host CPU's
/// that the guest's CPU model keeps (`apqci`, `apft`).
///
/// PQAP(AQIC) is intercepted: KVM hands it to the VM's crypto hook (vfio_ap's), which apvirt does
/// not model for the guest's own kernel. KVM takes it as done at once, without the firmware: from
/// then until the guest resets the queue (or disables them), the vCPU's TAPQ shows the queue's
/// interruptions on.
public final class KVMVirtualCPU: APCPU {
  /// The VM's id (what the guest's kernel is known by).
  public let vmID: Int
  private weak var vm: KVMVirtualMachine?
  private let machine: APMachine
  public let facilities: APFacilities
  /// Queues (raw APQNs) whose interruptions the guest enabled through KVM's AQIC interception.
  private var interceptedInterrupts: Set<Int> = []

  init(vm: KVMVirtualMachine, machine: APMachine, qci: Bool, apft: Bool) {
    vmID = vm.id
    self.vm = vm
    self.machine = machine
    let f = machine.definition.facilities
    facilities = APFacilities(qci: qci && f.qci, apft: apft && f.apft, aqic: f.aqic)
  }

  /// The authority the instructions run under: the VM's APCB now (nothing once the VM is gone).
  public var authority: APAuthority { vm?.authority ?? .guest(vm: -1, apcb: APMatrix()) }

  public func qci() -> QCIInfo? { facilities.qci ? machine.qci(authority) : nil }

  public func tapq(_ apqn: APQN) -> (APQueueStatus, TAPQInfo?) {
    var (status, info) = machine.tapq(apqn, authority)
    if status.responseCode == .normal && interceptedInterrupts.contains(apqn.rawValue) {
      status.irqEnabled = true
    }
    return (status, info)
  }

  public func rapq(_ apqn: APQN) -> APQueueStatus {
    let s = machine.rapq(apqn, authority)
    resetInterception(apqn, s)
    return s
  }

  public func zapq(_ apqn: APQN) -> APQueueStatus {
    let s = machine.zapq(apqn, authority)
    resetInterception(apqn, s)
    return s
  }

  /// A reset that went ahead disables the interruptions KVM enabled.
  private func resetInterception(_ apqn: APQN, _ s: APQueueStatus) {
    if s.responseCode == .normal || s.responseCode == .resetInProgress {
      interceptedInterrupts.remove(apqn.rawValue)
    }
  }

  public func aqic(_ apqn: APQN, enable: Bool, notificationAddress: UInt64) -> APQueueStatus {
    guard facilities.aqic else { return .rc(.requiredFacilityNotInstalled) }
    guard case .guest(_, let apcb) = authority, apcb.contains(apqn) else { return .rc(.queueNotAvailable) }
    if enable && notificationAddress == 0 { return .rc(.invalidAddress) }
    if enable {
      interceptedInterrupts.insert(apqn.rawValue)
    } else {
      interceptedInterrupts.remove(apqn.rawValue)
    }
    return APQueueStatus(irqEnabled: enable)
  }

  public func nqap(_ apqn: APQN, psmid: UInt64, payload: [UInt8]) -> APQueueStatus {
    machine.nqap(apqn, psmid: psmid, payload: payload, authority)
  }

  public func dqap(_ apqn: APQN) -> (APQueueStatus, APQueueState.Message?) { machine.dqap(apqn, authority) }

  public func ccaQueryCryptoFacility(_ apqn: APQN) -> (serial: String, masterKeys: CCAMasterKeys)? {
    machine.ccaQueryCryptoFacility(apqn, authority)
  }

  public func ep11ModuleQuery(_ apqn: APQN) -> (serial: String, module: EP11ModuleInfo)? {
    machine.ep11ModuleQuery(apqn, authority)
  }

  public func ep11DomainQuery(_ apqn: APQN) -> EP11DomainInfo? { machine.ep11DomainQuery(apqn, authority) }

  /// QEMU offers its guests no SCLP AP reconfiguration facility.
  public func sclpConfigureAdapter(_ apid: APID, _ on: Bool) throws(SCLPAPError) {
    throw .facilityNotInstalled
  }
}
