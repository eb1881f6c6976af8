import SystemPackage

@_exported import struct SystemPackage.Errno

extension Errno {
  /// `ENODEV`, "No such device". swift-system names it after BSD's wording
  /// (`operationNotSupportedByDevice`); the kernel's sysfs rules read better with this name.
  public static var noSuchDevice: Errno { .operationNotSupportedByDevice }

  /// The symbolic name (`EADDRNOTAVAIL`) of the errno values the AP stack uses.
  public var symbolicName: String {
    switch self {
    case .notPermitted: "EPERM"
    case .noSuchFileOrDirectory: "ENOENT"
    case .ioError: "EIO"
    case .argListTooLong: "E2BIG"
    case .permissionDenied: "EACCES"
    case .resourceBusy: "EBUSY"
    case .fileExists: "EEXIST"
    case .noSuchDevice: "ENODEV"
    case .notDirectory: "ENOTDIR"
    case .isDirectory: "EISDIR"
    case .invalidArgument: "EINVAL"
    case .outOfRange: "ERANGE"
    case .addressInUse: "EADDRINUSE"
    case .addressNotAvailable: "EADDRNOTAVAIL"
    case .tooManyUsers: "EUSERS"
    case .noFunction: "ENOSYS"
    case .notSupported: "EOPNOTSUPP"
    default: "errno \(rawValue)"
    }
  }
}
