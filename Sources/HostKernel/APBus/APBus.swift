import APModel
import Machine
import Sysfs
import SystemPackage

/// The AP bus (`ap_bus.c`): the card and queue devices, the permissions masks `apmask` and
/// `aqmask` that reserve APQNs for the default drivers, driver binding, and the bus scan that
/// follows the LPAR's AP configuration.
public final class APBus: SysfsOwner {
  /// What its sysfs directories hold of it, weakly (see ``SysfsOwnerToken``).
  public private(set) lazy var sysfsOwnerToken = SysfsOwnerToken(owner: self)

  /// The kernel, which makes the bus at boot and holds it as long as it lives; a bus is used only
  /// through its kernel. Unchecked (`unowned(unsafe)`): the bus sends events and reads the kernel's
  /// state for every device it adds, binds, unbinds and removes, 65,536 of each at a
  /// full-architecture boot, and a checked reference costs two atomic count changes each time.
  unowned(unsafe) let kernel: HostKernel
  /// The CPU the bus's AP instructions run on: all it knows of the hardware comes from there.
  /// The kernel's, kept here: the state machine issues several instructions for every queue a
  /// default driver binds, and each would reach the kernel through an unowned reference.
  let cpu: any APCPU

  public private(set) var cards: [APID: APCard] = [:]
  /// Queue devices by APQN raw value.
  public private(set) var queues = APQueueDevices()
  /// The APQNs `apmask x aqmask` reserve for the default (zcrypt) drivers. All ones at boot.
  public private(set) var apmask = APMask.all()
  public private(set) var aqmask = APMask.all()
  /// The configuration the last scan read with QCI; nil without the QCI facility.
  public private(set) var qci: QCIInfo?
  public private(set) var maxAdapterID = 63
  public private(set) var maxDomainID = 15
  /// `config_time`, seconds between periodic scans.
  public internal(set) var configTime = 30
  public internal(set) var pollThread = false
  public internal(set) var pollTimeout: UInt64 = 250_000
  /// The default domain (`ap_domain`), -1 when none.
  public internal(set) var apDomain = -1
  /// Completed scans.
  public private(set) var scanCount: UInt64 = 0
  /// When the periodic scan runs next (kernel time, ns).
  public private(set) var nextScanTime: UInt64?
  var bindingsCompleteSent = false
  /// `ap_bindings_complete_count`: how often the bindings became complete (`COMPLETECOUNT`).
  public private(set) var bindingsCompleteCount: UInt64 = 0

  let busDirectory: SysfsDirectory
  let devicesRoot: SysfsDirectory
  let busDevices: SysfsDirectory
  /// The registered drivers in registration order, the order `bus_for_each_drv` walks them
  /// and `device_attach` tries them.
  private(set) var drivers: [any APDriverOperations] = []
  /// What `ap_bus_match` and `ap_device_probe` ask of each driver in ``drivers`` (the same
  /// order), kept as plain values: attaching a device tries the drivers in turn, 65,536 times at
  /// a full-architecture boot, and asking each driver object would retain and release it.
  private var driverTraits: [DriverTraits] = []

  struct DriverTraits {
    let ids: APDeviceIDTable
    let isDefault: Bool
    let name: String

    init(_ d: any APDriverOperations) {
      ids = d.ids
      isDefault = d.isDefault
      name = d.driver.name
    }
  }
  var driverDirectories: [APDriver: SysfsDirectory] = [:]
  /// The owners of the driver directories' `bind`/`unbind` (sysfs holds owners weakly, by their
  /// tokens).
  var driverHandles: [APDriverHandle] = []
  let attributes: APBusAttributes

  init(kernel: HostKernel) {
    self.kernel = kernel
    cpu = kernel.cpu
    let tree = kernel.sysfs
    busDirectory = tree.makeDirectories("/bus/ap")
    devicesRoot = tree.makeDirectories("/devices/ap")
    busDevices = busDirectory.directory("devices")
    attributes = APBusAttributes(profile: kernel.profile)
    busDevices.provideChildren(APDeviceLinks.busDevices, owner: self)
    busDirectory.addGroup(attributes.busGroup, owner: self)
    devicesRoot.addGroup(attributes.rootGroup, owner: self)
    busDirectory.directory("drivers")
    qci = cpu.qci()
    updateLimits()
  }

