import APModel

/// The emulated IBM Z firmware as far as AP goes: the LPAR's AP configuration, the adapters'
/// state, every queue's contents, and the AP instructions checked against an ``APAuthority``.
///
/// A plain class without a lock of its own: the host that owns it serialises every call under
/// its one lock (see ARCHITECTURE.md), exactly as the real hardware is entered by one CPU at a
/// time per instruction.
public final class APMachine {
  /// The current state of one adapter in the LPAR's configuration.
  public struct AdapterState: Hashable, Sendable {
    public var definition: MachineDefinition.Adapter
    /// SCLP configured (a deconfigured adapter stays in QCI's APM but answers rc 03).
    public var configured: Bool
    public var checkstopped: Bool
    /// How long a reset of one of its queues takes now (ns); from the definition, changed by
    /// ``setLatency(_:reset:irq:)``.
    public var resetLatency: UInt64
    /// How long enabling interruptions on one of its queues takes now (ns).
    public var irqLatency: UInt64

    init(definition: MachineDefinition.Adapter, configured: Bool, checkstopped: Bool) {
      self.definition = definition
      self.configured = configured
      self.checkstopped = checkstopped
      resetLatency = definition.resetLatency
      irqLatency = definition.irqLatency
    }
  }

  /// A response code injected by the operator (`apvirt hw fault`) for the next resets of a queue
  /// or of every queue of an adapter.
  public enum Fault: String, Hashable, Sendable, CaseIterable {
    /// The reset answers rc 05 and does nothing.
    case busy
    /// The reset answers rc 02: one was under way already, and the queue is reset.
    case resetInProgress = "reset-in-progress"
    /// The reset is accepted (rc 00) and the adapter checkstops while it runs: from then on
    /// every instruction for its queues answers rc 04.
    case checkstopDuringReset = "checkstop-during-reset"
  }

  /// What a fault is injected for: one queue, or every queue of an adapter.
  public enum FaultTarget: Hashable, Sendable, CustomStringConvertible {
    case queue(APQN)
    case adapter(APID)
    public var description: String {
      switch self {
      case .queue(let q): "queue \(q)"
      case .adapter(let a): "adapter \(hexID(a))"
      }
    }
  }

  /// An injected fault and how many resets it still answers.
  public struct InjectedFault: Hashable, Sendable {
    public var fault: Fault
    public var remaining: Int
    public init(fault: Fault, remaining: Int) {
      self.fault = fault
      self.remaining = remaining
    }
  }

  public let definition: MachineDefinition
  /// Adapters in the LPAR's configuration, by APID.
  public private(set) var adapters: [APID: AdapterState] = [:] {
    didSet { gatesStale = true }
  }
  /// What an instruction needs of each adapter in ``adapters``, by APID (nil where there is
  /// none), rebuilt at the first instruction after ``adapters`` changed: instructions only read
  /// it, and a boot of the full architecture runs hundreds of thousands of them, each of which
  /// would otherwise hash the APID and copy the adapter's whole state (its definition with its
  /// keys and domains) out of the dictionary several times. Rebuilt lazily so that a bulk change
  /// (255 adapters added, then one scan) rebuilds it once.
  private var gates: [AdapterGate?] = []
  /// Whether ``adapters`` changed since ``gates`` was built.
  private var gatesStale = true

  /// An adapter as the instructions see it: what TAPQ reports, and its latencies.
  private struct AdapterGate {
    var info: TAPQInfo
    var resetLatency: UInt64
    var irqLatency: UInt64
  }
  public private(set) var usageDomains: APMask
  public private(set) var controlDomains: APMask
  /// Queue state, created on first use.
  private var queues = APQueueTable()
  /// Bumped on every change of the LPAR's configuration (what QCI answers).
  public private(set) var configGeneration = 0
  /// Accesses by one owner to a queue that still held another owner's state, which a correct
  /// host never allows (it zeroizes a queue before it changes hands). Tests assert it stays empty.
  public private(set) var leaks: [(APQN, from: APQueueOwner, to: APQueueOwner)] = []
  /// Counters per instruction, by ``APInstruction``: counting is a store into a fixed slot, as
  /// every instruction of a boot counts.
  private var counts = [Int](repeating: 0, count: APInstruction.allCases.count)
  /// Counters per instruction by mnemonic (`"ZAPQ"`), for tests and benchmarks: only the
  /// instructions executed at least once.
  public var instructionCounts: [String: Int] {
    var result: [String: Int] = [:]
    for i in APInstruction.allCases where counts[i.slot] > 0 { result[i.rawValue] = counts[i.slot] }
    return result
  }
  /// The machine's clock (ns): the host kernel's injected time, which the host moves forward
  /// (``advanceClock(to:)``); resets and interrupt enabling complete against it.
  public private(set) var now: UInt64 = 0
  /// Faults injected by the operator, by target.
  public private(set) var faults: [FaultTarget: InjectedFault] = [:]

