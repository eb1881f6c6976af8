import APModel

/// The deterministic stand-in for what a crypto adapter computes: the reply to a request is the
/// request's bytes reversed, followed by the APQN, so that a test can tell which queue answered.
///
/// Enough to show where a message went and that state does not survive a zeroize; real CPRBs
/// are out of scope.
public enum APTestService {
  public static func reply(to payload: [UInt8], on apqn: APQN) -> [UInt8] {
    payload.reversed() + [UInt8(apqn.apid), UInt8(apqn.apqi)]
  }
}