  /// `ap_driver_register`: the driver's directory under `/sys/bus/ap/drivers`, with its `bind`
  /// and `unbind`. Only registered drivers bind devices: zcrypt registers its drivers as the
  /// kernel boots, vfio_ap its own when its module loads (a guest's kernel never loads it).
  /// `driver_register` then attaches the unbound devices that match (`driver_attach`).
  func registerDriver(_ d: any APDriverOperations) {
    guard driverDirectories[d.driver] == nil else { return }
    let dir = busDirectory.directory("drivers").directory(d.driver.name)
    let handle = APDriverHandle(bus: self, driver: d)
    driverHandles.append(handle)
    dir.addGroup(attributes.driverGroup, owner: handle)
    dir.provideChildren(APDeviceLinks.driverDevices, owner: handle)
    driverDirectories[d.driver] = dir
    drivers.append(d)
    driverTraits.append(DriverTraits(d))
    for apid in cards.keys.sorted() {
      if let c = cards[apid], c.boundDriver == nil, matches(d, .card(c)) { try? bind(.card(c), d) }
    }
    for raw in queues.keys.sorted() {
      if let q = queues[raw], q.boundDriver == nil, matches(d, .queue(q)) { try? bind(.queue(q), d) }
    }
  }

  func updateLimits() {
    if let qci, qci.apxa {
      maxAdapterID = qci.na != 0 ? qci.na : 63
      maxDomainID = qci.nd != 0 ? qci.nd : 15
    } else {
      maxAdapterID = 63
      maxDomainID = 15
    }
  }

  /// The APQN is reserved for the default drivers by the masks.
  public func isReservedForHost(_ apqn: APQN) -> Bool {
    apmask.contains(apqn.apid) && aqmask.contains(apqn.apqi)
  }

  /// Queues with a `driver_override` (`ap_driver_override_ctr`).
  public internal(set) var driverOverrideCount = 0

  /// `ap_apmask_aqmask_in_use`: a mask that is not all ones. Linux 6.19 makes the masks and
  /// `driver_override` exclusive: an override cannot be written while a mask is in use, and a
  /// mask cannot be written while an override is set (both EINVAL).
  public var masksInUse: Bool { apmask != .all() || aqmask != .all() }

  /// `driver_override_store` (6.19): EINVAL while a mask is in use, or for a name of a page or
  /// more; a trailing newline is dropped and an empty name clears the override.
  func storeDriverOverride(_ q: APQueue, _ bytes: [UInt8]) throws(Errno) {
    if masksInUse { throw .invalidArgument }
    var s = KernelNumber.cString(bytes)
    if s.count >= SysfsTree.pageSize - 1 { throw .invalidArgument }
    if s.last == UInt8(ascii: "\n") { s.removeLast() }
    let had = q.driverOverride != nil
    q.driverOverride = s.isEmpty ? nil : String(decoding: s, as: UTF8.self)
    let has = q.driverOverride != nil
    if had && !has { driverOverrideCount -= 1 }
    if !had && has { driverOverrideCount += 1 }
  }

  public func queue(_ apqn: APQN) -> APQueue? { queues[apqn.rawValue] }

  /// The configuration the kernel sees: QCI's masks, or, without QCI, the adapters and usage
  /// domains found by probing the low IDs (0-63, 0-15) with TAPQ; without QCI no control domain
  /// can be learnt.
  public var configuration: APMatrix {
    if let qci { return qci.matrix }
    return probedConfiguration
  }

  /// Without QCI: the configuration as TAPQ finds it, read at each scan.
  private var probedConfiguration = APMatrix()

  /// Probes the APQNs of the low IDs with TAPQ: an adapter and a domain are in the configuration
  /// when a queue of theirs answers anything but rc 01.
  private func probeConfiguration() -> APMatrix {
    var apm = APMask()
    var aqm = APMask()
    for apid in 0...63 {
      for dom in 0...15 where cpu.tapq(APQN(apid, dom)).0.responseCode != .queueNotAvailable {
        apm.insert(apid)
        aqm.insert(dom)
      }
    }
    return APMatrix(apm: apm, aqm: aqm, adm: APMask())
  }

  // MARK: - Scanning

  func initialScan() {
    scanBus()
    kernel.uevent(.change, "/devices/ap", ["INITSCAN=done"])
  }

