import APModel
import Machine

/// The host's KVM: the virtual machines that exist. A VMM creates one per guest; vfio_ap links
/// an mdev to one when the VMM opens the mdev.
public final class KVM {
  public private(set) var vms: [Int: KVMVirtualMachine] = [:]
  private var nextID = 1
  /// The CRYCB format the machine supports for guests.
  let crycbFormat: Int
  /// The machine the guests' vCPUs run on.
  let machine: APMachine

  init(machine: APMachine) {
    self.machine = machine
    crycbFormat = machine.definition.crycbFormat
  }

  /// `KVM_CREATE_VM`: a new VM with `vcpus` vCPUs and the machine's CRYCB format (or an older
  /// one, as a VMM may choose for a CPU model without MSAX3 or APXA).
  public func createVM(name: String, vcpus: Int = 1, crycbFormat: Int? = nil) -> KVMVirtualMachine {
    let vm = KVMVirtualMachine(
      id: nextID, name: name, vcpuCount: max(1, vcpus),
      crycbFormat: min(crycbFormat ?? self.crycbFormat, self.crycbFormat), machine: machine)
    nextID += 1
    vms[vm.id] = vm
    return vm
  }

  /// The VM is gone (the VMM closed its fd).
  public func destroyVM(_ vm: KVMVirtualMachine) {
    vms[vm.id] = nil
  }
}
