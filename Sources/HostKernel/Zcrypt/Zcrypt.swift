import APModel
import Machine
import Sysfs
import SystemPackage

/// zcrypt (`zcrypt_api.c`): the cards and queues its drivers hold (`zcrypt_card_list`, each
/// card's `zqueues`), with their online switches, and the two drivers of `zcrypt_cex4.c` that
/// put them there. The AP bus knows none of this: it calls the drivers' operations.
final class Zcrypt: SysfsOwner {
  /// What its sysfs directories hold of it, weakly (see ``SysfsOwnerToken``).
  private(set) lazy var sysfsOwnerToken = SysfsOwnerToken(owner: self)

  /// The kernel and its bus, which make zcrypt at boot and hold it as long as they live.
  /// Unchecked (`unowned(unsafe)`), as the bus's own reference to the kernel: the queue probe
  /// reaches the bus for each of the 65,536 queues of a full architecture.
  unowned(unsafe) let kernel: HostKernel
  unowned(unsafe) let bus: APBus

  /// The cards bound to `cex4card`, by adapter.
  private(set) var cards: [APID: ZcryptCard] = [:]
  /// The queues bound to `cex4queue`, by APQN raw value (dense: a full-architecture boot
  /// probes 65,536).
  private(set) var queues = APQNTable<ZcryptQueue>()
  private(set) var cardDriver: CEX4CardDriver!
  private(set) var queueDriver: CEX4QueueDriver!

  /// `zcrypt_api_init` and `zcrypt_cex4_init`: zcrypt is built in, so its drivers register as
  /// the kernel boots, the card driver first.
  init(kernel: HostKernel) {
    self.kernel = kernel
    bus = kernel.apBus
    cardDriver = CEX4CardDriver(zcrypt: self)
    queueDriver = CEX4QueueDriver(zcrypt: self)
    kernel.apBus.registerDriver(cardDriver)
    kernel.apBus.registerDriver(queueDriver)
  }

  func card(_ apid: APID) -> ZcryptCard? { cards[apid] }
  func queue(_ apqn: APQN) -> ZcryptQueue? { queues[apqn.rawValue] }

  /// The queues zcrypt holds on an adapter.
  func queues(of apid: APID) -> [ZcryptQueue] {
    (0...255).compactMap { queues[APQN(apid, $0).rawValue] }
  }

  /// `zcrypt_cex4_card_probe`: the card joins zcrypt online (`zcrypt_card_register`) with
  /// zcrypt's attributes, and the CCA or EP11 group by the card's function bits.
  func probeCard(_ card: APCard) {
    let zc = ZcryptCard(card: card, zcrypt: self)
    cards[card.apid] = zc
    card.directory.addGroup(ZcryptAttributes.cardGroup, owner: zc)
    for g in ZcryptAttributes.cardGroups(card.functions) { card.directory.addGroup(g, owner: zc) }
  }

  /// `zcrypt_cex4_card_remove`: the CCA or EP11 group, then `zcrypt_card_unregister`.
  func removeCard(_ card: APCard) {
    for g in ZcryptAttributes.cardGroups(card.functions) { card.directory.removeGroup(g) }
    card.directory.removeGroup(ZcryptAttributes.cardGroup)
    cards[card.apid] = nil
  }

  /// `zcrypt_cex4_queue_probe`: the AP bus's state machine starts for the queue
  /// (`ap_queue_init_state`), which joins zcrypt online (`zcrypt_queue_register`) with zcrypt's
  /// attributes and the CCA or EP11 group by the card's function bits. The groups are served
  /// from this table when the queue's directory is looked up (``attributeGroups(_:)``): the probe
  /// itself only records the queue, once for each of the 65,536 of a full architecture.
  func probeQueue(_ q: APQueue) {
    bus.initQueueState(q)
    queues[q.apqn.rawValue] = ZcryptQueue(queue: q, registeredCard: cards[q.apqn.apid])
  }

  /// `zcrypt_cex4_queue_remove`: the CCA or EP11 group, then `zcrypt_queue_unregister`.
  func removeQueue(_ q: APQueue) {
    for g in ZcryptAttributes.queueGroups(q.card.functions) { q.groupRemoved(g) }
    q.groupRemoved(ZcryptAttributes.queueGroup)
    queues[q.apqn.rawValue] = nil
  }