  public init(definition: MachineDefinition) {
    self.definition = definition
    for a in definition.adapters {
      adapters[a.apid] = AdapterState(definition: a, configured: a.configured, checkstopped: false)
    }
    usageDomains = definition.usageDomains
    controlDomains = definition.controlDomains
  }

  private static func gates(of adapters: [APID: AdapterState], apxa: Bool) -> [AdapterGate?] {
    var gates = [AdapterGate?](repeating: nil, count: (adapters.keys.max() ?? -1) + 1)
    for (apid, a) in adapters where apid >= 0 {
      let d = a.definition
      let info = TAPQInfo(
        type: d.type, mode: d.mode, functions: d.mode.functions(apxa: apxa), queueDepth: d.queueDepth, ml: 0,
        adapterConfigured: a.configured, checkstopped: a.checkstopped)
      gates[apid] = AdapterGate(info: info, resetLatency: a.resetLatency, irqLatency: a.irqLatency)
    }
    return gates
  }

  /// The adapter `apid` as the instructions see it, or nil when it is not in the configuration.
  private func gate(_ apid: APID) -> AdapterGate? {
    if gatesStale {
      gates = Self.gates(of: adapters, apxa: definition.apxa)
      gatesStale = false
    }
    return apid >= 0 && apid < gates.count ? gates[apid] : nil
  }

  // MARK: - QCI

  /// The LPAR's configuration: what QCI answers the host.
  public var lparMatrix: APMatrix {
    APMatrix(apm: APMask(adapters.keys), aqm: usageDomains, adm: controlDomains)
  }

  /// PQAP(QCI). Nil when the QCI facility is not installed.
  public func qci(_ authority: APAuthority) -> QCIInfo? {
    count(.qci)
    guard definition.facilities.qci else { return nil }
    let matrix: APMatrix
    switch authority {
    case .lpar: matrix = lparMatrix
    case .guest(_, let apcb): matrix = apcb
    }
    return QCIInfo(apxa: definition.apxa, na: definition.na, nd: definition.nd, matrix: matrix)
  }

  // MARK: - Reachability

  /// The response code an instruction for `apqn` gets before it touches the queue: rc 01 when
  /// the APQN is outside the authority's view or the LPAR's configuration, 03 deconfigured,
  /// 04 checkstopped; nil when it may proceed.
  func reach(_ apqn: APQN, _ authority: APAuthority) -> APResponseCode? {
    if case .guest(_, let apcb) = authority, !apcb.contains(apqn) { return .queueNotAvailable }
    guard let a = gate(apqn.apid)?.info, usageDomains.contains(apqn.apqi) else { return .queueNotAvailable }
    if !a.adapterConfigured { return .deconfigured }
    if a.checkstopped { return .checkstopped }
    return nil
  }

  /// Moves the clock forward (a time in the past is ignored: the guests share the machine and
  /// the host's clock, and none may move it back).
  public func advanceClock(to time: UInt64) { if time > now { now = time } }

  /// Whether a reset started on the queue has not completed yet.
  private func resetRunning(_ q: APQueueState) -> Bool {
    if let t = q.resetCompletesAt { return now < t }
    return false
  }

  /// Whether interruptions are enabled and the enabling has completed.
  private func interruptsOn(_ q: APQueueState) -> Bool {
    guard q.interruptsEnabled else { return false }
    if let t = q.interruptsEnabledAt { return now >= t }
    return true
  }