  /// `ap_scan_bus`: read the configuration; on a change tell the drivers before and after;
  /// create and remove card and queue devices to match; re-arm the timer.
  func scanBus() {
    let old = qci
    let new = cpu.qci()
    let changed = old != new
    qci = new
    if new == nil { probedConfiguration = probeConfiguration() }
    updateLimits()
    // `notify_config_changed`: every driver, before the devices change.
    if changed, let old, let new {
      for d in drivers { d.onConfigChanged(old: old, new: new) }
    }
    if apDomain < 0 || !configuration.aqm.contains(apDomain) { selectDomain() }
    for apid in 0...maxAdapterID { scanAdapter(apid) }
    // Cards beyond the limit (the limit shrank) go too.
    for apid in cards.keys where apid > maxAdapterID { removeCard(apid) }
    // `notify_scan_complete`.
    if changed, let old, let new {
      for d in drivers { d.onScanComplete(old: old, new: new) }
    }
    scanCount += 1
    checkBindingsComplete()
    nextScanTime = kernel.now + UInt64(configTime) * 1_000_000_000
  }

  /// `ap_select_domain`: the lowest usage domain in the configuration and in aqmask.
  func selectDomain() {
    let candidates = configuration.aqm.intersection(aqmask)
    apDomain = candidates.first(where: { $0 <= maxDomainID }) ?? -1
  }

  func scanAdapter(_ apid: APID) {
    let config = configuration
    guard config.apm.contains(apid) else {
      removeCard(apid)
      return
    }
    var info: TAPQInfo?
    for dom in config.aqm where dom <= maxDomainID {
      let (status, i) = cpu.tapq(APQN(apid, dom))
      if status.responseCode != .queueNotAvailable, let i {
        info = i
        break
      }
    }
    // Without APFT the type of a CEX4+ adapter cannot be read: no device.
    guard let info, info.type.isSupported, cpu.facilities.apft else {
      removeCard(apid)
      return
    }
    if let card = cards[apid], card.rawType != info.type || card.mode != info.mode {
      removeCard(apid)
    }
    let card = cards[apid] ?? createCard(apid, info)
    if card.config != info.adapterConfigured || card.chkstop != info.checkstopped {
      card.config = info.adapterConfigured
      card.chkstop = info.checkstopped
      kernel.uevent(.change, card.directory.path, ["CONFIG=\(card.config ? 1 : 0)"])
    }
    scanDomains(card)
  }

  func scanDomains(_ card: APCard) {
    let config = configuration
    for dom in 0...maxDomainID {
      let apqn = APQN(card.apid, dom)
      guard config.aqm.contains(dom) else {
        if queues[apqn.rawValue] != nil { removeQueue(apqn) }
        continue
      }
      let (status, info) = cpu.tapq(apqn)
      guard status.responseCode != .queueNotAvailable, let info else {
        if queues[apqn.rawValue] != nil { removeQueue(apqn) }
        continue
      }
      if let q = queues[apqn.rawValue] {
        // `ap_scan_domains`: checkstop or config off stops the state machine
        // (AP_DEV_STATE_ERROR); checkstop off or config on starts it over.
        let wasUsable = q.config && !q.chkstop
        q.config = info.adapterConfigured
        q.chkstop = info.checkstopped
        let usable = q.config && !q.chkstop
        if q.initialized && usable != wasUsable {
          if usable {
            initQueueState(q)
          } else {
            q.lastError = q.chkstop ? .checkstopped : .deconfigured
            waitingQueues.remove(q.apqn.rawValue)
          }
        }
      } else {
        createQueue(apqn, card: card, info: info)
      }
    }
  }

  func checkBindingsComplete() {
    let (bound, total) = bindingCounts
    if scanCount > 0 && bound == total {
      if !bindingsCompleteSent {
        bindingsCompleteSent = true
        // `ap_send_bindings_complete_uevent` counts completions, not scans.
        bindingsCompleteCount += 1
        kernel.uevent(
          .change, "/devices/ap", ["BINDINGS=complete", "COMPLETECOUNT=\(bindingsCompleteCount)"])
      }
    } else {
      bindingsCompleteSent = false
    }
  }

