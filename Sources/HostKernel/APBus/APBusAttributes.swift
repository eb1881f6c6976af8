import APModel
import Machine
import Sysfs
import SystemPackage

/// The sysfs attribute groups of the AP bus: `/sys/bus/ap/*`, the driver directories' `bind`
/// and `unbind`, and the attributes every card and queue device has whatever its driver.
struct APBusAttributes {
  let busGroup: SysfsAttributeGroup
  let driverGroup: SysfsAttributeGroup
  let cardGroup: SysfsAttributeGroup
  let queueGroup: SysfsAttributeGroup
  let rootGroup = SysfsAttributeGroup(APBusAttributes.rootDevice)

  /// The AP root device (`/sys/devices/ap`): on the AP bus, so not filtered, but neither
  /// `dev_uevent` nor `ap_uevent` gives it a variable.
  static let rootDevice: [SysfsAttribute] = [
    .readWrite(
      "uevent", show: { (_: APBus) in "" },
      store: { (bus: APBus, b) throws(Errno) in
        try bus.kernel.synthUEvent(
          .device(devpath: "/devices/ap", subsystem: "ap", variables: [], logName: "ap", logDriver: "ap"), b)
      })
  ]

  /// The groups of `profile`'s kernel: a newer kernel's files are not in an older one.
  init(profile: KernelProfile = .newest) {
    var busLacks: Set<String> = []
    if !profile.hasBusFeatures { busLacks.insert("features") }
    if !profile.hasBindingsCompleteCount { busLacks.insert("bindings_complete_count") }
    var queueLacks: Set<String> = []
    if !profile.hasQueueFunctions { queueLacks.insert("ap_functions") }
    if !profile.hasDriverOverride { queueLacks.insert("driver_override") }
    busGroup = SysfsAttributeGroup(Self.bus).without(busLacks)
    driverGroup = SysfsAttributeGroup([
      .writeOnly("bind") { (h: APDriverHandle, b) throws(Errno) in try h.bus.bindStore(h.driver, b) },
      .writeOnly("unbind") { (h: APDriverHandle, b) throws(Errno) in try h.bus.unbindStore(h.driver, b) },
      .writeOnly("uevent") { (h: APDriverHandle, b) throws(Errno) in
        try h.bus.kernel.synthUEvent(.driver("/bus/ap/drivers/" + h.driver.driver.name), b)
      },
    ])
    cardGroup = SysfsAttributeGroup(Self.card)
    queueGroup = SysfsAttributeGroup(Self.queue).without(queueLacks)
  }

  static func qciMask(_ bus: APBus, _ pick: (APMatrix) -> APMask) -> String {
    guard let qci = bus.qci else { return "not supported\n" }
    return pick(qci.matrix).hexString + "\n"
  }

  static let bus: [SysfsAttribute] = [
    .readWrite(
      "ap_domain", show: { (bus: APBus) in "\(bus.apDomain)\n" },
      store: { (bus: APBus, b) throws(Errno) in
        guard let d = KernelNumber.scanInt(b), d >= 0, Int(d) <= bus.maxDomainID, bus.aqmask.contains(Int(d))
        else { throw .invalidArgument }
        bus.apDomain = Int(d)
      }),
    .readOnly("ap_control_domain_mask") { (bus: APBus) in qciMask(bus) { $0.adm } },
    .readOnly("ap_usage_domain_mask") { (bus: APBus) in qciMask(bus) { $0.aqm } },
    .readOnly("ap_adapter_mask") { (bus: APBus) in qciMask(bus) { $0.apm } },
    .readWrite(
      "config_time", show: { (bus: APBus) in "\(bus.configTime)\n" },
      store: { (bus: APBus, b) throws(Errno) in
        guard let t = KernelNumber.scanInt(b, base10Only: true), (5...120).contains(t) else {
          throw .invalidArgument
        }
        bus.configTime = Int(t)
        bus.rearmTimer()
      }),
    .readWrite(
      "poll_thread", show: { (bus: APBus) in bus.pollThread ? "1\n" : "0\n" },
      store: { (bus: APBus, b) throws(Errno) in
        // `ap_poll_thread_start` starts no thread where the bus has interrupts (ap_irq_flag):
        // the write succeeds and poll_thread stays 0.
        let on = try KernelNumber.kstrtobool(b)
        bus.pollThread = on && !bus.cpu.facilities.aqic
      }),
    .readOnly("ap_interrupts") { (bus: APBus) in bus.cpu.facilities.aqic ? "1\n" : "0\n" },
    .readWrite(
      "poll_timeout", show: { (bus: APBus) in "\(bus.pollTimeout)\n" },
      store: { (bus: APBus, b) throws(Errno) in
        let v = try KernelNumber.kstrtoul(b)
        if v > 120_000_000_000 { throw .invalidArgument }
        bus.pollTimeout = v
      }),
    .readOnly("ap_max_domain_id") { (bus: APBus) in "\(bus.maxDomainID)\n" },
    .readOnly("ap_max_adapter_id") { (bus: APBus) in "\(bus.maxAdapterID)\n" },
    .readWrite(
      "apmask", show: { (bus: APBus) in bus.apmask.hexString + "\n" },
      store: { (bus: APBus, b) throws(Errno) in try bus.storeMask(b, adapters: true) }),
    .readWrite(
      "aqmask", show: { (bus: APBus) in bus.aqmask.hexString + "\n" },
      store: { (bus: APBus, b) throws(Errno) in try bus.storeMask(b, adapters: false) }),
    .readWrite(
      "scans", show: { (bus: APBus) in "\(bus.scanCount)\n" },
      store: { (bus: APBus, _) in bus.scanBus() }),
    .readOnly("bindings") { (bus: APBus) in
      let (bound, total) = bus.bindingCounts
      return bus.scanCount > 0 && bound == total ? "\(bound)/\(total) (complete)\n" : "\(bound)/\(total)\n"
    },
    .readOnly("bindings_complete_count") { (bus: APBus) in "\(bus.bindingsCompleteCount)\n" },
    .readOnly("features") { (bus: APBus) in
      guard let qci = bus.qci else { return "-\n" }
      return qci.featureNames.joined(separator: " ") + "\n"
    },
    .writeOnly("drivers_probe") { (bus: APBus, b) throws(Errno) in try bus.driversProbe(b) },
    .writeOnly("uevent") { (bus: APBus, b) throws(Errno) in try bus.kernel.synthUEvent(.bus("/bus/ap"), b) },
    .readWrite(
      "drivers_autoprobe", show: { (_: APBus) in "1\n" },
      store: { (_: APBus, b) throws(Errno) in _ = try KernelNumber.kstrtobool(b) }),
  ]

