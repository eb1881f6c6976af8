import APModel
import Sysfs
import SystemPackage

/// The attributes zcrypt's default drivers add to the devices they bind: `cex4card` to cards,
/// `cex4queue` to queues (`zcrypt_card.c`, `zcrypt_queue.c`).
enum ZcryptAttributes {
  static let cardGroup = SysfsAttributeGroup([
    .readOnly("type") { (c: APCard) in c.typeName + "\n" },
    .readWrite(
      "online", show: { (c: APCard) in c.config && !c.chkstop && c.online ? "1\n" : "0\n" },
      store: { (c: APCard, b) throws(Errno) in
        let on = try APBusAttributes.zeroOrOne(b)
        if on && (!c.config || c.chkstop) { throw .noSuchDevice }
        c.online = on
        for q in c.bus.queues(of: c) where q.driver == .cex4queue { q.online = on }
      }),
    .readOnly("load") { (_: APCard) in "0\n" },
    .readOnly("serialnr") { (c: APCard) in c.mode == .accel ? "\n" : c.serial + "\n" },
  ])

  static let queueGroup = SysfsAttributeGroup([
    .readWrite(
      "online", show: { (q: APQueue) in q.config && !q.chkstop && q.online ? "1\n" : "0\n" },
      store: { (q: APQueue, b) throws(Errno) in
        let on = try APBusAttributes.zeroOrOne(b)
        if on && (!q.config || !q.card.config || q.chkstop || q.card.chkstop) { throw .noSuchDevice }
        if on && !q.card.online { throw .invalidArgument }
        q.online = on
      }),
    .readOnly("load") { (_: APQueue) in "0\n" },
  ])
}
