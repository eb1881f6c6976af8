import APModel
import Foundation
import HostKernel
import Machine
import Synchronization
import SystemPackage

/// One QEMU process: a KVM guest with its CPU model, its AP bridge and bus, at most one vfio-ap
/// device, its monitors, and (running on the emulated machine) the guest's own kernel.
///
/// QEMU's big lock is the guest's mutex; the host's lock is taken inside it, never the other way
/// round (the kernel's signals reach the guest only after the host lock is released).
public final class Guest: Sendable {
  public let host: EmulatedHost
  public let name: String
  public let cpu: CPUModel
  /// `-cpu` as the command line gave it (`z15,ap=on,apft=on`): what a scenario's guest names,
  /// which the parsed model does not keep (the order of the features, those QEMU ignores).
  public let cpuOption: String
  public let vmID: Int
  /// `-smp`: the vCPUs the guest has.
  public let vcpus: Int
  /// `-no-shutdown`: a guest that shuts down stops and waits (for libvirt to end it).
  public let noShutdown: Bool
  /// `-m`, in bytes (what `query-balloon` reports).
  public let memoryBytes: Int
  public let version: QEMUVersion
  /// The host's sysfs mounts that `sysfsdev` may name besides `/sys`.
  public let sysfsMounts: [String]
  let state: Mutex<State>
  /// Events go to every negotiated QMP session.
  let sinks = Mutex<[ObjectIdentifier: @Sendable (QMPValue) -> Void]>([:])
  let clock: @Sendable () -> (seconds: Int, microseconds: Int)
  /// Signalled once the guest has quit.
  let quitSignal = DispatchSemaphore(value: 0)
  /// The guest's own kernel, which runs on its vCPU under the VM's APCB. The machine is shared,
  /// so the kernel runs under the host's lock (``withKernel(_:)``).
  public let kernel = GuestKernelSlot()

  struct State {
    var device: VFIOAPDevice?
    var anonymousCount = 0
    var status = "running"
    var quit = false
    /// What QEMU printed as warnings (to its standard error), oldest first.
    var warnings: [String] = []
    /// Why it quit: the SHUTDOWN event's reason.
    var quitReason: String?
    /// CRWs queued for the guest and not yet drained.
    var crwPending = false
    var crwDelivered = 0
    var emulatorPID: Int32?
    /// The pseudo-terminals of `-chardev pty` (id, master descriptor, the terminal's path), as
    /// QEMU opens one for each; what the guest writes to a console is nothing.
    var ptys: [(id: String, master: Int32, path: String)] = []
    /// The balloon's size after `balloon` (nil: the whole memory).
    var balloonTarget: Int?
    /// Devices that are there for libvirt's domain XML and do nothing here: (id, driver).
    var inert: [(id: String?, driver: String)] = []
    /// `system_powerdown` was answered; the guest shuts down once the reply is out.
    var powerdownRequested = false
    /// A `system_reset` to carry out once its reply is out.
    var resetRequested = false
    /// Migration capabilities set with `migrate-set-capabilities`.
    var migrationCapabilities: [String: Bool] = [:]
  }

  /// The process that stands for this guest's QEMU (`apvirt qemu`), whose thread `query-cpus-fast`
  /// names as the vCPU's: libvirt moves that thread into the domain's vCPU cgroup, so it must be
  /// a live thread.
  public var emulatorPID: Int32? {
    get { state.withLock { $0.emulatorPID } }
    set { state.withLock { $0.emulatorPID = newValue } }
  }

