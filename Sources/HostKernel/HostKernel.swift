import APModel
import Machine
import Sysfs
import SystemPackage

/// The host Linux kernel of one emulated LPAR: the AP bus with zcrypt's default drivers, the
/// vfio_ap driver with its mediated devices, KVM, and the sysfs tree they publish.
///
/// A state machine without a lock of its own: ``EmulatedHost`` owns it behind one lock, and every
/// entry (a sysfs read or write, a VMM's vfio call, a timer) runs to completion under that lock,
/// as the kernel serialises the same work under its own locks. Time is injected: nothing here
/// reads a clock, ``advance(by:)`` moves it.
public final class HostKernel {
  public let machine: APMachine
  public let sysfs = SysfsTree()
  public let kvm: KVM
  /// The upstream kernel this one behaves as.
  public let profile: KernelProfile
  public private(set) var log = KernelLog()
  /// The newest uevents sent, numbered by `SEQNUM` (see ``UEventRing``).
  public private(set) var uevents = UEventRing()
  /// Nanoseconds since boot.
  public private(set) var now: UInt64 = 0
  public private(set) var apBus: APBus!
  /// zcrypt with its default drivers for CEX4+ cards and queues; built in, so every kernel has it.
  private(set) var zcrypt: Zcrypt!
  /// The vfio_ap driver; nil in a guest's kernel, which has none.
  public private(set) var vfioAP: VFIOAPDriver!
  /// Whose kernel this is: the LPAR's (the host), or a KVM guest's.
  public let role: Role
  /// The kernels of the guests running on this host, by KVM VM id. They share the emulated
  /// machine with the host, so they run under the host's lock; the host's clock drives theirs.
  public private(set) var guestKernels: [Int: HostKernel] = [:]
  /// The IOMMU groups by id, and `/sys/kernel/iommu_groups`, which `iommu_init` creates at boot.
  public internal(set) var iommuGroups: [Int: IOMMUGroup] = [:]
  lazy var iommuGroupsDirectory: SysfsDirectory = sysfs.makeDirectories("/kernel/iommu_groups")
  /// Answers the authority of this kernel's AP instructions: the LPAR, or the guest's APCB now.
  let authorityProvider: () -> APAuthority
  /// Whether this kernel's CPU offers QCI (facility 12) and APFT (facility 15). A guest has
  /// them only when its CPU model has `apqci` and `apft`: without QCI it probes adapters 0-63
  /// and domains 0-15 only; without APFT it detects no CEX4+ adapter at all.
  public let hasQCI: Bool
  public let hasAPFT: Bool

  public enum Role: Sendable, Equatable {
    case host
    case guest(vm: Int)
  }
  /// Signals (eventfd writes to a VMM) raised under the lock, delivered by the owner after it
  /// releases the lock so that a VMM reacting to one can call back in.
  private var pendingSignals: [@Sendable () -> Void] = []
  /// Whether uevents are recorded (off in benchmarks of huge configurations).
  public var recordsUEvents = true
  /// The log ring's size in bytes (the `log_buf_len=` boot parameter).
  public var logBufferLength: Int {
    get { log.capacity }
    set { log.capacity = newValue }
  }
  /// How many uevents the record keeps.
  public var ueventCapacity: Int {
    get { uevents.capacity }
    set { uevents.capacity = newValue }
  }

  /// Boots the kernel on `machine`: registers the AP bus and its drivers, loads vfio_ap, and
  /// runs the first bus scan, which creates and binds every card and queue device.
  public init(
    machine: APMachine, parameters: KernelParameters = KernelParameters(), profile: KernelProfile = .newest
  ) {
    self.machine = machine
    self.profile = profile
    role = .host
    authorityProvider = { .lpar }
    hasQCI = machine.definition.facilities.qci
    hasAPFT = machine.definition.facilities.apft
    kvm = KVM(crycbFormat: machine.definition.crycbFormat)
    sysfs.onTruncatedShow = { [unowned self] message in self.printk(message) }
    _ = iommuGroupsDirectory
    apBus = APBus(kernel: self)
    zcrypt = Zcrypt(kernel: self)
    vfioAP = VFIOAPDriver(kernel: self)
    // `ap_perms_init` runs before the bus's first scan.
    let masks = parameters.masks
    apBus.setMasksForBoot(apmask: masks.apmask, aqmask: masks.aqmask)
    apBus.initialScan()
  }

