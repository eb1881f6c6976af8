/// The upstream kernel whose AP bus, zcrypt and vfio_ap the host kernel behaves as: distributions
/// ship 6.1, 6.6 and 6.12, and the interface grew between them. Each difference is the commit
/// that made it, with the first release that carries it:
///
/// | since | commit | what a user sees |
/// |---|---|---|
/// | 6.4 | d7b1813af6a5 "s390/ap: introduce new AP bus sysfs attribute features" | `/sys/bus/ap/features` |
/// | 6.4 | 088174960ebc "s390/ap: filter ap card functions, new queue functions attribute" | a queue's `ap_functions` |
/// | 6.10 | e12aa0b5b2fb, 8fb456bc9f9b "s390/vfio-ap: Add sysfs attr, ap_config" (read, write) | an mdev's `ap_config` |
/// | 6.12 | 2d8721364ce8 "s390/vfio-ap: Driver feature advertisement" | the matrix device's `features` |
/// | 6.15 | "s390/vfio-ap: Signal guest of AP config change" (Rorie Reyes; in v6.15-rc1's uapi headers, hash not in the stored sources) | the device's config-change IRQ (`VFIO_AP_CFG_CHG_IRQ_INDEX`, 2 IRQs) |
/// | 6.15 | d33d729afcc8 "s390/vfio-ap: Fix no AP queue sharing allowed message written to kernel log" | the sharing conflict's log lines |
/// | 6.19 | d38a87d7c064 "s390/ap: Support driver_override for AP queue devices" | a queue's `driver_override` |
/// | 6.19 | 46030379f13c "s390/ap: Restrict driver_override versus apmask and aqmask use" | overrides and masks in use exclude each other |
/// | 6.19 | 51d921a613b1 "s390/ap: Expose ap_bindings_complete_count counter via sysfs" | `/sys/bus/ap/bindings_complete_count` |
///
/// What all five share (guest_matrix, hot plug, the configuration-change callbacks, the
/// errno of the assignment rules and the mask stores, the uevents, the mdev type's names) is not
/// a difference. A profile is the newest stable release of its series: the whole-matrix
/// filtering of 850fb7fa8c68 (6.8, CVE-2024-26620) reached 6.1.76 and 6.6.15 and is in all.
public struct KernelProfile: Sendable, Hashable, Comparable, CustomStringConvertible {
  public let major: Int
  public let minor: Int

  init(_ major: Int, _ minor: Int) {
    self.major = major
    self.minor = minor
  }

  public static let v6_1 = KernelProfile(6, 1)
  public static let v6_6 = KernelProfile(6, 6)
  public static let v6_12 = KernelProfile(6, 12)
  public static let v6_16 = KernelProfile(6, 16)
  public static let v6_19 = KernelProfile(6, 19)

  /// The kernels apvirt models, oldest first.
  public static let known: [KernelProfile] = [.v6_1, .v6_6, .v6_12, .v6_16, .v6_19]
  /// The default: the newest.
  public static let newest = v6_19

  /// `6.12`, `6.12.7` or `v6.12`: the series of a known kernel; nil for any other.
  public init?(_ text: String) {
    var t = Substring(text)
    if t.first == "v" { t = t.dropFirst() }
    let parts = t.split(separator: ".", omittingEmptySubsequences: false)
    guard (2...3).contains(parts.count), parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isNumber) }),
      let major = Int(parts[0]), let minor = Int(parts[1]),
      let known = Self.known.first(where: { $0.major == major && $0.minor == minor })
    else { return nil }
    self = known
  }

  public static func < (a: KernelProfile, b: KernelProfile) -> Bool {
    (a.major, a.minor) < (b.major, b.minor)
  }

  public var description: String { "\(major).\(minor)" }

  func since(_ major: Int, _ minor: Int) -> Bool { self >= KernelProfile(major, minor) }

  /// `/sys/bus/ap/features` (d7b1813af6a5).
  public var hasBusFeatures: Bool { since(6, 4) }
  /// A queue's `ap_functions` (088174960ebc).
  public var hasQueueFunctions: Bool { since(6, 4) }
  /// An mdev's `ap_config` (e12aa0b5b2fb, 8fb456bc9f9b).
  public var hasAPConfig: Bool { since(6, 10) }
  /// The matrix device's `features` (2d8721364ce8).
  public var hasMatrixFeatures: Bool { since(6, 12) }
  /// The sharing-conflict messages of d33d729afcc8; before it, both conflicts said
  /// `Userspace may not re-assign queue %02lx.%04lx already assigned to %s`.
  public var hasSharingMessageFix: Bool { since(6, 15) }
  /// `VFIO_AP_CFG_CHG_IRQ_INDEX`: the second IRQ, which tells QEMU the guest's APCB changed.
  /// Before it `VFIO_AP_NUM_IRQS` is 1, and index 1 is EINVAL.
  public var hasConfigChangeIRQ: Bool { since(6, 15) }
  /// A queue's `driver_override`, and its exclusion of the masks (d38a87d7c064, 46030379f13c).
  public var hasDriverOverride: Bool { since(6, 19) }
  /// `/sys/bus/ap/bindings_complete_count` (51d921a613b1).
  public var hasBindingsCompleteCount: Bool { since(6, 19) }
}
