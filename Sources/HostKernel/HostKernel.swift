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
  /// The machine: the LPAR the host runs in. Nil in a guest's kernel, which reaches the machine
  /// only through its CPU.
  public let machine: APMachine!
  /// The CPU this kernel's AP instructions run on: the LPAR's, or the guest's vCPU under its VM's
  /// APCB. Everything the kernel learns of the AP hardware, it learns here.
  public let cpu: any APCPU
  public let sysfs = SysfsTree()
  /// KVM; nil in a guest's kernel (no nested virtualization).
  public let kvm: KVM!
  /// The upstream kernel this one behaves as.
  public let profile: KernelProfile
  // The log, the uevents, the group changes and the pending signals are asked for by every
  // store (whether the daemon has anything to follow; whether there are signals to deliver),
  // always under the host's lock, one access at a time: unchecked for exclusivity, so that a
  // store pays no runtime check for each.
  @exclusivity(unchecked) public private(set) var log = KernelLog()
  /// The newest uevents sent, numbered by `SEQNUM` (see ``UEventRing``).
  @exclusivity(unchecked) public private(set) var uevents = UEventRing()
  /// Nanoseconds since boot.
  public private(set) var now: UInt64 = 0
  /// The clock the kernels of this host's guests follow: the host's own for the host, the
  /// host's (given to it at boot) for a guest.
  public let clock: KernelClock
  /// Set at boot. Every assignment store reaches it: unchecked for exclusivity.
  @exclusivity(unchecked) public private(set) var apBus: APBus!
  /// zcrypt with its default drivers for CEX4+ cards and queues; built in, so every kernel has it.
  private(set) var zcrypt: Zcrypt!
  /// The vfio_ap driver; nil in a guest's kernel, which has none.
  public private(set) var vfioAP: VFIOAPDriver!
  /// Whose kernel this is: the LPAR's (the host), or a KVM guest's.
  public let role: Role
  /// The IOMMU groups by id, and `/sys/kernel/iommu_groups`, which `iommu_init` creates at boot.
  public internal(set) var iommuGroups: [Int: IOMMUGroup] = [:] {
    didSet { iommuGroupChanges &+= 1 }
  }
  /// Counts the changes to ``iommuGroups``: what follows the groups (`/dev/vfio`'s nodes) looks
  /// again only when it moved.
  @exclusivity(unchecked) public private(set) var iommuGroupChanges: UInt64 = 0
  /// What moves when the kernel logs a line, sends a uevent or changes its IOMMU groups: what
  /// follows the kernel outside it (a daemon's log file, `/dev/vfio`, uevent listeners) has
  /// anything to do only when these moved. Read here, in this module, where the counters are
  /// unchecked for exclusivity: every store asks.
  public var changeCounters: ChangeCounters {
    ChangeCounters(logLines: log.nextSeq, uevents: uevents.lastSeqnum, iommuGroupChanges: iommuGroupChanges)
  }

  /// See ``changeCounters``.
  public struct ChangeCounters: Equatable, Sendable {
    /// The sequence number of the next log line.
    public var logLines: UInt64
    /// The `SEQNUM` of the last uevent.
    public var uevents: UInt64
    /// ``iommuGroupChanges``.
    public var iommuGroupChanges: UInt64

    public init(logLines: UInt64, uevents: UInt64, iommuGroupChanges: UInt64) {
      self.logLines = logLines
      self.uevents = uevents
      self.iommuGroupChanges = iommuGroupChanges
    }
  }

  /// The ids in use in ``iommuGroups``, to find the lowest free one at once.
  var iommuGroupIDs = IDAllocator()
  lazy var iommuGroupsDirectory: SysfsDirectory = sysfs.makeDirectories("/kernel/iommu_groups")

  public enum Role: Sendable, Equatable {
    case host
    case guest(vm: Int)
  }
  /// Signals (eventfd writes to a VMM) raised under the lock, delivered by the owner after it
  /// releases the lock so that a VMM reacting to one can call back in.
  @exclusivity(unchecked) private var pendingSignals: [@Sendable () -> Void] = []
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
    cpu = LPARCPU(machine: machine)
    clock = KernelClock()
    kvm = KVM(machine: machine)
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

  /// A guest's kernel on `cpu`, its VM's vCPU: its AP bus reads the configuration with QCI
  /// through the VM's APCB and finds exactly the queues the APCB holds; it has zcrypt but no
  /// vfio_ap, no KVM and no machine. Its clock follows `clock`, the host's (``KernelClock``):
  /// it boots at the host's time and runs its timers as the host's clock moves. `profile` is the
  /// guest's release (the VMM takes it to be the host's).
  public init(guestOn cpu: KVMVirtualCPU, clock: KernelClock, profile: KernelProfile) {
    machine = nil
    self.cpu = cpu
    self.profile = profile
    role = .guest(vm: cpu.vmID)
    kvm = nil
    self.clock = clock
    now = clock.now
    sysfs.onTruncatedShow = { [unowned self] message in self.printk(message) }
    _ = iommuGroupsDirectory
    apBus = APBus(kernel: self)
    zcrypt = Zcrypt(kernel: self)
    apBus.initialScan()
    clock.follow(self)
  }

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

  /// `kobject_uevent_env` for an AP device whose `dev_uevent` variables the caller has: the same
  /// event as ``uevent(_:_:_:subsystem:)`` builds from the device's `uevent` file (which shows
  /// exactly `variables`), without resolving the file's path. The bus sends one per device it
  /// adds, removes, binds or unbinds: 131,072 at a full-architecture boot, so the record keeps
  /// the device's numbers and the variables' values and writes the text only when the event is
  /// read; the values are taken only when the event is recorded.
  func deviceUEvent(
    _ action: UEvent.Action, _ device: APDevicePath, _ variables: @autoclosure () -> APDeviceUEventVariables
  ) {
    if recordsUEvents {
      uevents.send(action, apDevice: device, variables())
    } else {
      uevents.sendUnrecorded()
    }
  }

  /// `kobject_uevent_env` for a device of another subsystem whose `dev_uevent` variables the
  /// caller has as text (an mdev: subsystem `mdev`), without resolving its `uevent` file; the
  /// variables are built only when the event is recorded.
  func deviceUEvent(
    _ action: UEvent.Action, _ devpath: String, variables: @autoclosure () -> [String], subsystem: String
  ) {
    if recordsUEvents {
      uevents.send(UEvent(action, devpath, variables(), subsystem: subsystem))
    } else {
      uevents.sendUnrecorded()
    }
  }

  /// Queues a signal to a VMM (an eventfd write).
  func signal(_ s: @escaping @Sendable () -> Void) { pendingSignals.append(s) }

  /// Takes the signals raised since the last call, nil when there are none (nearly every entry
  /// raises none: then nothing is stored anew, nor an empty array handed out). The owner runs
  /// them outside its lock.
  public func takePendingSignals() -> [@Sendable () -> Void]? {
    if pendingSignals.isEmpty { return nil }
    defer { pendingSignals = [] }
    return pendingSignals
  }

  // MARK: - Time

  /// Moves the kernel's clock forward, running the timers that fall due on the way: the AP
  /// bus's periodic scan every `config_time` seconds, and its poll of the queues that wait for
  /// the firmware (a reset, an AQIC). The machine's clock follows the host's; then the guests'
  /// kernels that follow the host's clock move to the same time.
  public func advance(by nanoseconds: UInt64) {
    let end = now + nanoseconds
    while let due = apBus.nextScanTime, due <= end {
      setClock(max(now, due))
      apBus.pollWaitingQueues()
      apBus.scanBus()
    }
    setClock(end)
    apBus.pollWaitingQueues()
    if role == .host { clock.runFollowers(to: end) }
  }

  /// `msleep` inside an operation that holds the kernel (vfio_ap's reset check): the clock
  /// moves on, and the machine's with it, but no timer runs (they run at the next ``advance``,
  /// late, as a timer does behind a long lock hold), so nothing re-enters the operation.
  func sleep(milliseconds: UInt64) { setClock(now + milliseconds * 1_000_000) }

  private func setClock(_ time: UInt64) {
    now = time
    // The host moves the machine's clock and its own, which its guests' kernels boot at.
    if role == .host {
      machine.advanceClock(to: time)
      clock.now = time
    }
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