  /// Takes one use of the fault injected for `apqn` (its own before its adapter's).
  private func takeFault(_ apqn: APQN) -> Fault? {
    // Nearly always none is injected: no lookup then.
    guard !faults.isEmpty else { return nil }
    return takeFault(.queue(apqn)) ?? takeFault(.adapter(apqn.apid))
  }

  /// Takes one use of the fault injected for `target`, if any.
  private func takeFault(_ target: FaultTarget) -> Fault? {
    guard var f = faults[target] else { return nil }
    f.remaining -= 1
    faults[target] = f.remaining > 0 ? f : nil
    return f.fault
  }

  /// What a reset (ZAPQ or RAPQ) answers before it touches the queue: an injected busy, or
  /// rc 02 while a reset is under way (`running`); `started` tells whether the reset then goes
  /// ahead. An injected checkstop stops the adapter once the reset is accepted.
  private func beginReset(_ apqn: APQN, _ running: Bool) -> (code: APResponseCode, started: Bool) {
    if running { return (.resetInProgress, false) }
    switch takeFault(apqn) {
    case .busy: return (.busy, false)
    case .resetInProgress: return (.resetInProgress, true)
    case .checkstopDuringReset:
      adapters[apqn.apid]?.checkstopped = true
      return (.normal, true)
    case nil: return (.normal, true)
    }
  }

  /// The reset latency of the queue's adapter from now: when its reset completes.
  private func resetDeadline(_ apqn: APQN) -> UInt64? {
    let latency = gate(apqn.apid)?.resetLatency ?? 0
    return latency > 0 ? now + latency : nil
  }

  /// Records a leak when `authority` reaches a queue that holds another owner's state.
  private func touch(_ apqn: APQN, _ authority: APAuthority) {
    let who = authority.owner
    if let previous = queues.read(apqn, { $0.owner }), previous != who {
      leaks.append((apqn, from: previous, to: who))
    }
  }

  private func count(_ instruction: APInstruction) { counts[instruction.slot] += 1 }

  // MARK: - AP instructions

  /// TAPQ: test the queue.
  public func tapq(_ apqn: APQN, _ authority: APAuthority) -> (APQueueStatus, TAPQInfo?) {
    count(.tapq)
    if let rc = reach(apqn, authority) {
      if rc == .queueNotAvailable { return (.rc(rc), nil) }
      return (.rc(rc), info(apqn))
    }
    let info = info(apqn)
    let status = queues.read(apqn) { q in
      if resetRunning(q) { return APQueueStatus(queueEmpty: true, responseCode: .resetInProgress) }
      return APQueueStatus(
        queueEmpty: q.isEmpty, repliesWaiting: !q.replies.isEmpty,
        queueFull: q.requests.count + q.replies.count >= info!.queueDepth, irqEnabled: interruptsOn(q))
    }
    return (status, info)
  }

  func info(_ apqn: APQN) -> TAPQInfo? {
    gate(apqn.apid)?.info
  }

  /// ZAPQ: reset and zeroize. Takes the adapter's reset latency (at once by default): until it
  /// has passed, TAPQ answers rc 02, and so does another reset. An injected fault answers first.
  @discardableResult
  public func zapq(_ apqn: APQN, _ authority: APAuthority) -> APQueueStatus {
    count(.zapq)
    if let rc = reach(apqn, authority) { return .rc(rc) }
    let (code, started) = beginReset(apqn, queues.read(apqn) { resetRunning($0) })
    guard started else { return .rc(code) }
    let deadline = resetDeadline(apqn)
    queues.update(apqn) { q in
      q.requests.removeAll()
      q.replies.removeAll()
      q.interruptsEnabled = false
      q.interruptsEnabledAt = nil
      q.notificationAddress = 0
      q.owner = nil
      q.zeroizeCount += 1
      q.resetCompletesAt = deadline
    }
    return APQueueStatus(responseCode: code)
  }