  /// Queue devices bound to a driver, and queue devices in all.
  public var bindingCounts: (bound: Int, total: Int) {
    // Every scan asks: a plain loop, without reading each driver's name.
    var bound = 0
    for q in queues.values where q.boundDriver != nil { bound += 1 }
    return (bound, queues.count)
  }

  /// Re-arms the periodic scan after `config_time` changed.
  func rearmTimer() { nextScanTime = kernel.now + UInt64(configTime) * 1_000_000_000 }

  // MARK: - Devices

  func createCard(_ apid: APID, _ info: TAPQInfo) -> APCard {
    let dir = devicesRoot.directory("card" + hex2(apid))
    // The serial number is the card's to report (zcrypt asks it: `serialnr`), not the bus's.
    let card = APCard(apid: apid, info: info, directory: dir, bus: self)
    cards[apid] = card
    dir.addGroup(attributes.cardGroup, owner: card)
    // `subsystem`, `driver` and the card's link in `/sys/bus/ap/devices` are computed.
    dir.provideChildren(APDeviceLinks.deviceLinks, owner: card)
    // `device_add`: the card's own variables (`dev_uevent`, `ap_uevent`), nothing else.
    kernel.deviceUEvent(.add, card.devicePath, card.ueventParts)
    attach(.card(card))
    return card
  }

  func removeCard(_ apid: APID) {
    guard let card = cards[apid] else { return }
    for dom in 0...255 { if let q = queues[apid << 8 | dom] { removeQueue(q) } }
    if card.boundDriver != nil { unbind(.card(card)) }
    // `device_del` announces the removal while the device is still there.
    kernel.deviceUEvent(.remove, card.devicePath, card.ueventParts)
    devicesRoot.remove(card.name)
    busDevices.computedChildRemoved(card.name)
    cards[apid] = nil
  }

  func createQueue(_ apqn: APQN, card: APCard, info: TAPQInfo) {
    // The card's directory serves its queues' directories from the bus's table, and a queue's
    // directory, made when first looked up, its attributes and links (``APQueue``).
    let q = APQueue(apqn: apqn, card: card)
    q.config = info.adapterConfigured
    q.chkstop = info.checkstopped
    queues[apqn.rawValue] = q
    // `device_register` in `ap_scan_domains`: the queue's own variables, nothing else.
    kernel.deviceUEvent(.add, q.devicePath, q.ueventParts)
    attach(.queue(q))
  }

  func removeQueue(_ apqn: APQN) {
    guard let q = queues[apqn.rawValue] else { return }
    removeQueue(q)
  }

  /// `ap_queue_device_unregister` of a queue in the table.
  private func removeQueue(_ q: APQueue) {
    if q.boundDriver != nil { unbind(.queue(q)) }
    // `device_del` announces the removal while the device is still there.
    kernel.deviceUEvent(.remove, q.devicePath, q.ueventParts)
    if let d = q.existingDirectory {
      q.card.directory.computedDirectoryRemoved(d)
    } else {
      q.card.directory.computedChildRemoved(q.name)
    }
    busDevices.computedChildRemoved(q.name)
    // The override goes with the device (`ap_device_release`).
    if q.driverOverride != nil { driverOverrideCount -= 1 }
    queues[q.apqn.rawValue] = nil
  }

  // MARK: - Binding

  /// `ap_bus_match`, then `ap_device_probe`'s rule: a queue with a `driver_override` binds only
  /// to that driver; otherwise reserved APQNs bind only to default drivers and the others only
  /// to non-default ones. A card binds to any driver whose ids match it.
  func matches(_ d: any APDriverOperations, _ device: APDevice) -> Bool {
    matches(DriverTraits(d), device, kind: device.kind, type: device.deviceType)
  }

  /// ``matches(_:_:)`` asked of a driver's traits; `kind` and `type` are the device's, taken
  /// once by the caller (``attach(_:)`` asks every driver of each of 65,536 queues at a
  /// full-architecture boot: taking them per driver cost it about 5%).
  func matches(_ d: DriverTraits, _ device: APDevice, kind: APDeviceID.Kind, type: AdapterType) -> Bool {
    guard d.ids.matches(kind, type) else { return false }
    guard case .queue(let q) = device else { return true }
    // The part of `ap_device_probe` that looks at a queue: the override, else the masks.
    if let o = q.driverOverride { return o == d.name }
    return d.isDefault == isReservedForHost(q.apqn)
  }

