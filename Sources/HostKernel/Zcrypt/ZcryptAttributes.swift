import APModel
import Machine
import Sysfs
import SystemPackage

/// The attributes zcrypt's default drivers add to the devices they bind: `cex4card` to cards,
/// `cex4queue` to queues (`zcrypt_card.c`, `zcrypt_queue.c`), and the groups
/// `zcrypt_cex4_card_probe` and `zcrypt_cex4_queue_probe` add to CCA and EP11 coprocessors
/// only (`zcrypt_cex4.c`); an accelerator has none of those. Their owners are zcrypt's own
/// records of the devices, ``ZcryptCard`` and ``ZcryptQueue``.
enum ZcryptAttributes {
  static let cardGroup = SysfsAttributeGroup([
    .readOnly("type") { (zc: ZcryptCard) in zc.card.typeName + "\n" },
    .readWrite(
      "online", show: { (zc: ZcryptCard) in zc.card.config && !zc.card.chkstop && zc.online ? "1\n" : "0\n" },
      store: { (zc: ZcryptCard, b) throws(Errno) in
        let on = try APBusAttributes.zeroOrOne(b)
        if on && (!zc.card.config || zc.card.chkstop) { throw .noSuchDevice }
        zc.online = on
        for zq in zc.zcrypt.queues(of: zc.card.apid) { zq.online = on }
      }),
    .readOnly("load") { (_: ZcryptCard) in "0\n" },
  ])

  static let queueGroup = SysfsAttributeGroup([
    .readWrite(
      "online",
      show: { (zq: ZcryptQueue) in zq.queue.config && !zq.queue.chkstop && zq.online ? "1\n" : "0\n" },
      store: { (zq: ZcryptQueue, b) throws(Errno) in
        let on = try APBusAttributes.zeroOrOne(b)
        let q = zq.queue
        if on && (!q.config || !q.card.config || q.chkstop || q.card.chkstop) { throw .noSuchDevice }
        if on && !(zq.zcard?.online ?? true) { throw .invalidArgument }
        zq.online = on
      }),
    .readOnly("load") { (_: ZcryptQueue) in "0\n" },
  ])

  /// The groups of the card's coprocessor mode, by its function bits as the probe tests them.
  static func cardGroups(_ functions: UInt32) -> [SysfsAttributeGroup] {
    functions & AdapterMode.funcCOPRO != 0
      ? [ccaCardGroup] : functions & AdapterMode.funcEP11 != 0 ? [ep11CardGroup] : []
  }

  static func queueGroups(_ functions: UInt32) -> [SysfsAttributeGroup] {
    functions & AdapterMode.funcCOPRO != 0
      ? [ccaQueueGroup] : functions & AdapterMode.funcEP11 != 0 ? [ep11QueueGroup] : []
  }

  // MARK: CCA (cca_card_attr_grp, cca_queue_attr_grp)

  /// `cca_serialnr_show`: the serial number, asked at the default domain; an empty line without
  /// a default domain or when the request fails.
  static let ccaCardGroup = SysfsAttributeGroup([
    .readOnly("serialnr") { (zc: ZcryptCard) in
      let bus = zc.zcrypt.bus
      guard bus.apDomain >= 0, let info = zc.zcrypt.ccaGetInfo(card: zc.card.apid, domain: bus.apDomain)
      else {
        return "\n"
      }
      return String(info.serial.prefix(8)) + "\n"
    }
  ])

  static let ccaQueueGroup = SysfsAttributeGroup([
    .readOnly("mkvps") { (zq: ZcryptQueue) in
      ccaMKVPs(
        zq.zcrypt.ccaGetInfo(card: zq.queue.apqn.apid, domain: zq.queue.apqn.apqi)?.masterKeys ?? noReply)
    }
  ])

  /// What `cca_get_info` leaves when it gets no reply: no register has a state.
  static let noReply = CCAMasterKeys(aes: .unreported, apka: .unreported, asym: .unreported)