  /// RAPQ: reset without zeroizing: messages go, the owner's residual state stays.
  @discardableResult
  public func rapq(_ apqn: APQN, _ authority: APAuthority) -> APQueueStatus {
    count(.rapq)
    if let rc = reach(apqn, authority) { return .rc(rc) }
    touch(apqn, authority)
    let (code, started) = beginReset(apqn, queues.read(apqn) { resetRunning($0) })
    guard started else { return .rc(code) }
    let deadline = resetDeadline(apqn)
    queues.update(apqn) { q in
      q.requests.removeAll()
      q.replies.removeAll()
      q.interruptsEnabled = false
      q.interruptsEnabledAt = nil
      q.resetCompletesAt = deadline
    }
    return APQueueStatus(responseCode: code)
  }

  /// AQIC: enable or disable interruptions. Enabling needs a notification address (else rc 06)
  /// and the AQIC facility, and takes the adapter's interrupt latency (at once by default):
  /// until it has passed, TAPQ shows interruptions still disabled. During a reset, rc 02.
  public func aqic(_ apqn: APQN, enable: Bool, notificationAddress: UInt64, _ authority: APAuthority)
    -> APQueueStatus
  {
    count(.aqic)
    guard definition.facilities.aqic else { return .rc(.requiredFacilityNotInstalled) }
    if let rc = reach(apqn, authority) { return .rc(rc) }
    if enable && notificationAddress == 0 { return .rc(.invalidAddress) }
    if queues.read(apqn, { resetRunning($0) }) { return .rc(.resetInProgress) }
    let latency = gate(apqn.apid)!.irqLatency
    let enabledAt = enable && latency > 0 ? now + latency : nil
    let q = queues.update(apqn) { q in
      q.interruptsEnabled = enable
      q.interruptsEnabledAt = enabledAt
      q.notificationAddress = enable ? notificationAddress : 0
      return q
    }
    return APQueueStatus(queueEmpty: q.isEmpty, irqEnabled: interruptsOn(q))
  }

  /// NQAP: enqueue a request. The adapter answers at once (``APTestService``); a queue with
  /// `depth` replies not yet dequeued answers rc 10 (queue full).
  public func nqap(_ apqn: APQN, psmid: UInt64, payload: [UInt8], _ authority: APAuthority)
    -> APQueueStatus
  {
    count(.nqap)
    if let rc = reach(apqn, authority) { return .rc(rc) }
    touch(apqn, authority)
    let current = queues[apqn]
    if resetRunning(current) { return .rc(.resetInProgress) }
    let depth = gate(apqn.apid)!.info.queueDepth
    if current.replies.count + current.requests.count >= depth { return .rc(.queueFull) }
    let reply = APQueueState.Message(psmid: psmid, payload: APTestService.reply(to: payload, on: apqn))
    let owner = authority.owner
    queues.update(apqn) { q in
      q.replies.append(reply)
      q.owner = owner
    }
    return APQueueStatus(queueEmpty: false, repliesWaiting: true, irqEnabled: current.interruptsEnabled)
  }

  /// DQAP: dequeue the oldest reply; rc 10 when none is pending.
  public func dqap(_ apqn: APQN, _ authority: APAuthority) -> (APQueueStatus, APQueueState.Message?) {
    count(.dqap)
    if let rc = reach(apqn, authority) { return (.rc(rc), nil) }
    touch(apqn, authority)
    let current = queues[apqn]
    if resetRunning(current) { return (.rc(.resetInProgress), nil) }
    guard !current.replies.isEmpty else { return (.rc(.noPendingReply), nil) }
    return queues.update(apqn) { q in
      let m = q.replies.removeFirst()
      return (APQueueStatus(queueEmpty: q.isEmpty, repliesWaiting: !q.replies.isEmpty), m)
    }
  }

  // MARK: - Coprocessor information requests

  /// The adapter behind `apqn` when a request sent to it is processed (the APQN is reachable
  /// for `authority`) and the adapter is in `mode`; nil otherwise.
  private func coprocessor(_ apqn: APQN, _ mode: AdapterMode, _ authority: APAuthority)
    -> MachineDefinition.Adapter?
  {
    guard reach(apqn, authority) == nil, let a = adapters[apqn.apid], a.definition.mode == mode else {
      return nil
    }
    return a.definition
  }