  /// `device_attach`: the first registered driver that matches binds the device.
  func attach(_ device: APDevice) {
    guard device.boundDriver == nil else { return }
    let traits = driverTraits
    let (kind, type) = (device.kind, device.deviceType)
    for i in traits.indices where matches(traits[i], device, kind: kind, type: type) {
      do {
        try bind(device, drivers[i])
        return
      } catch {
        continue
      }
    }
  }

  /// `really_probe` with `ap_device_probe`: the device gets its driver and the links, then the
  /// driver's probe runs; a probe that fails leaves the device unbound. On success the bind
  /// uevent. The links (the device's `driver`, the driver's link to the device) are computed
  /// from `boundDriver` (``APDeviceLinks``): they come and go with it.
  func bind(_ device: APDevice, _ d: any APDriverOperations) throws(Errno) {
    device.boundDriver = d
    do {
      try d.probe(device)
    } catch {
      device.boundDriver = nil
      device.childRemoved("driver")
      driverDirectories[d.driver]!.computedChildRemoved(device.name)
      throw error
    }
    kernel.deviceUEvent(.bind, device.devicePath, device.ueventParts)
  }

  /// `device_release_driver` with `ap_device_remove`: the driver's remove, then for a queue the
  /// AP bus's own (`ap_queue_remove`: flush, ZAPQ, the state machine stopped); then the links go
  /// and the unbind uevent.
  func unbind(_ device: APDevice) {
    guard let d = device.boundDriver else { return }
    d.remove(device)
    if case .queue(let q) = device {
      cpu.zapq(q.apqn)
      q.initialized = false
    }
    device.boundDriver = nil
    device.childRemoved("driver")
    // The driver's directory is found by name only when the journal records (every queue of a
    // bulk removal comes here).
    if busDevices.recordsRemovals { driverDirectories[d.driver]!.computedChildRemoved(device.name) }
    kernel.deviceUEvent(.unbind, device.devicePath, device.ueventParts)
  }

  /// `ap_queue_init_state`: a driver that drives the queue itself (zcrypt's) starts the AP
  /// bus's state machine for it, over with a reset.
  func initQueueState(_ q: APQueue) {
    q.initialized = true
    q.lastError = nil
    q.smState = .resetStart
    runStateMachine(q)
  }

  /// `reset_store`: the state machine starts over with a reset; for a queue it does not run for,
  /// the state is only set.
  func resetStore(_ q: APQueue) {
    q.smState = .resetStart
    runStateMachine(q)
  }

  /// The queues whose state machine waits for the firmware (a reset or an AQIC under way).
  private var waitingQueues: Set<Int> = []

  /// The poll (`ap_poll_tasklet`, the poll timer): every waiting queue's state machine runs
  /// again. The kernel polls a waiting queue every `poll_timeout` ns; here it is polled whenever
  /// the clock moves (``HostKernel/advance(by:)``), which is the same as long as the clock moves
  /// in steps of no less than that.
  func pollWaitingQueues() {
    guard !waitingQueues.isEmpty else { return }
    for raw in waitingQueues.sorted() {
      if let q = queues[raw] { runStateMachine(q) } else { waitingQueues.remove(raw) }
    }
  }

  /// `ap_sm_event_loop` with the poll: the state machine runs while it makes progress at this
  /// instant; a queue that waits for the firmware is polled again when the clock moves. Only for
  /// a queue a default driver drives, configured and not checkstopped (`ap_sm_event`), and not
  /// stopped by an error.
  func runStateMachine(_ q: APQueue) {
    var failed = false
    while q.initialized && q.config && !q.chkstop {
      let before = q.smState
      failed = !smStep(q)
      if failed || q.smState == before { break }
    }
    let waits =
      !failed && q.initialized && q.config && !q.chkstop
      && (q.smState == .resetWait || q.smState == .setIRQWait)
    // Most queues never wait (no reset or interrupt latency): no hashing for them.
    if waits {
      waitingQueues.insert(q.apqn.rawValue)
    } else if !waitingQueues.isEmpty {
      waitingQueues.remove(q.apqn.rawValue)
    }
  }

