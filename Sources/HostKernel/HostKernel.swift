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
  public private(set) var log = KernelLog()
  public private(set) var uevents: [UEvent] = []
  /// Nanoseconds since boot.
  public private(set) var now: UInt64 = 0
  public private(set) var apBus: APBus!
  public private(set) var vfioAP: VFIOAPDriver!
  /// Signals (eventfd writes to a VMM) raised under the lock, delivered by the owner after it
  /// releases the lock so that a VMM reacting to one can call back in.
  private var pendingSignals: [@Sendable () -> Void] = []
  /// Whether uevents are recorded (off in benchmarks of huge configurations).
  public var recordsUEvents = true

  /// Boots the kernel on `machine`: registers the AP bus and its drivers, loads vfio_ap, and
  /// runs the first bus scan, which creates and binds every card and queue device.
  public init(machine: APMachine) {
    self.machine = machine
    kvm = KVM(crycbFormat: machine.definition.crycbFormat)
    sysfs.onTruncatedShow = { [unowned self] message in self.printk(message) }
    apBus = APBus(kernel: self)
    vfioAP = VFIOAPDriver(kernel: self)
    apBus.initialScan()
  }

  /// Boots a kernel on a fresh machine built from `definition`.
  public convenience init(definition: MachineDefinition = .embeddedDefault) {
    self.init(machine: APMachine(definition: definition))
  }

  // MARK: - Log, uevents, signals

  /// `printk`: one line in the kernel log.
  func printk(_ message: String) { log.append(message, at: now) }

  /// `dev_warn`/`dev_notice`: the line prefixed with the driver and device name.
  func devLog(driver: String, device: String, _ message: String) {
    printk("\(driver) \(device): \(message)")
  }

  func uevent(_ action: UEvent.Action, _ devpath: String, _ env: [String] = []) {
    if recordsUEvents { uevents.append(UEvent(action, devpath, env)) }
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
  /// bus's periodic scan every `config_time` seconds.
  public func advance(by nanoseconds: UInt64) {
    let end = now + nanoseconds
    while let due = apBus.nextScanTime, due <= end {
      now = max(now, due)
      apBus.scanBus()
    }
    now = end
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
