import APModel
import Testing

@Suite("APResponseCode and APQueueStatus")
struct APResponseCodeTests {
  @Test("response codes have the architected values")
  func values() {
    let table: [(APResponseCode, UInt8)] = [
      (.normal, 0x00), (.queueNotAvailable, 0x01), (.resetInProgress, 0x02), (.deconfigured, 0x03),
      (.checkstopped, 0x04), (.busy, 0x05), (.invalidAddress, 0x06), (.otherwiseChanged, 0x07),
      (.invalidGISA, 0x08), (.queueBoundToAnother, 0x09), (.stateChangeInProgress, 0x0a),
      (.queueNotBound, 0x0b), (.queueFull, 0x10), (.noPendingReply, 0x10), (.indexTooBig, 0x11),
      (.noFirstPart, 0x13), (.messageTooBig, 0x15), (.requiredFacilityNotInstalled, 0x16),
      (.queueBindError, 0x30), (.queueNotAvailableForAssociation, 0x31), (.queueNotEmpty, 0x32),
      (.bindLimitExceeded, 0x33), (.invalidAssociationSecret, 0x34), (.associationSecretNotUnique, 0x35),
      (.associationFailed, 0x36), (.invalidDomain, 0x42),
    ]
    for (code, raw) in table { #expect(code.rawValue == raw) }
  }

  @Test("description is two hex digits")
  func description() {
    #expect(APResponseCode.normal.description == "00")
    #expect(APResponseCode.stateChangeInProgress.description == "0a")
    #expect(APResponseCode.invalidDomain.description == "42")
  }

  @Test("every code has ap.h's name; 0x10 is Q_FULL after NQAP, NO_PENDING_REPLY after DQAP")
  func names() {
    let table: [(APResponseCode, String)] = [
      (.normal, "NORMAL"), (.queueNotAvailable, "Q_NOT_AVAIL"), (.resetInProgress, "RESET_IN_PROGRESS"),
      (.deconfigured, "DECONFIGURED"), (.checkstopped, "CHECKSTOPPED"), (.busy, "BUSY"),
      (.invalidAddress, "INVALID_ADDRESS"), (.otherwiseChanged, "OTHERWISE_CHANGED"),
      (.invalidGISA, "INVALID_GISA"), (.queueBoundToAnother, "Q_BOUND_TO_ANOTHER"),
      (.stateChangeInProgress, "STATE_CHANGE_IN_PROGRESS"), (.queueNotBound, "Q_NOT_BOUND"),
      (.queueFull, "Q_FULL"), (.indexTooBig, "INDEX_TOO_BIG"), (.noFirstPart, "NO_FIRST_PART"),
      (.messageTooBig, "MESSAGE_TOO_BIG"), (.requiredFacilityNotInstalled, "REQ_FAC_NOT_INST"),
      (.queueBindError, "Q_BIND_ERROR"), (.queueNotAvailableForAssociation, "Q_NOT_AVAIL_FOR_ASSOC"),
      (.queueNotEmpty, "Q_NOT_EMPTY"), (.bindLimitExceeded, "BIND_LIMIT_EXCEEDED"),
      (.invalidAssociationSecret, "INVALID_ASSOC_SECRET"),
      (.associationSecretNotUnique, "ASSOC_SECRET_NOT_UNIQUE"),
      (.associationFailed, "ASSOC_FAILED"), (.invalidDomain, "INVALID_DOMAIN"),
    ]
    for (code, name) in table { #expect(code.name() == name, "rc \(code)") }
    #expect(APResponseCode.noPendingReply.name(afterDQAP: true) == "NO_PENDING_REPLY")
    #expect(APResponseCode(rawValue: 0x99).name() == nil)
  }

  @Test("a reset is complete on rc 00, 03 and 04 only")
  func resetComplete() {
    #expect(APResponseCode.normal.isResetComplete)
    #expect(APResponseCode.deconfigured.isResetComplete)
    #expect(APResponseCode.checkstopped.isResetComplete)
    #expect(!APResponseCode.resetInProgress.isResetComplete)
    #expect(!APResponseCode.queueNotAvailable.isResetComplete)
    #expect(!APResponseCode.busy.isResetComplete)
  }

  @Test("status word: bits 0, 1, 2, 6, 7, then the response code")
  func statusWord() {
    #expect(APQueueStatus().word == 0x8000_0000)
    #expect(APQueueStatus(queueEmpty: false).word == 0)
    #expect(APQueueStatus(queueEmpty: false, repliesWaiting: true).word == 0x4000_0000)
    #expect(APQueueStatus(queueEmpty: false, queueFull: true).word == 0x2000_0000)
    #expect(APQueueStatus(queueEmpty: false, async: true).word == 0x0200_0000)
    #expect(APQueueStatus(queueEmpty: false, irqEnabled: true).word == 0x0100_0000)
    #expect(APQueueStatus.rc(.deconfigured).word == 0x0003_0000)
    #expect(APQueueStatus.rc(.queueFull).word == 0x0010_0000)
    #expect(APQueueStatus.rc(.invalidDomain).responseCode == .invalidDomain)
    #expect(!APQueueStatus.rc(.busy).queueEmpty)
    let all = APQueueStatus(
      queueEmpty: true, repliesWaiting: true, queueFull: true, async: true, irqEnabled: true,
      responseCode: .checkstopped)
    #expect(all.word == 0xE304_0000)
  }
}
