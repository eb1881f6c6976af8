import APModel
import Machine

/// The requests zcrypt sends on its own to learn about a coprocessor (`zcrypt_ccamisc.c`,
/// `zcrypt_ep11misc.c`), as far as its sysfs attributes use them. Each goes the way a request
/// goes: to a queue zcrypt knows (bound to `cex4queue`) whose card and queue are online,
/// configured and not checkstopped (`_zcrypt_send_cprb`, `_zcrypt_send_ep11_cprb`), and then
/// through the kernel's CPU, which answers only where the APQN is reachable. Nil is a request that
/// failed: the attribute shows what an empty reply shows, never an error.
extension Zcrypt {
  /// Whether zcrypt would send a request to `zq`: the queue and its card are zcrypt's, online,
  /// configured and not checkstopped.
  func zcryptUsable(_ zq: ZcryptQueue) -> Bool {
    let q = zq.queue
    guard let zc = card(q.apqn.apid) else { return false }
    return zq.online && q.config && !q.chkstop && zc.online && q.card.config && !q.card.chkstop
  }

  /// `cca_get_info`: the serial number and the master keys of a CCA domain. Fails without a
  /// zcrypt queue for the APQN (`zcrypt_device_status_ext`: ENODEV), and when it cannot take a
  /// request.
  func ccaGetInfo(card: APID, domain: APQI) -> (serial: String, masterKeys: CCAMasterKeys)? {
    guard let zq = queue(APQN(card, domain)), zcryptUsable(zq) else { return nil }
    return kernel.cpu.ccaQueryCryptoFacility(zq.queue.apqn)
  }

  /// `ep11_get_card_info`: the module query, sent to any usable queue of the card (AUTOSEL_DOM).
  func ep11GetCardInfo(_ card: APCard) -> (serial: String, module: EP11ModuleInfo)? {
    for dom in 0...bus.maxDomainID {
      guard let zq = queue(APQN(card.apid, dom)), zcryptUsable(zq) else { continue }
      return kernel.cpu.ep11ModuleQuery(zq.queue.apqn)
    }
    return nil
  }

  /// `ep11_get_domain_info`: the domain query of the queue's domain.
  func ep11GetDomainInfo(_ zq: ZcryptQueue) -> EP11DomainInfo? {
    guard zcryptUsable(zq) else { return nil }
    return kernel.cpu.ep11DomainQuery(zq.queue.apqn)
  }
}