  /// Starts a guest: creates its VM, boots its kernel, realizes the command line's devices.
  /// Throws the first error QEMU would exit with.
  public init(
    host: EmulatedHost, configuration c: GuestConfiguration, version: QEMUVersion = .current,
    clock: @escaping @Sendable () -> (seconds: Int, microseconds: Int) = Guest.wallClock
  ) throws(DeviceError) {
    self.host = host
    self.version = version
    self.clock = clock
    name = c.name
    sysfsMounts = c.sysfsMounts
    let definition = host.withKernel { $0.machine.definition }
    let (model, _): (CPUModel, [String])
    do throws(CPUModel.Failure) {
      (model, _) = try CPUModel.parse(c.cpu, machine: definition)
    } catch {
      throw DeviceError(error.message)
    }
    cpu = model
    cpuOption = c.cpu
    let vcpus = c.vcpus
    self.vcpus = vcpus
    noShutdown = c.noShutdown
    memoryBytes = QEMUCommandLine.memoryBytes(c.memory) ?? 128 << 20
    let guestName = c.name
    vmID = host.withKernel { k in k.kvm.createVM(name: guestName, vcpus: vcpus).id }
    state = Mutex(State(status: c.startPaused ? "prelaunch" : "running"))
    for id in c.ptyChardevs {
      guard let pty = Self.openPTY() else {
        shutDown()
        throw DeviceError("-chardev pty,id=\(id): Failed to create PTY: \(String(cString: strerror(errno)))")
      }
      state.withLock { $0.ptys.append((id, pty.master, pty.path)) }
    }
    // Cold plug: the command line's devices are realized before the guest runs, so the guest's
    // kernel finds them in its first AP bus scan at boot.
    for (spec, text) in zip(c.devices, c.deviceTexts) {
      do throws(DeviceError) {
        let before = state.withLock { $0.warnings.count }
        _ = try deviceAdd(spec, hotplugged: false)
        // A warning of a command-line device names the option, as QEMU's error location does.
        state.withLock { s in
          for i in before..<s.warnings.count { s.warnings[i] = "-device \(text): " + s.warnings[i] }
        }
      } catch {
        shutDown()
        throw DeviceError("-device \(text): \(error.message)")
      }
    }
    let id = vmID
    host.withGuestKernel(kernel) { k, g in
      if let vm = k.kvm.vms[id] {
        let cpu = vm.createVCPU(qci: model.effectiveQCI, apft: model.effectiveAPFT)
        // The guest's kernel is taken to be the host's release.
        g = HostKernel(guestOn: cpu, clock: k.clock, profile: k.profile)
      }
    }
  }

  /// Runs `body` on the guest's own kernel (nil before it boots and once the guest has shut
  /// down) under the host's lock.
  public func withKernel<T: Sendable, E: Error>(_ body: (HostKernel?) throws(E) -> T) throws(E) -> T {
    try host.withGuestKernel(kernel) { (_, g) throws(E) -> T in try body(g) }
  }

  public static let wallClock: @Sendable () -> (seconds: Int, microseconds: Int) = {
    let t = Date().timeIntervalSince1970
    return (Int(t), Int((t - t.rounded(.down)) * 1_000_000))
  }

  /// The AP bridge and its bus exist only with the `ap` CPU feature.
  public var hasAPBus: Bool { cpu.ap }

  public var status: String { state.withLock { $0.status } }
  public var isQuit: Bool { state.withLock { $0.quit } }
  /// The SHUTDOWN reason once the guest has quit (`host-qmp-quit`, `host-signal`).
  public var quitReason: String? { state.withLock { $0.quitReason } }
  public var device: VFIOAPDevice? { state.withLock { $0.device } }
  public var crwDelivered: Int { state.withLock { $0.crwDelivered } }

  // MARK: - Events

  func emit(_ event: String, _ data: QMPValue?) {
    let (s, us) = clock()
    var members: [(String, QMPValue)] = [("event", .string(event))]
    if let data { members.append(("data", data)) }
    members.append(("timestamp", .object([("seconds", .int(s)), ("microseconds", .int(us))])))
    let value = QMPValue.object(members)
    for sink in sinks.withLock({ Array($0.values) }) { sink(value) }
  }

  public func addSink(_ key: ObjectIdentifier, _ sink: @escaping @Sendable (QMPValue) -> Void) {
    sinks.withLock { $0[key] = sink }
  }

  public func removeSink(_ key: ObjectIdentifier) { _ = sinks.withLock { $0.removeValue(forKey: key) } }

  // MARK: - Device hot plug

  /// The devices an ordinary libvirt domain has besides its hostdev, which apvirt's guest accepts
  /// and which do nothing: the memory balloon (the guest has no memory to give back), the SCLP
  /// consoles (it writes nothing to them; their chardev, a pty, serves nothing) and virtio disks
  /// (it does no I/O; their `-blockdev` backends are accepted as given).
  public static let inertDrivers: Set<String> = [
    "virtio-balloon-ccw", "sclpconsole", "sclplmconsole", "virtio-blk-ccw",
  ]