  /// A CCA Query Crypto Facility (STATICSA, STATICSB) sent to `apqn`: the card's serial number
  /// and the domain's master keys. Nil when the request cannot be processed.
  public func ccaQueryCryptoFacility(_ apqn: APQN, _ authority: APAuthority)
    -> (serial: String, masterKeys: CCAMasterKeys)?
  {
    guard let a = coprocessor(apqn, .cca, authority) else { return nil }
    return (a.serial, a.masterKeys[apqn.apqi])
  }

  /// An EP11 module query sent to `apqn`: the card's serial number and module information.
  public func ep11ModuleQuery(_ apqn: APQN, _ authority: APAuthority)
    -> (serial: String, module: EP11ModuleInfo)?
  {
    guard let a = coprocessor(apqn, .ep11, authority) else { return nil }
    return (a.serial, a.ep11Module)
  }

  /// An EP11 domain query sent to `apqn`: the domain's wrapping keys and operational modes.
  public func ep11DomainQuery(_ apqn: APQN, _ authority: APAuthority) -> EP11DomainInfo? {
    coprocessor(apqn, .ep11, authority)?.ep11Domains[apqn.apqi]
  }

  /// The queues that hold someone's state, ascending.
  public var ownedQueues: [(APQN, APQueueOwner)] { queues.owned }

  /// The state of a queue, for tests and the CLI.
  public func queueState(_ apqn: APQN) -> APQueueState { queues[apqn] }

  // MARK: - Hardware operations (HMC/SE, SCLP)

  /// SCLP configure / deconfigure of an adapter (what `config` in sysfs does).
  public func setConfigured(_ apid: APID, _ configured: Bool) throws(MachineOperationError) {
    try checkAdapterRange(apid)
    guard var a = adapters[apid] else { throw .noSuchAdapter(apid) }
    a.configured = configured
    adapters[apid] = a
    if !configured { dropQueues(apid: apid) }
  }

  /// Puts an adapter into or out of the checkstopped state. While checkstopped its queues
  /// answer rc 04 to everything, ZAPQ included, so they keep what they held; recovery resets the
  /// adapter, and that clears them.
  public func setCheckstopped(_ apid: APID, _ stopped: Bool) throws(MachineOperationError) {
    try checkAdapterRange(apid)
    guard var a = adapters[apid] else { throw .noSuchAdapter(apid) }
    if a.checkstopped && !stopped { dropQueues(apid: apid) }
    a.checkstopped = stopped
    adapters[apid] = a
  }

  /// Sets an adapter's reset and/or interrupt latency (ns); nil leaves one as it is. Resets and
  /// enablings already under way keep the time they were given.
  public func setLatency(_ apid: APID, reset: UInt64?, irq: UInt64?) throws(MachineOperationError) {
    try checkAdapterRange(apid)
    guard var a = adapters[apid] else { throw .noSuchAdapter(apid) }
    if let reset { a.resetLatency = reset }
    if let irq { a.irqLatency = irq }
    adapters[apid] = a
  }

  /// Injects `fault` for the next `count` resets of `target`'s queues (replacing a fault
  /// injected there before).
  public func injectFault(_ fault: Fault, on target: FaultTarget, count: Int) throws(MachineOperationError) {
    let apid: APID
    switch target {
    case .queue(let q):
      apid = q.apid
      try checkDomainRange(q.apqi)
    case .adapter(let a): apid = a
    }
    try checkAdapterRange(apid)
    guard adapters[apid] != nil else { throw .noSuchAdapter(apid) }
    if case .queue(let q) = target, !usageDomains.contains(q.apqi) {
      throw .notPresent("usage domain", q.apqi)
    }
    guard count > 0 else { throw .invalidCount(count) }
    faults[target] = InjectedFault(fault: fault, remaining: count)
  }

  /// Clears the fault injected for `target`; returns it, or nil when there was none.
  @discardableResult
  public func clearFault(on target: FaultTarget) -> InjectedFault? { faults.removeValue(forKey: target) }

