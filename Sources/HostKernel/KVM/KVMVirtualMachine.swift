import APModel
import Machine

/// One KVM virtual machine as far as AP goes: its vCPUs and its crypto control block (CRYCB),
/// whose APCB holds the masks that the hardware interprets the guest's AP instructions against.
public final class KVMVirtualMachine {
  public let id: Int
  public let name: String
  public let vcpuCount: Int
  /// 0, 1 or 2 (the `crycbd & 3` encodings 0, 1, 3). Formats 0 and 1 hold an APCB0: 64 adapters
  /// and 16 domains at most; format 2 an APCB1 with the full 256 x 256.
  public let crycbFormat: Int
  /// The masks as the CRYCB holds them now: what the guest can reach.
  public private(set) var apcb = APMatrix()
  /// How many times the APCB was written (`kvm_arch_crypto_set_masks` and `_clear_masks`),
  /// each one vCPU block/unblock cycle. What hot plug is measured in.
  public private(set) var apcbUpdateCount = 0
  /// vCPU block/unblock cycles in all.
  public private(set) var vcpuBlockCycles = 0
  /// Whether the vCPUs are blocked right now (only inside an update).
  public private(set) var vcpusBlocked = false

  /// The machine its vCPUs run on.
  private let machine: APMachine

  init(id: Int, name: String, vcpuCount: Int, crycbFormat: Int, machine: APMachine) {
    self.machine = machine
    self.id = id
    self.name = name
    self.vcpuCount = vcpuCount
    self.crycbFormat = crycbFormat
  }

  /// `kvm_arch_crypto_set_masks`: block every vCPU, copy the masks into the CRYCB in its format,
  /// unblock. Formats 0/1 keep 8 bytes of APM and 2 bytes of AQM and ADM: APIDs above 63 and
  /// domains above 15 are dropped without a word.
  public func setMasks(_ masks: APMatrix) {
    blockAll()
    if crycbFormat == 2 {
      apcb = masks
    } else {
      apcb = APMatrix(
        apm: masks.apm.truncated(toBits: 64), aqm: masks.aqm.truncated(toBits: 16),
        adm: masks.adm.truncated(toBits: 16))
    }
    apcbUpdateCount += 1
    unblockAll()
  }

  /// `kvm_arch_crypto_clear_masks`: both APCBs zeroed under one vCPU block cycle.
  public func clearMasks() {
    blockAll()
    apcb = APMatrix()
    apcbUpdateCount += 1
    unblockAll()
  }

  /// The CRYCB designation's format bits: FORMAT0 = 0, FORMAT1 = 1, FORMAT2 = 3.
  public var crycbdFormatBits: Int { crycbFormat == 2 ? 3 : crycbFormat }

  /// The authority a guest's AP instruction runs under.
  public var authority: APAuthority { .guest(vm: id, apcb: apcb) }

  /// `KVM_CREATE_VCPU`: a vCPU of this VM whose CPU model has (or lacks) `apqci` and `apft`;
  /// the host CPU's facilities it lacks, it lacks too.
  public func createVCPU(qci: Bool = true, apft: Bool = true) -> KVMVirtualCPU {
    KVMVirtualCPU(vm: self, machine: machine, qci: qci, apft: apft)
  }

  private func blockAll() {
    vcpusBlocked = true
    vcpuBlockCycles += 1
  }
  private func unblockAll() { vcpusBlocked = false }
}