  /// Adds an inert device: its id (if any) must be new; its other properties are taken as given.
  func addInert(_ driver: String, _ props: [(String, QMPValue)]) throws(DeviceError) -> String {
    var id: String?
    if let v = props.first(where: { $0.0 == "id" })?.1 {
      guard case .string(let s) = v else {
        throw DeviceError("Invalid parameter type for 'id', expected: string")
      }
      id = s
    }
    return try state.withLock { (s) throws(DeviceError) -> String in
      if let id, s.device?.id == id || s.inert.contains(where: { $0.id == id }) {
        throw DeviceError("Duplicate device ID '\(id)'")
      }
      s.inert.append((id, driver))
      if let id { return "/machine/peripheral/\(id)" }
      s.anonymousCount += 1
      return "/machine/peripheral-anon/device[\(s.anonymousCount - 1)]"
    }
  }

  /// `query-balloon` and `balloon` need a balloon, with an id or without.
  func requireBalloon() throws(DeviceError) {
    guard state.withLock({ $0.inert.contains { $0.driver == "virtio-balloon-ccw" } }) else {
      throw DeviceError("No balloon device has been activated", errorClass: "DeviceNotActive")
    }
  }

  /// The inert devices with an id, for `qom-list /machine/peripheral`.
  public var inertDevices: [(id: String, driver: String)] {
    state.withLock { s in s.inert.compactMap { d in d.id.map { ($0, d.driver) } } }
  }

  /// The warnings QEMU printed so far, oldest first.
  public var warnings: [String] { state.withLock { $0.warnings } }

  /// `device_add` (and `-device`, with `hotplugged` false): flat properties, `driver` first.
  /// Returns the QOM path.
  ///
  /// The checks come in `qdev_device_add_from_qdict`'s order: the driver, then the bus (none, a
  /// full one), then the id (a duplicate; an anonymous device takes its `device[N]` name here,
  /// so a later failure still uses up N), then the properties, then realize.
  @discardableResult
  public func deviceAdd(_ props: [(String, QMPValue)], hotplugged: Bool = true) throws(DeviceError) -> String
  {
    guard let driverValue = props.first(where: { $0.0 == "driver" })?.1 else {
      throw DeviceError("Parameter 'driver' is missing")
    }
    guard case .string(let driver) = driverValue else {
      throw DeviceError("Invalid parameter type for 'driver', expected: string")
    }
    if Self.inertDrivers.contains(driver) { return try addInert(driver, props) }
    guard driver == "vfio-ap" else {
      if driver == "ap-device" { throw DeviceError("Parameter 'driver' expects a non-abstract device type") }
      throw DeviceError("'\(driver)' is not a valid device model name")
    }
    // `bus` and `id` are qdev's own options, taken before the device exists.
    var id: String?
    var bus: String?
    for (k, v) in props where k == "id" || k == "bus" {
      guard case .string(let s) = v else {
        throw DeviceError("Invalid parameter type for '\(k)', expected: string")
      }
      if k == "id" { id = s } else { bus = s }
    }
    return try state.withLock { (s) throws(DeviceError) -> String in
      guard hasAPBus else { throw DeviceError("No 'ap-bus' bus found for device 'vfio-ap'") }
      if let bus, bus != "ap-bus" {
        throw DeviceError("Bus '\(bus)' not found", errorClass: "DeviceNotFound")
      }
      if s.device != nil {
        if bus != nil { throw DeviceError("Bus 'ap-bus' is full") }
        throw DeviceError(
          version >= .busFullMessage
            ? "A 'ap-bus' bus was found but is full" : "No 'ap-bus' bus found for device 'vfio-ap'")
      }
      if let id, s.device?.id == id || s.inert.contains(where: { $0.id == id }) {
        throw DeviceError("Duplicate device ID '\(id)'")
      }
      let path: String
      if let id {
        path = "/machine/peripheral/\(id)"
      } else {
        path = "/machine/peripheral-anon/device[\(s.anonymousCount)]"
        s.anonymousCount += 1
      }
      var sysfsdev: String?
      var cfgIRQ = version >= .configChangeIRQ
      for (k, v) in props where k != "driver" && k != "id" && k != "bus" {
        switch k {
        case "sysfsdev":
          guard case .string(let str) = v else {
            throw DeviceError("Invalid parameter type for '\(k)', expected: string")
          }
          sysfsdev = str
        case "x-cfg-chg-irq":
          guard let str = v.stringValue ?? (v == .bool(true) ? "on" : v == .bool(false) ? "off" : nil) else {
            throw DeviceError("Invalid parameter type for 'x-cfg-chg-irq', expected: boolean")
          }
          cfgIRQ = str == "on" || str == "true"
        default:
          throw DeviceError("Property 'vfio-ap.\(k)' not found")
        }
      }
      // Without sysfsdev, QEMU's realize stats a NULL path and prints it as glibc does.
      guard let sysfsdev else { throw DeviceError("vfio (null): no such host device: Bad address") }
      var (device, warning) = try realize(id: id, path: path, sysfsdev: sysfsdev, cfgIRQ: cfgIRQ)
      if let warning { s.warnings.append(warning) }
      device.hotplugged = hotplugged
      s.device = device
      return path
    }
  }

