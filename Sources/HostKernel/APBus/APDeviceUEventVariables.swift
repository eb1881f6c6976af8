import APModel

/// What `dev_uevent` and `ap_uevent` give an AP device, kept as the few values they are made of:
/// the device's kind (a card with the type the kernel works with, or a queue), its driver and
/// its card's mode. The bus sends an event for every device it adds, binds, unbinds or removes
/// (131,072 at a full-architecture boot), and the uevent record keeps only its newest 4,096, so
/// an event holds this value and its text is written only when someone reads the event
/// (``UEventRing``); the `uevent` file writes it from the same value, so the two always agree.
struct APDeviceUEventVariables: Hashable, Sendable {
  enum Kind: Hashable, Sendable {
    /// A card, with its `hwtype`.
    case card(AdapterType)
    case queue
  }

  var kind: Kind
  /// The driver bound when the event was sent, or nil.
  var driver: APDriver?
  /// The card's mode.
  var mode: AdapterMode

  /// The variables, one `KEY=value` each: `DEVTYPE`, `DRIVER` when bound, then for a card
  /// `DEV_TYPE` and `MODALIAS` (of its type), and `MODE`.
  var strings: [String] {
    var v: [String] = []
    v.reserveCapacity(5)
    switch kind {
    case .card(let type):
      v.append("DEVTYPE=ap_card")
      if let driver { v.append("DRIVER=" + driver.name) }
      v.append("DEV_TYPE=" + padHex(type.rawValue, 4, uppercase: true))
      v.append("MODALIAS=ap:t" + padHex(type.rawValue, 2, uppercase: true))
    case .queue:
      v.append("DEVTYPE=ap_queue")
      if let driver { v.append("DRIVER=" + driver.name) }
    }
    v.append("MODE=" + mode.ueventName)
    return v
  }
}

/// Where an AP device is in the tree, kept as its numbers: `/devices/ap/card05` for a card,
/// `/devices/ap/card05/05.0004` for a queue (every kernel's AP bus puts its devices there). An
/// event keeps this and writes the path only when read, as it does its variables: a queue
/// device no one looks at has no directory to take the path from.
enum APDevicePath: Hashable, Sendable {
  case card(APID)
  case queue(APQN)

  var string: String {
    switch self {
    case .card(let apid): "/devices/ap/card" + hex2(apid)
    case .queue(let apqn): "/devices/ap/card" + hex2(apqn.apid) + "/" + apqn.description
    }
  }
}
