import APModel
import Machine
import Sysfs
import SystemPackage

/// The AP bus (`ap_bus.c`): the card and queue devices, the permissions masks `apmask` and
/// `aqmask` that reserve APQNs for the default drivers, driver binding, and the bus scan that
/// follows the LPAR's AP configuration.
public final class APBus {
  unowned let kernel: HostKernel
  var machine: APMachine { kernel.machine }

  public private(set) var cards: [APID: APCard] = [:]
  /// Queue devices by APQN raw value.
  public private(set) var queues: [Int: APQueue] = [:]
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
  var driverDirectories: [APDriver: SysfsDirectory] = [:]
  /// The owners of the driver directories' `bind`/`unbind` (sysfs holds owners weakly).
  var driverHandles: [APDriverHandle] = []
  let attributes: APBusAttributes

  init(kernel: HostKernel) {
    self.kernel = kernel
    let tree = kernel.sysfs
    busDirectory = tree.makeDirectories("/bus/ap")
    devicesRoot = tree.makeDirectories("/devices/ap")
    busDevices = busDirectory.directory("devices")
    attributes = APBusAttributes(profile: kernel.profile)
    busDirectory.addGroup(attributes.busGroup, owner: self)
    devicesRoot.addGroup(attributes.rootGroup, owner: self)
    busDirectory.directory("drivers")
    // zcrypt's drivers are built in; vfio_ap registers its own when its module loads, so a
    // guest's kernel, which never loads it, has no `drivers/vfio_ap`.
    registerDriver(.cex4card)
    registerDriver(.cex4queue)
    qci = kernel.hasQCI ? machine.qci(kernel.authority) : nil
    updateLimits()
  }

