/// The AP device drivers of the host: zcrypt's default drivers for CEX4+ cards and queues, and
/// vfio_ap for queues handed to guests.
public enum APDriver: String, Hashable, Sendable, CaseIterable {
  /// zcrypt's card driver; binds every card device.
  case cex4card
  /// zcrypt's queue driver; binds queues reserved for the host by apmask/aqmask.
  case cex4queue
  /// The vfio_ap device driver; binds queues not reserved for the host.
  case vfioAP = "vfio_ap"

  /// The name under `/sys/bus/ap/drivers/`.
  public var name: String { rawValue }

  /// A default driver (`AP_DRIVER_FLAG_DEFAULT`) owns the APQNs that apmask x aqmask reserve.
  public var isDefault: Bool { self != .vfioAP }

  /// Whether the driver binds queue devices (otherwise card devices).
  public var bindsQueues: Bool { self != .cex4card }

  public init?(name: String) { self.init(rawValue: name) }
}