  /// One step of `ap_jumptable` for a poll event; false when it put the queue in the error
  /// state (`AP_DEV_STATE_ERROR`, `AP_SM_WAIT_NONE`: no poll until the next event).
  private func smStep(_ q: APQueue) -> Bool {
    switch q.smState {
    case .resetStart:
      // `ap_sm_reset`: RAPQ; 00 or 02 wait for it, anything else stops the machine.
      let rc = cpu.rapq(q.apqn).responseCode
      if rc == .normal || rc == .resetInProgress {
        q.smState = .resetWait
        q.interruptsEnabled = false
      } else {
        q.lastError = rc
        return false
      }
    case .resetWait:
      // `ap_sm_reset_wait`: TAPQ; 00 done (interruptions next, where the bus has them), 02 or
      // 05 not yet, anything else stops the machine.
      let rc = cpu.tapq(q.apqn).0.responseCode
      switch rc {
      case .normal: q.smState = enableInterrupts(q) ? .setIRQWait : .idle
      case .busy, .resetInProgress: break
      default:
        q.lastError = rc
        return false
      }
    case .setIRQWait:
      // `ap_sm_setirq_wait`: TAPQ until it shows interruptions enabled.
      let status = cpu.tapq(q.apqn).0
      if status.irqEnabled {
        q.interruptsEnabled = true
        q.smState = .idle
      }
      if status.responseCode != .normal {
        q.lastError = status.responseCode
        return false
      }
    case .idle:
      break
    }
    return true
  }

  /// `ap_queue_enable_irq` where the bus has adapter interruptions (the CPU's AQIC facility):
  /// true when the AQIC was accepted (00, 07) and the state machine is to wait for it. (A guest's
  /// AQIC is intercepted by KVM: see ``KVMVirtualCPU``.)
  private func enableInterrupts(_ q: APQueue) -> Bool {
    guard cpu.facilities.aqic else { return false }
    let rc = cpu.aqic(q.apqn, enable: true, notificationAddress: Self.summaryIndicator).responseCode
    switch rc {
    case .normal, .otherwiseChanged:
      return true
    case .queueNotAvailable, .deconfigured, .checkstopped, .invalidAddress:
      kernel.printk("ap: Registering adapter interrupts for AP device \(q.apqn) failed")
      return false
    default:
      return false
    }
  }

  /// The address of the AP bus's interruption indicator (`ap_airq_ptr`), any non-zero value.
  static let summaryIndicator: UInt64 = 0x1000

  /// `ap_bus_revise_bindings`: every queue whose reservation no longer matches the kind of
  /// driver it is bound to is re-probed (unbound, then attached to the driver that owns it now).
  func reviseBindings() {
    for raw in queues.keys.sorted() {
      guard let q = queues[raw] else { continue }
      // `__ap_revise_reserved`: an override decides alone; a queue bound elsewhere is reprobed.
      if let o = q.driverOverride {
        if let d = q.boundDriver, d.driver.name != o {
          unbind(.queue(q))
          attach(.queue(q))
        }
        continue
      }
      let reserved = isReservedForHost(q.apqn)
      if let d = q.boundDriver {
        if d.isDefault != reserved {
          unbind(.queue(q))
          attach(.queue(q))
        }
      } else {
        attach(.queue(q))
      }
    }
  }

  /// The queue devices of a card, by domain.
  public func queues(of card: APCard) -> [APQueue] {
    (0...255).compactMap { queues[APQN(card.apid, $0).rawValue] }
  }

  /// `config` of a card: SCLP configure or deconfigure the adapter, then look at it again.
  func storeCardConfig(_ card: APCard, _ on: Bool) throws(Errno) {
    // `sclp_ap_configure`/`sclp_ap_deconfigure` need the SCLP AP reconfiguration facility,
    // which an LPAR has and QEMU does not offer its guests: a guest's kernel gets EOPNOTSUPP
    // and the adapter stays as it is, for the host and every other guest.
    if on != card.config {
      do throws(SCLPAPError) {
        try cpu.sclpConfigureAdapter(card.apid, on)
      } catch .facilityNotInstalled {
        throw .notSupported
      } catch {
        throw .ioError
      }
    }
    card.config = on
    kernel.uevent(.change, card.directory.path, ["CONFIG=\(on ? 1 : 0)"])
    scanAdapter(card.apid)
  }

  // MARK: - Masks

