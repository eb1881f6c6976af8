/// The 8-bit response code of an AP instruction's status word (GR1).
public struct APResponseCode: Hashable, Sendable, CustomStringConvertible {
  public var rawValue: UInt8
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  public static let normal = Self(rawValue: 0x00)
  public static let queueNotAvailable = Self(rawValue: 0x01)
  public static let resetInProgress = Self(rawValue: 0x02)
  public static let deconfigured = Self(rawValue: 0x03)
  public static let checkstopped = Self(rawValue: 0x04)
  public static let busy = Self(rawValue: 0x05)
  public static let invalidAddress = Self(rawValue: 0x06)
  public static let otherwiseChanged = Self(rawValue: 0x07)
  public static let invalidGISA = Self(rawValue: 0x08)
  public static let queueBoundToAnother = Self(rawValue: 0x09)
  public static let stateChangeInProgress = Self(rawValue: 0x0A)
  public static let queueNotBound = Self(rawValue: 0x0B)
  /// Q_FULL for NQAP, NO_PENDING_REPLY for DQAP.
  public static let queueFull = Self(rawValue: 0x10)
  public static let noPendingReply = Self(rawValue: 0x10)
  public static let indexTooBig = Self(rawValue: 0x11)
  public static let noFirstPart = Self(rawValue: 0x13)
  public static let messageTooBig = Self(rawValue: 0x15)
  public static let requiredFacilityNotInstalled = Self(rawValue: 0x16)
  public static let queueBindError = Self(rawValue: 0x30)
  public static let queueNotAvailableForAssociation = Self(rawValue: 0x31)
  public static let queueNotEmpty = Self(rawValue: 0x32)
  public static let bindLimitExceeded = Self(rawValue: 0x33)
  public static let invalidAssociationSecret = Self(rawValue: 0x34)
  public static let associationSecretNotUnique = Self(rawValue: 0x35)
  public static let associationFailed = Self(rawValue: 0x36)
  public static let invalidDomain = Self(rawValue: 0x42)

  /// Whether a reset has completed: rc 00, or the queue left the configuration (03) or is
  /// checkstopped (04). These are the codes the filter and the reset wait accept.
  public var isResetComplete: Bool { self == .normal || self == .deconfigured || self == .checkstopped }

  /// The kernel's name for the code (ap.h's `AP_RESPONSE_...` without the prefix, as the
  /// Principles of Operation name them): `Q_NOT_AVAIL`. 0x10 is `Q_FULL` after NQAP and
  /// `NO_PENDING_REPLY` after DQAP; nil for a code ap.h does not name.
  public func name(afterDQAP: Bool = false) -> String? {
    switch rawValue {
    case 0x00: "NORMAL"
    case 0x01: "Q_NOT_AVAIL"
    case 0x02: "RESET_IN_PROGRESS"
    case 0x03: "DECONFIGURED"
    case 0x04: "CHECKSTOPPED"
    case 0x05: "BUSY"
    case 0x06: "INVALID_ADDRESS"
    case 0x07: "OTHERWISE_CHANGED"
    case 0x08: "INVALID_GISA"
    case 0x09: "Q_BOUND_TO_ANOTHER"
    case 0x0A: "STATE_CHANGE_IN_PROGRESS"
    case 0x0B: "Q_NOT_BOUND"
    case 0x10: afterDQAP ? "NO_PENDING_REPLY" : "Q_FULL"
    case 0x11: "INDEX_TOO_BIG"
    case 0x13: "NO_FIRST_PART"
    case 0x15: "MESSAGE_TOO_BIG"
    case 0x16: "REQ_FAC_NOT_INST"
    case 0x30: "Q_BIND_ERROR"
    case 0x31: "Q_NOT_AVAIL_FOR_ASSOC"
    case 0x32: "Q_NOT_EMPTY"
    case 0x33: "BIND_LIMIT_EXCEEDED"
    case 0x34: "INVALID_ASSOC_SECRET"
    case 0x35: "ASSOC_SECRET_NOT_UNIQUE"
    case 0x36: "ASSOC_FAILED"
    case 0x42: "INVALID_DOMAIN"
    default: nil
    }
  }

  /// `02`, hex as the kernel prints it.
  public var description: String { padHex(Int(rawValue), 2) }
}

/// The queue status word: the low 32 bits of GR1 after an AP instruction.
public struct APQueueStatus: Hashable, Sendable {
  public var queueEmpty: Bool
  public var repliesWaiting: Bool
  public var queueFull: Bool
  public var async: Bool
  public var irqEnabled: Bool
  public var responseCode: APResponseCode

  public init(
    queueEmpty: Bool = true, repliesWaiting: Bool = false, queueFull: Bool = false,
    async: Bool = false, irqEnabled: Bool = false, responseCode: APResponseCode = .normal
  ) {
    self.queueEmpty = queueEmpty
    self.repliesWaiting = repliesWaiting
    self.queueFull = queueFull
    self.async = async
    self.irqEnabled = irqEnabled
    self.responseCode = responseCode
  }

  public static func rc(_ code: APResponseCode) -> APQueueStatus {
    APQueueStatus(queueEmpty: false, responseCode: code)
  }

  /// The architected word: bit 0 (MSB) queue empty, 1 replies waiting, 2 queue full, 6 async,
  /// 7 irq enabled, then the response code in the next byte.
  public var word: UInt32 {
    var w: UInt32 = 0
    if queueEmpty { w |= 0x8000_0000 }
    if repliesWaiting { w |= 0x4000_0000 }
    if queueFull { w |= 0x2000_0000 }
    if async { w |= 0x0200_0000 }
    if irqEnabled { w |= 0x0100_0000 }
    w |= UInt32(responseCode.rawValue) << 16
    return w
  }
}