  /// Realize: resolve the mdev, open it (the kernel links the KVM and sets the guest's APCB),
  /// wire the request IRQ and, from QEMU 10.1 on, the config-change IRQ. A host kernel without
  /// that IRQ (before Linux 6.15) is no failure: QEMU warns (`vfio_ap_register_irq_notifier`
  /// finds too few IRQs in the device's info) and goes on; the warning is returned.
  func realize(id: String?, path: String, sysfsdev: String, cfgIRQ: Bool) throws(DeviceError) -> (
    VFIOAPDevice, String?
  ) {
    let vmID = self.vmID
    var warning: String?
    let result: Result<String, DeviceError> = host.withKernel { k in
      do throws(DeviceError) {
        let uuid = try VFIOAPDevice.resolve(sysfsdev, in: k, mounts: sysfsMounts)
        let m = k.vfioAP.mdev(uuid)!
        do throws(Errno) {
          try k.vfioAP.openDevice(m, kvm: k.kvm.vms[vmID])
        } catch {
          throw DeviceError("vfio \(uuid): error getting device: \(error)")
        }
        try? k.vfioAP.setIRQ(m, index: VFIOAPDriver.requestIRQIndex) { [weak self] in self?.requestIRQ() }
        if cfgIRQ {
          let irqs = k.vfioAP.deviceInfo(m).numIRQs
          if irqs <= VFIOAPDriver.configChangeIRQIndex {
            warning =
              "warning: vfio: IRQ \(VFIOAPDriver.configChangeIRQIndex) not available (number of irqs \(irqs))"
          } else {
            try? k.vfioAP.setIRQ(m, index: VFIOAPDriver.configChangeIRQIndex) { [weak self] in
              self?.configChangeIRQ()
            }
          }
        }
        return .success(uuid)
      } catch {
        return .failure(error)
      }
    }
    let uuid = try result.get()
    return (
      VFIOAPDevice(id: id, qomPath: path, sysfsdev: sysfsdev, uuid: uuid, configChangeIRQ: cfgIRQ), warning
    )
  }

  /// `device_del`: by id or QOM path; synchronous; DEVICE_DELETED is emitted before the reply.
  public func deviceDel(_ idOrPath: String) throws(DeviceError) {
    let removed = try state.withLock { (s) throws(DeviceError) -> VFIOAPDevice in
      guard let d = s.device, d.id == idOrPath || d.qomPath == idOrPath else {
        throw DeviceError("Device '\(idOrPath)' not found", errorClass: "DeviceNotFound")
      }
      unrealize(d)
      s.device = nil
      return d
    }
    emitDeleted(removed)
  }

  func emitDeleted(_ d: VFIOAPDevice) {
    var data: [(String, QMPValue)] = []
    if let id = d.id { data.append(("device", .string(id))) }
    data.append(("path", .string(d.qomPath)))
    emit("DEVICE_DELETED", .object(data))
  }

