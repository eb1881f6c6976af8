import APModel
import Machine

/// The requests zcrypt sends on its own to learn about a coprocessor (`zcrypt_ccamisc.c`,
/// `zcrypt_ep11misc.c`), as far as its sysfs attributes use them. Each goes the way a request
/// goes: to a queue zcrypt knows (bound to `cex4queue`) whose card and queue are online,
/// configured and not checkstopped (`_zcrypt_send_cprb`, `_zcrypt_send_ep11_cprb`), and then
/// through the machine, which answers only where the APQN is reachable. Nil is a request that
/// failed: the attribute shows what an empty reply shows, never an error.
extension APBus {
  /// Whether zcrypt would send a request to `q`.
  func zcryptUsable(_ q: APQueue) -> Bool {
    q.driver == .cex4queue && q.online && q.config && !q.chkstop
      && q.card.driver == .cex4card && q.card.online && q.card.config && !q.card.chkstop
  }

  /// `cca_get_info`: the serial number and the master keys of a CCA domain. Fails without a
  /// zcrypt queue for the APQN (`zcrypt_device_status_ext`: ENODEV), and when it cannot take a
  /// request.
  func ccaGetInfo(card: APID, domain: APQI) -> (serial: String, masterKeys: CCAMasterKeys)? {
    guard let q = queues[APQN(card, domain).rawValue], zcryptUsable(q) else { return nil }
    return machine.ccaQueryCryptoFacility(q.apqn, kernel.authority)
  }

  /// `ep11_get_card_info`: the module query, sent to any usable queue of the card (AUTOSEL_DOM).
  func ep11GetCardInfo(_ card: APCard) -> (serial: String, module: EP11ModuleInfo)? {
    for dom in 0...maxDomainID {
      guard let q = queues[APQN(card.apid, dom).rawValue], zcryptUsable(q) else { continue }
      return machine.ep11ModuleQuery(q.apqn, kernel.authority)
    }
    return nil
  }

  /// `ep11_get_domain_info`: the domain query of the queue's domain.
  func ep11GetDomainInfo(_ q: APQueue) -> EP11DomainInfo? {
    guard zcryptUsable(q) else { return nil }
    return machine.ep11DomainQuery(q.apqn, kernel.authority)
  }
}