  /// `ap_driver_register`: the driver's directory under `/sys/bus/ap/drivers`, with its `bind`
  /// and `unbind`. Only registered drivers bind devices.
  func registerDriver(_ d: APDriver) {
    guard driverDirectories[d] == nil else { return }
    let dir = busDirectory.directory("drivers").directory(d.name)
    let handle = APDriverHandle(bus: self, driver: d)
    driverHandles.append(handle)
    dir.addGroup(attributes.driverGroup, owner: handle)
    driverDirectories[d] = dir
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

  /// `ap_owned_by_def_drv`: a queue with an override belongs to the driver bound to it (a
  /// default one or not), whatever the masks say; any other APQN to the default drivers when
  /// the masks reserve it.
  public func ownedByDefaultDriver(_ apqn: APQN) -> Bool {
    if let q = queues[apqn.rawValue], q.driverOverride != nil {
      return q.driver?.isDefault ?? false
    }
    return isReservedForHost(apqn)
  }

  /// `ap_apqn_in_matrix_owned_by_def_drv`: any APQN of `apm x aqm` owned by a default driver.
  public func ownedByDefaultDriver(apm: APMask, aqm: APMask) -> Bool {
    guard driverOverrideCount > 0 else { return apm.intersects(apmask) && aqm.intersects(aqmask) }
    for apid in apm {
      for apqi in aqm where ownedByDefaultDriver(APQN(apid, apqi)) { return true }
    }
    return false
  }

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

  /// The configuration the host sees: QCI's masks (or, without QCI, the adapters and domains
  /// found by probing).
  public var configuration: APMatrix {
    if let qci { return qci.matrix }
    if case .guest(_, let apcb) = kernel.authority { return apcb }
    return machine.lparMatrix
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
    let new = kernel.hasQCI ? machine.qci(kernel.authority) : nil
    let changed = old != new
    qci = new
    updateLimits()
    if changed, let old, let new {
      kernel.vfioAP?.onConfigChanged(new: new.matrix, old: old.matrix)
    }
    if apDomain < 0 || !configuration.aqm.contains(apDomain) { selectDomain() }
    for apid in 0...maxAdapterID { scanAdapter(apid) }
    // Cards beyond the limit (the limit shrank) go too.
    for apid in cards.keys where apid > maxAdapterID { removeCard(apid) }
    if changed, let old, let new {
      kernel.vfioAP?.onScanComplete(new: new.matrix, old: old.matrix)
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
      let (status, i) = machine.tapq(APQN(apid, dom), kernel.authority)
      if status.responseCode != .queueNotAvailable, let i {
        info = i
        break
      }
    }
    // Without APFT the type of a CEX4+ adapter cannot be read: no device.
    guard let info, info.type.isSupported, kernel.hasAPFT else {
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
      let (status, info) = machine.tapq(apqn, kernel.authority)
      guard status.responseCode != .queueNotAvailable, let info else {
        if queues[apqn.rawValue] != nil { removeQueue(apqn) }
        continue
      }
      if let q = queues[apqn.rawValue] {
        q.config = info.adapterConfigured
        q.chkstop = info.checkstopped
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
    (queues.values.reduce(0) { $0 + ($1.driver != nil ? 1 : 0) }, queues.count)
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
    dir.symlink("subsystem", toAbsolute: "/bus/ap")
    busDevices.symlink(card.name, toAbsolute: dir.path)
    // `device_add`: the card's own variables (`dev_uevent`, `ap_uevent`), nothing else.
    kernel.uevent(.add, dir.path)
    bindCard(card, .cex4card)
    return card
  }

  func removeCard(_ apid: APID) {
    guard let card = cards[apid] else { return }
    for q in 0...255 where queues[APQN(apid, q).rawValue] != nil { removeQueue(APQN(apid, q)) }
    if card.driver != nil { unbindCard(card) }
    // `device_del` announces the removal while the device is still there.
    kernel.uevent(.remove, card.directory.path)
    devicesRoot.remove(card.name)
    busDevices.remove(card.name)
    cards[apid] = nil
  }

  func createQueue(_ apqn: APQN, card: APCard, info: TAPQInfo) {
    let dir = card.directory.directory(apqn.description)
    let q = APQueue(apqn: apqn, card: card, directory: dir)
    q.config = info.adapterConfigured
    q.chkstop = info.checkstopped
    queues[apqn.rawValue] = q
    dir.addGroup(attributes.queueGroup, owner: q)
    dir.symlink("subsystem", toAbsolute: "/bus/ap")
    busDevices.symlink(q.name, toAbsolute: dir.path)
    // `device_register` in `ap_scan_domains`: the queue's own variables, nothing else.
    kernel.uevent(.add, dir.path)
    attach(q)
  }

  func removeQueue(_ apqn: APQN) {
    guard let q = queues[apqn.rawValue] else { return }
    if q.driver != nil { unbind(q) }
    // `device_del` announces the removal while the device is still there.
    kernel.uevent(.remove, q.directory.path)
    q.card.directory.remove(q.name)
    busDevices.remove(q.name)
    // The override goes with the device (`ap_device_release`).
    if q.driverOverride != nil { driverOverrideCount -= 1 }
    queues[apqn.rawValue] = nil
  }

  // MARK: - Binding

  /// `ap_device_probe`'s rule: a queue with a `driver_override` binds only to that driver;
  /// otherwise reserved APQNs bind only to default drivers and the others only to non-default
  /// ones. Only CEX4+ queues have drivers at all.
  func matches(_ driver: APDriver, _ q: APQueue) -> Bool {
    guard driver.bindsQueues, q.card.type.isSupported else { return false }
    // A guest's kernel has no vfio_ap.
    if driverDirectories[driver] == nil { return false }
    if let o = q.driverOverride { return o == driver.name }
    return driver.isDefault == isReservedForHost(q.apqn)
  }

  /// `device_attach`: the first driver that matches binds the queue.
  func attach(_ q: APQueue) {
    guard q.driver == nil else { return }
    for d in [APDriver.cex4queue, .vfioAP] where matches(d, q) {
      bind(q, d)
      return
    }
  }

  func bind(_ q: APQueue, _ d: APDriver) {
    q.driver = d
    q.directory.symlink("driver", toAbsolute: "/bus/ap/drivers/" + d.name)
    driverDirectories[d]!.symlink(q.name, toAbsolute: q.directory.path)
    switch d {
    case .cex4queue:
      // `ap_queue_init_state`: the state machine starts over with a reset.
      q.initialized = true
      q.resetRequested = false
      q.online = true
      q.directory.addGroup(attributes.zcryptQueueGroup, owner: q)
      // zcrypt_cex4_queue_probe: the CCA or EP11 group by the card's function bits.
      for g in ZcryptAttributes.queueGroups(q.card.functions) { q.directory.addGroup(g, owner: q) }
    case .vfioAP:
      kernel.vfioAP?.probeQueue(q)
    case .cex4card:
      break
    }
    kernel.uevent(.bind, q.directory.path)
  }

  /// `device_release_driver`: the driver's remove, then the AP bus's own: flush and ZAPQ.
  func unbind(_ q: APQueue) {
    guard let d = q.driver else { return }
    switch d {
    case .cex4queue:
      for g in ZcryptAttributes.queueGroups(q.card.functions) { q.directory.removeGroup(g) }
      q.directory.removeGroup(attributes.zcryptQueueGroup)
    case .vfioAP:
      kernel.vfioAP?.removeQueue(q)
    case .cex4card:
      break
    }
    machine.zapq(q.apqn, kernel.authority)
    q.initialized = false
    q.driver = nil
    q.directory.remove("driver")
    driverDirectories[d]!.remove(q.name)
    kernel.uevent(.unbind, q.directory.path)
  }

  func bindCard(_ card: APCard, _ d: APDriver) {
    card.driver = d
    card.online = true
    card.directory.symlink("driver", toAbsolute: "/bus/ap/drivers/" + d.name)
    driverDirectories[d]!.symlink(card.name, toAbsolute: card.directory.path)
    card.directory.addGroup(attributes.zcryptCardGroup, owner: card)
    // zcrypt_cex4_card_probe: the CCA or EP11 group by the card's function bits.
    for g in ZcryptAttributes.cardGroups(card.functions) { card.directory.addGroup(g, owner: card) }
    kernel.uevent(.bind, card.directory.path)
  }

  func unbindCard(_ card: APCard) {
    guard let d = card.driver else { return }
    for g in ZcryptAttributes.cardGroups(card.functions) { card.directory.removeGroup(g) }
    card.directory.removeGroup(attributes.zcryptCardGroup)
    card.driver = nil
    card.directory.remove("driver")
    driverDirectories[d]!.remove(card.name)
    kernel.uevent(.unbind, card.directory.path)
  }

  /// `ap_bus_revise_bindings`: every queue whose reservation no longer matches the kind of
  /// driver it is bound to is re-probed (unbound, then attached to the driver that owns it now).
  func reviseBindings() {
    for raw in queues.keys.sorted() {
      guard let q = queues[raw] else { continue }
      // `__ap_revise_reserved`: an override decides alone; a queue bound elsewhere is reprobed.
      if let o = q.driverOverride {
        if let d = q.driver, d.name != o {
          unbind(q)
          attach(q)
        }
        continue
      }
      let reserved = isReservedForHost(q.apqn)
      if let d = q.driver {
        if d.isDefault != reserved {
          unbind(q)
          attach(q)
        }
      } else {
        attach(q)
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
    if case .guest = kernel.role, on != card.config { throw .notSupported }
    if on != card.config {
      do {
        try machine.setConfigured(card.apid, on)
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
  /// nothing; newly reserved bits are offered to vfio_ap's in-use check (EBUSY); on success the
  /// bindings are revised and the uevent sent.
  func storeMask(_ bytes: [UInt8], adapters: Bool) throws(Errno) {
    // 6.19: not while any queue has a driver_override.
    if driverOverrideCount > 0 { throw .invalidArgument }
    let current = adapters ? apmask : aqmask
    let new = try MaskParser.parse(bytes, current: current)
    guard new != current else { return }
    let reserved = new.subtracting(current)
    if !reserved.isEmpty {
      let inUse =
        adapters
        ? kernel.vfioAP?.resourceInUse(apm: reserved, aqm: aqmask) ?? false
        : kernel.vfioAP?.resourceInUse(apm: apmask, aqm: reserved) ?? false
      if inUse { throw .resourceBusy }
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

  /// `bind_store` of a driver: the device must exist and be unbound, and the driver must
  /// match it (else ENODEV; an already bound device is EBUSY).
  func bindStore(_ d: APDriver, _ bytes: [UInt8]) throws(Errno) {
    let name = sysfsName(bytes)
    if d == .cex4card {
      guard let card = cards.values.first(where: { $0.name == name }) else { throw .noSuchDevice }
      if card.driver != nil { throw .resourceBusy }
      bindCard(card, d)
      return
    }
    guard let apqn = APQN(name), let q = queues[apqn.rawValue], q.name == name else {
      throw .noSuchDevice
    }
    // `bind_store`: the bus's match (the device type) first, then `driver_probe_device`, which
    // refuses a device that has a driver (EBUSY) before the AP bus's probe looks at the masks
    // and the override (ENODEV).
    guard d.bindsQueues, q.card.type.isSupported, driverDirectories[d] != nil else { throw .noSuchDevice }
    if q.driver != nil { throw .resourceBusy }
    guard matches(d, q) else { throw .noSuchDevice }
    bind(q, d)
  }

  /// `unbind_store`: the device must be bound to this driver, else ENODEV.
  func unbindStore(_ d: APDriver, _ bytes: [UInt8]) throws(Errno) {
    let name = sysfsName(bytes)
    if d == .cex4card {
      guard let card = cards.values.first(where: { $0.name == name }), card.driver == d else {
        throw .noSuchDevice
      }
      unbindCard(card)
      return
    }
    guard let apqn = APQN(name), let q = queues[apqn.rawValue], q.name == name, q.driver == d else {
      throw .noSuchDevice
    }
    unbind(q)
  }

  /// `drivers_probe`: attach an unbound device to whichever driver matches it now.
  func driversProbe(_ bytes: [UInt8]) throws(Errno) {
    let name = sysfsName(bytes)
    if let card = cards.values.first(where: { $0.name == name }) {
      if card.driver == nil { bindCard(card, .cex4card) }
      return
    }
    guard let apqn = APQN(name), let q = queues[apqn.rawValue], q.name == name else {
      throw .noSuchDevice
    }
    attach(q)
  }

  /// A device name as `sysfs_streq` compares it: one trailing newline ignored.
  func sysfsName(_ bytes: [UInt8]) -> String {
    var s = KernelNumber.cString(bytes)
    if s.last == UInt8(ascii: "\n") { s.removeLast() }
    return String(decoding: s, as: UTF8.self)
  }
}

/// The owner object of a driver directory's `bind`/`unbind` files.
final class APDriverHandle {
  unowned let bus: APBus
  let driver: APDriver
  init(bus: APBus, driver: APDriver) {
    self.bus = bus
    self.driver = driver
  }
}