  /// `"%d\n"` of 0 or 1 from `sscanf(buf, "%d\n")`, else EINVAL.
  static func zeroOrOne(_ b: [UInt8]) throws(Errno) -> Bool {
    guard let v = KernelNumber.scanInt(b, base10Only: true), v == 0 || v == 1 else { throw .invalidArgument }
    return v == 1
  }

  static let card: [SysfsAttribute] = [
    .readOnly("hwtype") { (c: APCard) in "\(c.type.rawValue)\n" },
    .readOnly("raw_hwtype") { (c: APCard) in "\(c.rawType.rawValue)\n" },
    .readOnly("depth") { (c: APCard) in "\(c.queueDepth)\n" },
    .readOnly("ap_functions") { (c: APCard) in "0x\(padHex(Int(c.functions), 8, uppercase: true))\n" },
    .readWrite(
      "request_count", show: { (c: APCard) in "\(c.requestCount)\n" },
      store: { (c: APCard, _) in c.requestCount = 0 }),
    .readOnly("requestq_count") { (_: APCard) in "0\n" },
    .readOnly("pendingq_count") { (_: APCard) in "0\n" },
    .readOnly("modalias") { (c: APCard) in "ap:t\(padHex(c.type.rawValue, 2, uppercase: true))\n" },
    .readWrite(
      "config", show: { (c: APCard) in c.config ? "1\n" : "0\n" },
      store: { (c: APCard, b) throws(Errno) in try c.bus.storeCardConfig(c, try zeroOrOne(b)) }),
    .readOnly("chkstop") { (c: APCard) in c.chkstop ? "1\n" : "0\n" },
    .readOnly("max_msg_size") { (c: APCard) in "\(c.maxMessageSize)\n" },
    .readWrite(
      "uevent", show: { (c: APCard) in HostKernel.ueventText(c.ueventVariables) },
      store: { (c: APCard, b) throws(Errno) in try c.bus.kernel.synthUEvent(c.ueventObject, b) }),
  ]

  static let queue: [SysfsAttribute] = [
    .readWrite(
      "request_count", show: { (q: APQueue) in q.initialized ? "\(q.requestCount)\n" : "-\n" },
      store: { (q: APQueue, _) in q.requestCount = 0 }),
    .readOnly("requestq_count") { (q: APQueue) in q.initialized ? "0\n" : "-\n" },
    .readOnly("pendingq_count") { (q: APQueue) in q.initialized ? "0\n" : "-\n" },
    .readWrite(
      "reset", show: { (q: APQueue) in q.resetRequested ? "Reset in progress.\n" : "No Reset Timer set.\n" },
      store: { (q: APQueue, _) in q.card.bus.resetStore(q) }),
    .readOnly("interrupt") { (q: APQueue) in
      if q.smState == .setIRQWait { return "Enable Interrupt pending.\n" }
      return q.initialized && q.interruptsEnabled ? "Interrupts enabled.\n" : "Interrupts disabled.\n"
    },
    .readOnly("config") { (q: APQueue) in q.config ? "1\n" : "0\n" },
    .readOnly("chkstop") { (q: APQueue) in q.chkstop ? "1\n" : "0\n" },
    .readOnly("ap_functions") { (q: APQueue) in "0x\(padHex(Int(q.card.functions), 8, uppercase: true))\n" },
    .readWrite(
      "driver_override", show: { (q: APQueue) in (q.driverOverride ?? "") + "\n" },
      store: { (q: APQueue, b) throws(Errno) in try q.card.bus.storeDriverOverride(q, b) }),
    .readWrite(
      "uevent", show: { (q: APQueue) in HostKernel.ueventText(q.ueventVariables) },
      store: { (q: APQueue, b) throws(Errno) in try q.card.bus.kernel.synthUEvent(q.ueventObject, b) }),
  ]
}