  /// The groups `zcrypt_cex4_queue_probe` gave a queue zcrypt holds: zcrypt's own, then the CCA
  /// or EP11 group, each showing zcrypt's record of the queue.
  func attributeGroups(_ q: APQueue) -> [SysfsBoundGroup] {
    guard let zq = queues[q.apqn.rawValue] else { return [] }
    return [SysfsBoundGroup(ZcryptAttributes.queueGroup, owner: zq)]
      + ZcryptAttributes.queueGroups(q.card.functions).map { SysfsBoundGroup($0, owner: zq) }
  }
}

/// What zcrypt keeps of a card it drives (`struct zcrypt_card`).
final class ZcryptCard: SysfsOwner {
  /// What its sysfs directories hold of it, weakly (see ``SysfsOwnerToken``).
  private(set) lazy var sysfsOwnerToken = SysfsOwnerToken(owner: self)

  unowned let card: APCard
  unowned let zcrypt: Zcrypt
  /// zcrypt's online switch (`online` shows config && !chkstop && this). New cards are online.
  var online = true

  init(card: APCard, zcrypt: Zcrypt) {
    self.card = card
    self.zcrypt = zcrypt
  }
}

/// What zcrypt keeps of a queue it drives (`struct zcrypt_queue`).
final class ZcryptQueue {
  /// The queue device (held strongly: the device holds nothing of zcrypt's).
  let queue: APQueue
  /// The card zcrypt had for the queue's adapter when the queue joined (`zq->zcard`).
  let registeredCard: ZcryptCard?
  /// zcrypt's online switch for the queue. New queues are online.
  var online = true

  init(queue: APQueue, registeredCard: ZcryptCard?) {
    self.queue = queue
    self.registeredCard = registeredCard
  }

  /// zcrypt, reached through the device's kernel (a reference of its own would cost each of
  /// 65,536 records an unowned count).
  var zcrypt: Zcrypt { queue.card.bus.kernel.zcrypt }

  /// The zcrypt card of the queue's adapter: the one zcrypt has now, or, while the card is
  /// unbound from `cex4card`, the one the queue joined.
  var zcard: ZcryptCard? { zcrypt.card(queue.apqn.apid) ?? registeredCard }
}

/// zcrypt's card driver (`zcrypt_cex4_card_driver`): a default driver for CEX4+ cards.
final class CEX4CardDriver: APDriverOperations {
  /// zcrypt, which makes its drivers and lives as long as they are registered (unchecked, as
  /// zcrypt's own references).
  unowned(unsafe) let zcrypt: Zcrypt
  init(zcrypt: Zcrypt) { self.zcrypt = zcrypt }

  let driver = APDriver.cex4card
  let isDefault = true
  let ids = APDeviceID.cex4Onwards(.card)

  func probe(_ device: APDevice) throws(Errno) {
    guard case .card(let card) = device else { throw .noSuchDevice }
    zcrypt.probeCard(card)
  }

  func remove(_ device: APDevice) {
    if case .card(let card) = device { zcrypt.removeCard(card) }
  }
}

/// zcrypt's queue driver (`zcrypt_cex4_queue_driver`): a default driver for CEX4+ queues.
final class CEX4QueueDriver: APDriverOperations {
  /// zcrypt (unchecked, as the card driver's).
  unowned(unsafe) let zcrypt: Zcrypt
  init(zcrypt: Zcrypt) { self.zcrypt = zcrypt }

  let driver = APDriver.cex4queue
  let isDefault = true
  let ids = APDeviceID.cex4Onwards(.queue)

  func probe(_ device: APDevice) throws(Errno) {
    guard case .queue(let q) = device else { throw .noSuchDevice }
    zcrypt.probeQueue(q)
  }

  func remove(_ device: APDevice) {
    if case .queue(let q) = device { zcrypt.removeQueue(q) }
  }

  func queueGroups(_ q: APQueue) -> [SysfsBoundGroup] { zcrypt.attributeGroups(q) }
}

// What the rest of the system reads of zcrypt's switches through the devices.
extension APCard {
  /// zcrypt's online switch for the card; true while zcrypt does not drive it (it has none).
  public var online: Bool { bus.kernel.zcrypt.card(apid)?.online ?? true }
}

extension APQueue {
  /// zcrypt's online switch for the queue; true while zcrypt does not drive it (it has none).
  public var online: Bool { card.bus.kernel.zcrypt.queue(apqn)?.online ?? true }
}