  /// Adds an adapter to the LPAR's configuration (a dynamic change on the HMC).
  public func addAdapter(_ adapter: MachineDefinition.Adapter) throws(MachineOperationError) {
    try checkAdapterRange(adapter.apid)
    guard adapters[adapter.apid] == nil else { throw .alreadyPresent("adapter", adapter.apid) }
    adapters[adapter.apid] = AdapterState(
      definition: adapter, configured: adapter.configured, checkstopped: false)
    configGeneration += 1
  }

  public func removeAdapter(_ apid: APID) throws(MachineOperationError) {
    try checkAdapterRange(apid)
    guard adapters.removeValue(forKey: apid) != nil else { throw .noSuchAdapter(apid) }
    dropQueues(apid: apid)
    configGeneration += 1
  }

  public func addUsageDomain(_ apqi: APQI) throws(MachineOperationError) {
    try checkDomainRange(apqi)
    guard !usageDomains.contains(apqi) else { throw .alreadyPresent("usage domain", apqi) }
    usageDomains.insert(apqi)
    configGeneration += 1
  }

  public func removeUsageDomain(_ apqi: APQI) throws(MachineOperationError) {
    try checkDomainRange(apqi)
    guard usageDomains.contains(apqi) else { throw .notPresent("usage domain", apqi) }
    usageDomains.remove(apqi)
    for apid in adapters.keys { queues.clear(APQN(apid, apqi)) }
    configGeneration += 1
  }

  public func addControlDomain(_ apqi: APQI) throws(MachineOperationError) {
    try checkDomainRange(apqi)
    guard !controlDomains.contains(apqi) else { throw .alreadyPresent("control domain", apqi) }
    controlDomains.insert(apqi)
    configGeneration += 1
  }

  public func removeControlDomain(_ apqi: APQI) throws(MachineOperationError) {
    try checkDomainRange(apqi)
    guard controlDomains.contains(apqi) else { throw .notPresent("control domain", apqi) }
    controlDomains.remove(apqi)
    configGeneration += 1
  }

  /// Refuses an adapter number beyond the machine's Na.
  public func checkAdapterRange(_ apid: APID) throws(MachineOperationError) {
    guard (0...definition.na).contains(apid) else { throw .outOfRange("adapter", apid, definition.na) }
  }

  /// Refuses a domain number beyond the machine's Nd.
  public func checkDomainRange(_ apqi: APQI) throws(MachineOperationError) {
    guard (0...definition.nd).contains(apqi) else { throw .outOfRange("domain", apqi, definition.nd) }
  }

  /// Queues of an adapter that leaves the configuration lose their contents: the hardware
  /// clears them when it deconfigures the adapter.
  private func dropQueues(apid: APID) {
    for q in 0...255 { queues.clear(APQN(apid, q)) }
  }
}

/// A hardware operation that does not apply to the machine as it is. Adapters and domains are
/// named in 0x-hex, two digits (`adapter 0x63`, `domain 0x07`), as the masks in sysfs are.
public enum MachineOperationError: Error, Hashable, Sendable, CustomStringConvertible {
  case noSuchAdapter(APID)
  /// What (`adapter`, `domain`), the number, the machine's highest (Na or Nd).
  case outOfRange(String, Int, Int)
  case alreadyPresent(String, Int)
  case notPresent(String, Int)
  /// A fault's count that is not at least 1.
  case invalidCount(Int)

  public var description: String {
    switch self {
    case .noSuchAdapter(let a):
      "adapter \(hexID(a)) is not in the LPAR's configuration (`apvirt status` lists its adapters)"
    case .outOfRange(let what, let v, let max):
      "\(what) \(hexID(v)) is out of range: this machine's \(what)s are 0x00-\(hexID(max)) (its \(what == "adapter" ? "Na" : "Nd"))"
    case .alreadyPresent(let what, let v): "\(what) \(hexID(v)) is already in the LPAR's configuration"
    case .notPresent(let what, let v): "\(what) \(hexID(v)) is not in the LPAR's configuration"
    case .invalidCount(let n): "a fault's count must be at least 1, not \(n)"
    }
  }
}

/// `0x05`, `0xab`: an adapter or domain number as messages name it.
public func hexID(_ value: Int) -> String { "0x" + padHex(value, 2) }