  /// Unrealize: unregister both IRQs, close the device (the kernel clears the guest's APCB and
  /// resets the queues; a host `remove` waiting for this goes on).
  func unrealize(_ d: VFIOAPDevice) {
    host.withKernel { k in
      if let m = k.vfioAP.mdev(d.uuid), m.isOpen {
        try? k.vfioAP.setIRQ(m, index: VFIOAPDriver.requestIRQIndex, trigger: nil)
        try? k.vfioAP.setIRQ(m, index: VFIOAPDriver.configChangeIRQIndex, trigger: nil)
      }
    }
    host.closeDevice(uuid: d.uuid)
  }

  /// The kernel asks for the device back (the mdev is being removed): unplug it, and tell the
  /// monitors with an unsolicited DEVICE_DELETED.
  func requestIRQ() {
    let removed: VFIOAPDevice? = state.withLock { s in
      guard let d = s.device else { return nil }
      unrealize(d)
      s.device = nil
      return d
    }
    if let removed { emitDeleted(removed) }
  }

  /// The guest's AP configuration changed: queue a channel report (one until the guest drains
  /// it); the guest takes the machine check, reads the event (CHSC SEI, NT0 rs 5 cc 3) and its AP
  /// bus rescans at once.
  func configChangeIRQ() {
    let deliver: Bool = state.withLock { s in
      if s.crwPending { return false }
      s.crwPending = true
      return true
    }
    guard deliver else { return }
    withKernel { g in g?.notifyConfigurationChange() }
    state.withLock { s in
      s.crwPending = false
      s.crwDelivered += 1
    }
  }

  // MARK: - Run state

  public func stop() {
    let changed: Bool = state.withLock { s in
      guard s.status == "running" else { return false }
      s.status = "paused"
      return true
    }
    if changed { emit("STOP", nil) }
  }

  public func cont() {
    let changed: Bool = state.withLock { s in
      guard s.status != "running" else { return false }
      s.status = "running"
      return true
    }
    if changed { emit("RESUME", nil) }
  }

  /// Machine reset: the vfio-ap device is reset (VFIO_DEVICE_RESET); a failure is only logged.
  /// Returns the log line QEMU would print, if any.
  public func systemReset() -> String? {
    guard let d = device else { return nil }
    let r: Errno? = host.withKernel { k in
      guard let m = k.vfioAP.mdev(d.uuid) else { return nil }
      do throws(Errno) {
        try k.vfioAP.resetDevice(m)
        return nil
      } catch {
        return error
      }
    }
    return r.map { "vfio_ap_reset: failed to reset \(d.uuid) device: \($0)" }
  }

  /// `quit`: the devices go, the guest's kernel and VM with them.
  public func quit(reason: String = "host-qmp-quit") {
    let first: Bool = state.withLock { s in
      if s.quit { return false }
      s.quit = true
      s.quitReason = reason
      s.status = "shutdown"
      return true
    }
    guard first else { return }
    shutDown()
    // A shutdown the guest asked for (`guest-shutdown`, after `system_powerdown`) is the guest's.
    emit("SHUTDOWN", .object([("guest", .bool(reason.hasPrefix("guest-"))), ("reason", .string(reason))]))
    quitSignal.signal()
  }

  /// Blocks until the guest has quit.
  public func waitUntilQuit() {
    quitSignal.wait()
    quitSignal.signal()
  }

  /// A pseudo-terminal pair: the master, kept by the guest, and the terminal's path. What
  /// `posix_openpt`, `unlockpt` and `ptsname` do (Glibc's module hides them behind
  /// _XOPEN_SOURCE): open /dev/ptmx, clear the lock (TIOCSPTLCK), ask the number (TIOCGPTN).
  static func openPTY() -> (master: Int32, path: String)? {
    let master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
    guard master >= 0 else { return nil }
    var unlock: Int32 = 0
    var number: UInt32 = 0
    let setLock: UInt = 0x4004_5431  // TIOCSPTLCK
    let getNumber: UInt = 0x8004_5430  // TIOCGPTN
    guard ioctl(master, setLock, &unlock) == 0, ioctl(master, getNumber, &number) == 0 else {
      close(master)
      return nil
    }
    return (master, "/dev/pts/\(number)")
  }