  /// A guest's kernel on `vm`: its AP bus reads the configuration with QCI through the VM's
  /// APCB and finds exactly the queues the APCB holds; it has zcrypt but no vfio_ap.
  init(guestOf host: HostKernel, vm: KVMVirtualMachine, qci: Bool, apft: Bool) {
    machine = host.machine
    // The guest's kernel is taken to be the host's release.
    profile = host.profile
    role = .guest(vm: vm.id)
    hasQCI = qci && host.hasQCI
    hasAPFT = apft && host.hasAPFT
    authorityProvider = { [weak vm] in vm.map(\.authority) ?? .guest(vm: -1, apcb: APMatrix()) }
    kvm = KVM(crycbFormat: 0)
    now = host.now
    sysfs.onTruncatedShow = { [unowned self] message in self.printk(message) }
    _ = iommuGroupsDirectory
    apBus = APBus(kernel: self)
    zcrypt = Zcrypt(kernel: self)
    apBus.initialScan()
  }

  /// Boots the kernel of a guest running on `vm` (what happens when QEMU starts the guest).
  @discardableResult
  public func bootGuestKernel(on vm: KVMVirtualMachine, qci: Bool = true, apft: Bool = true) -> HostKernel {
    let g = HostKernel(guestOf: self, vm: vm, qci: qci, apft: apft)
    guestKernels[vm.id] = g
    return g
  }

  /// The guest is gone.
  public func shutDownGuestKernel(vm: Int) { guestKernels[vm] = nil }

  /// The authority this kernel's AP instructions run under.
  public var authority: APAuthority { authorityProvider() }

  /// Boots a kernel on a fresh machine built from `definition`.
  public convenience init(
    definition: MachineDefinition = .embeddedDefault, parameters: KernelParameters = KernelParameters(),
    profile: KernelProfile = .newest
  ) {
    self.init(machine: APMachine(definition: definition), parameters: parameters, profile: profile)
  }

  // MARK: - Log, uevents, signals

  /// `printk`: one line in the kernel log.
  func printk(_ message: String) { log.append(message, at: now) }

  /// `dev_warn`/`dev_notice`: the line prefixed with the driver and device name.
  func devLog(driver: String, device: String, _ message: String) {
    printk("\(driver) \(device): \(message)")
  }

  /// `kobject_uevent_env`: an event with the caller's variables `env`, then what the kset's
  /// callback adds for the object as it is at this moment (for a device, `dev_uevent`: what its
  /// `uevent` file shows; buses and drivers add nothing, and their files are write-only).
  func uevent(_ action: UEvent.Action, _ devpath: String, _ env: [String] = [], subsystem: String? = nil) {
    // Numbered even when not recorded, as `uevent_seqnum` counts every event.
    if recordsUEvents {
      let own = (try? sysfs.readString(devpath + "/uevent"))?.split(separator: "\n").map(String.init) ?? []
      uevents.send(UEvent(action, devpath, env + own, subsystem: subsystem))
    } else {
      uevents.sendUnrecorded()
    }
  }

  /// Queues a signal to a VMM (an eventfd write).
  func signal(_ s: @escaping @Sendable () -> Void) { pendingSignals.append(s) }

  /// Takes the signals raised since the last call. The owner runs them outside its lock.
  public func takePendingSignals() -> [@Sendable () -> Void] {
    defer { pendingSignals = [] }
    return pendingSignals
  }

  // MARK: - Time

  /// Moves the kernel's clock forward, running the timers that fall due on the way: the AP
  /// bus's periodic scan every `config_time` seconds, and its poll of the queues that wait for
  /// the firmware (a reset, an AQIC). The machine's clock follows the kernel's.
  public func advance(by nanoseconds: UInt64) {
    let end = now + nanoseconds
    while let due = apBus.nextScanTime, due <= end {
      setClock(max(now, due))
      apBus.pollWaitingQueues()
      apBus.scanBus()
    }
    setClock(end)
    apBus.pollWaitingQueues()
    for g in guestKernels.values { g.advance(to: end) }
  }

  /// `msleep` inside an operation that holds the kernel (vfio_ap's reset check): the clock
  /// moves on, and the machine's with it, but no timer runs (they run at the next ``advance``,
  /// late, as a timer does behind a long lock hold), so nothing re-enters the operation.
  func sleep(milliseconds: UInt64) { setClock(now + milliseconds * 1_000_000) }

  private func setClock(_ time: UInt64) {
    now = time
    machine.advanceClock(to: time)
  }

  /// Moves the clock to `time` (no-op if it is in the past).
  public func advance(to time: UInt64) {
    if time > now { advance(by: time - now) }
  }

  // MARK: - Convenience for callers and tests

  /// Reads a sysfs attribute as text.
  public func read(_ path: String) throws(Errno) -> String { try sysfs.readString(path) }

  /// Writes a sysfs attribute, as `echo -n TEXT > path` would.
  @discardableResult
  public func write(_ path: String, _ text: String) throws(Errno) -> Int { try sysfs.write(path, text) }

  /// The hardware operations on the LPAR tell the kernel through the AP configuration change
  /// notification; the AP bus scans at once.
  public func notifyConfigurationChange() { apBus.scanBus() }
}