  /// `cca_mkvps_show`: NEW, CUR and OLD of AES, APKA and ASYM, each with its state and pattern
  /// (zeros where the register holds no key), or `- -` where the reply gave no state.
  static func ccaMKVPs(_ keys: CCAMasterKeys) -> String {
    var out = ""
    for (name, key) in [("AES", keys.aes), ("APKA", keys.apka), ("ASYM", keys.asym)] {
      let zero = [UInt8](repeating: 0, count: name == "ASYM" ? 16 : 8)
      func line(_ register: String, _ state: String?, _ pattern: VerificationPattern) {
        guard let state else {
          out += "\(name) \(register): - -\n"
          return
        }
        out += "\(name) \(register): \(state) 0x\(hexString(pattern))\n"
      }
      switch key.new {
      case .unreported: line("NEW", nil, zero)
      case .empty: line("NEW", "empty", zero)
      case .partial: line("NEW", "partial", zero)
      case .full(let p): line("NEW", "full", p)
      }
      for (register, r) in [("CUR", key.current), ("OLD", key.old)] {
        switch r {
        case .unreported: line(register, nil, zero)
        case .invalid: line(register, "invalid", zero)
        case .valid(let p): line(register, "valid", p)
        }
      }
    }
    return out
  }

  // MARK: EP11 (ep11_card_attr_grp, ep11_queue_attr_grp)

  static let ep11CardGroup = SysfsAttributeGroup([
    .readOnly("API_ordinalnr") { (zc: ZcryptCard) in
      guard let n = zc.zcrypt.ep11GetCardInfo(zc.card)?.module.apiOrdinal, n > 0 else { return "\n" }
      return "\(n)\n"
    },
    .readOnly("FW_version") { (zc: ZcryptCard) in
      guard let m = zc.zcrypt.ep11GetCardInfo(zc.card)?.module, m.firmwareMajor > 0 || m.firmwareMinor > 0
      else {
        return "\n"
      }
      return "\(m.firmwareMajor).\(m.firmwareMinor)\n"
    },
    .readOnly("serialnr") { (zc: ZcryptCard) in
      // Sixteen characters, blank-padded as the module query reports them.
      guard let s = zc.zcrypt.ep11GetCardInfo(zc.card)?.serial, !s.isEmpty else { return "\n" }
      let sixteen = String(s.prefix(16))
      return sixteen + String(repeating: " ", count: 16 - sixteen.count) + "\n"
    },
    .readOnly("op_modes") { (zc: ZcryptCard) in
      opModes(zc.zcrypt.ep11GetCardInfo(zc.card)?.module.opModes ?? [])
    },
  ])

  static let ep11QueueGroup = SysfsAttributeGroup([
    .readOnly("mkvps") { (zq: ZcryptQueue) in ep11MKVPs(zq.zcrypt.ep11GetDomainInfo(zq)) },
    .readOnly("op_modes") { (zq: ZcryptQueue) in opModes(zq.zcrypt.ep11GetDomainInfo(zq)?.opModes ?? []) },
  ])

  /// `ep11_mkvps_show`: the CURRENT and NEW wrapping keys, `- -` both when the query failed.
  static func ep11MKVPs(_ info: EP11DomainInfo?) -> String {
    guard let info else { return "WK CUR: - -\nWK NEW: - -\n" }
    let current =
      switch info.current {
      case .invalid: "invalid -"
      case .valid(let p): "valid 0x" + hexString(p)
      }
    let new =
      switch info.new {
      case .empty: "empty -"
      case .uncommitted(let p): "uncommitted 0x" + hexString(p)
      case .committed(let p): "committed 0x" + hexString(p)
      }
    return "WK CUR: \(current)\nWK NEW: \(new)\n"
  }

  /// `ep11_card_op_modes_show`, `ep11_queue_op_modes_show`: the modes' names in zcrypt's order.
  static func opModes(_ modes: Set<EP11OpMode>) -> String {
    EP11OpMode.allCases.filter(modes.contains).map(\.name).joined(separator: " ") + "\n"
  }

  /// Lower-case hex, two digits a byte.
  static func hexString(_ bytes: [UInt8]) -> String { bytes.map { padHex(Int($0), 2) }.joined() }
}