  /// The consoles' pseudo-terminals: (chardev id, path).
  public var ptys: [(id: String, path: String)] { state.withLock { $0.ptys.map { ($0.id, $0.path) } } }

  func shutDown() {
    let (d, ptys): (VFIOAPDevice?, [Int32]) = state.withLock { s in
      let d = s.device
      s.device = nil
      defer { s.ptys = [] }
      return (d, s.ptys.map(\.master))
    }
    for m in ptys { close(m) }
    if let d { unrealize(d) }
    let id = vmID
    host.withGuestKernel(kernel) { k, g in
      g = nil
      if let vm = k.kvm.vms[id] { k.kvm.destroyVM(vm) }
    }
  }

  // MARK: - What the guest sees

  /// The guest's APCB now.
  public var apcb: APMatrix { host.withKernel { k in k.kvm.vms[vmID]?.apcb ?? APMatrix() } }

  /// Reads a file of the guest's own sysfs (`/bus/ap/...`, `/devices/ap/...`).
  public func guestRead(_ path: String) throws(Errno) -> String {
    try withKernel { (g) throws(Errno) -> String in
      guard let g else { throw .noSuchDevice }
      return try g.read(path)
    }
  }

  /// The queues the guest's AP bus has found, ascending.
  public var guestQueues: [APQN] {
    withKernel { g in (g?.apBus.queues.keys.sorted() ?? []).map { APQN(rawValue: $0) } }
  }
}

/// The QEMU version emulated: it decides the greeting and the behaviours that changed.
public struct QEMUVersion: Sendable, Comparable, CustomStringConvertible {
  public var major: Int
  public var minor: Int
  public var micro: Int
  public init(_ major: Int, _ minor: Int, _ micro: Int = 0) {
    self.major = major
    self.minor = minor
    self.micro = micro
  }

  /// The default: a current QEMU.
  public static let current = QEMUVersion(10, 2, 0)
  /// From 10.1 the vfio-ap device wires the config-change IRQ.
  public static let configChangeIRQ = QEMUVersion(10, 1, 0)
  /// From 9.0 vfio devices have an `iommufd` link.
  public static let iommufd = QEMUVersion(9, 0, 0)
  /// From 10.2 a full ap-bus without `bus=` says so.
  public static let busFullMessage = QEMUVersion(10, 2, 0)

  /// The oldest QEMU emulated: the vfio-ap device and the AP CPU features came with QEMU 3.1.
  public static let oldest = QEMUVersion(3, 1, 0)

  /// `MAJOR.MINOR[.MICRO]`, decimal numbers only.
  public init?(_ text: String) {
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    guard (2...3).contains(parts.count),
      parts.allSatisfy({ !$0.isEmpty && $0.count <= 6 && $0.allSatisfy { $0.isASCII && $0.isNumber } })
    else { return nil }
    let p = parts.map { Int($0)! }
    self.init(p[0], p[1], p.count == 3 ? p[2] : 0)
  }

  /// The versions apvirt emulates, as a user reads them: `3.1 to 10.2`.
  public static var emulatedRange: String {
    "\(oldest.major).\(oldest.minor) to \(current.major).\(current.minor)"
  }

  /// Why `text` (`APVIRT_QEMU_VERSION`) is not a version apvirt emulates, or nil: it must be a
  /// version from ``oldest`` to the ``current`` major and minor (any micro).
  public static func problem(_ text: String) -> String? {
    guard let v = QEMUVersion(text) else {
      return "not a QEMU version (MAJOR.MINOR[.MICRO]); apvirt emulates QEMU \(emulatedRange)"
    }
    if v < oldest {
      return
        "apvirt emulates QEMU \(emulatedRange), not \(text): the vfio-ap device and the AP CPU features came with QEMU \(oldest.major).\(oldest.minor)"
    }
    if (v.major, v.minor) > (current.major, current.minor) {
      return
        "apvirt emulates QEMU \(emulatedRange), not \(text): it knows no QEMU after \(current.major).\(current.minor)"
    }
    return nil
  }

  public static func < (a: QEMUVersion, b: QEMUVersion) -> Bool {
    (a.major, a.minor, a.micro) < (b.major, b.minor, b.micro)
  }

  public var description: String { "\(major).\(minor).\(micro)" }
}