  /// `apmask_store` / `aqmask_store`: parse against the current mask; an unchanged mask does
  /// nothing; newly reserved bits are offered to the drivers' `in_use` (EBUSY); on success the
  /// bindings are revised and the uevent sent.
  func storeMask(_ bytes: [UInt8], adapters: Bool) throws(Errno) {
    // 6.19: not while any queue has a driver_override.
    if driverOverrideCount > 0 { throw .invalidArgument }
    let current = adapters ? apmask : aqmask
    let new = try MaskParser.parse(bytes, current: current)
    guard new != current else { return }
    let reserved = new.subtracting(current)
    if !reserved.isEmpty {
      // `apmask_commit`/`aqmask_commit`: every driver's `in_use` for the newly reserved part
      // (`__verify_card_reservations`, `__verify_queue_reservations`); the first in use is
      // EBUSY. A default driver has no `in_use`.
      for d in drivers where !d.isDefault {
        let inUse = adapters ? d.inUse(apm: reserved, aqm: aqmask) : d.inUse(apm: apmask, aqm: reserved)
        if inUse { throw .resourceBusy }
      }
    }
    if adapters { apmask = new } else { aqmask = new }
    reviseBindings()
    // `ap_send_mask_changed_uevent` prints the mask with a newline, which the variable keeps.
    kernel.uevent(
      .change, "/devices/ap", [(adapters ? "APMASK=" : "AQMASK=") + new.hexString + "\n"])
  }

  /// Sets both masks at boot (module parameters) without checks.
  public func setMasksForBoot(apmask: APMask, aqmask: APMask) {
    self.apmask = apmask
    self.aqmask = aqmask
    reviseBindings()
  }

  // MARK: - Driver bind/unbind files and drivers_probe

  /// `bus_find_device_by_name`: the card or queue device of that name, exactly (`card05`,
  /// `05.0004`).
  func device(named name: String) -> APDevice? {
    if name.hasPrefix("card") {
      guard let apid = Int(name.dropFirst(4), radix: 16), let card = cards[apid], card.name == name else {
        return nil
      }
      return .card(card)
    }
    if let apqn = APQN(name), let q = queues[apqn.rawValue], q.name == name { return .queue(q) }
    return nil
  }

  /// `bind_store` of a driver: the device must exist and match the driver (`ap_bus_match`,
  /// else ENODEV); then `driver_probe_device` refuses a device that has a driver (EBUSY) before
  /// `ap_device_probe` looks at the masks and the override (ENODEV).
  func bindStore(_ d: any APDriverOperations, _ bytes: [UInt8]) throws(Errno) {
    guard let device = device(named: sysfsName(bytes)), d.matchesType(of: device) else {
      throw .noSuchDevice
    }
    if device.boundDriver != nil { throw .resourceBusy }
    guard matches(d, device) else { throw .noSuchDevice }
    try bind(device, d)
  }

  /// `unbind_store`: the device must be bound to this driver, else ENODEV.
  func unbindStore(_ d: any APDriverOperations, _ bytes: [UInt8]) throws(Errno) {
    guard let device = device(named: sysfsName(bytes)), device.boundDriver === d else {
      throw .noSuchDevice
    }
    unbind(device)
  }

  /// `drivers_probe`: attach an unbound device to whichever driver matches it now.
  func driversProbe(_ bytes: [UInt8]) throws(Errno) {
    guard let device = device(named: sysfsName(bytes)) else { throw .noSuchDevice }
    attach(device)
  }

  /// A device name as `sysfs_streq` compares it: one trailing newline ignored.
  func sysfsName(_ bytes: [UInt8]) -> String {
    var s = KernelNumber.cString(bytes)
    if s.last == UInt8(ascii: "\n") { s.removeLast() }
    return String(decoding: s, as: UTF8.self)
  }
}

/// The owner object of a driver directory's `bind`/`unbind` files.
final class APDriverHandle: SysfsOwner {
  /// What its sysfs directories hold of it, weakly (see ``SysfsOwnerToken``).
  private(set) lazy var sysfsOwnerToken = SysfsOwnerToken(owner: self)

  unowned let bus: APBus
  let driver: any APDriverOperations
  init(bus: APBus, driver: any APDriverOperations) {
    self.bus = bus
    self.driver = driver
  }
}
