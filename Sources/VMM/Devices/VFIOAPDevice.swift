import HostKernel
import SystemPackage

/// QEMU's `vfio-ap` device (hw/vfio/ap.c): one mdev passed through to the guest.
public struct VFIOAPDevice: Sendable {
  /// The `id` property, if given.
  public var id: String?
  /// The QOM path: `/machine/peripheral/<id>` or `/machine/peripheral-anon/device[N]`.
  public var qomPath: String
  /// The `sysfsdev` property as given.
  public var sysfsdev: String
  /// The mdev's UUID: the basename of the resolved sysfs path.
  public var uuid: String
  /// Whether the config-change IRQ (index 1) is wired.
  public var configChangeIRQ: Bool
  /// Added by `device_add` after the machine was created (qdev's `hotplugged`), not by `-device`.
  public var hotplugged = false

  /// The device's name in messages: the UUID.
  public var name: String { uuid }
}

/// The qdev and realize errors of the device, with QEMU's texts.
public struct DeviceError: Error, Equatable, CustomStringConvertible {
  public var message: String
  public var errorClass: String
  public init(_ message: String, errorClass: String = "GenericError") {
    self.message = message
    self.errorClass = errorClass
  }
  public var description: String { message }
}

extension VFIOAPDevice {
  /// The host paths that name an mdev in `sysfsdev`: resolved in the host's sysfs (the tree is
  /// rooted at `/`, so `/sys`, or one of the `mounts` where the host's sysfs is mounted such as
  /// `/run/apvirt/sys`, is taken off), must exist, and must be an mdev of vfio_ap's type.
  static func resolve(_ sysfsdev: String, in kernel: HostKernel, mounts: [String] = []) throws(DeviceError)
    -> String
  {
    var inTree = sysfsdev
    for root in ["/sys"] + mounts where root.count > 1 && sysfsdev.hasPrefix(root + "/") {
      inTree = String(sysfsdev.dropFirst(root.count))
      break
    }
    let canonical: String
    do throws(Errno) {
      canonical = try kernel.sysfs.canonicalPath(inTree)
      _ = try kernel.sysfs.info(canonical + "/mdev_type")
    } catch {
      throw DeviceError("vfio \(sysfsdev): no such host device: \(Errno.noSuchFileOrDirectory)")
    }
    guard let uuid = canonical.split(separator: "/").last.map(String.init), kernel.vfioAP.mdev(uuid) != nil
    else {
      throw DeviceError("vfio \(sysfsdev): no such host device: \(Errno.noSuchFileOrDirectory)")
    }
    return uuid
  }
}
