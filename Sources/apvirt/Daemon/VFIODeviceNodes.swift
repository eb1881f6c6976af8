import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The character devices that vfio gives the host in `/dev/vfio`: `vfio`, the container (misc
/// minor `VFIO_MINOR`, 196), and one node `N` per IOMMU group, as devtmpfs creates them when vfio
/// registers a group (`vfio_group_alloc` names the device after the group number; an
/// emulated-IOMMU group such as an mdev's has no `noiommu-` prefix).
///
/// The daemon keeps them in a directory beside the mount (``RuntimePaths/vfioDevices``), created
/// and unlinked as groups come and go, and `apvirt exec` binds that directory at `/dev/vfio`, so
/// that a process in the namespace (libvirt resolving an mdev's `iommu_group` to `/dev/vfio/N`)
/// can stat the node, chown it and allow it in a device cgroup while the host runs.
///
/// This machine's kernel has no vfio to stand behind a group node, and libvirt opens the node
/// (read-write, to lock it while it labels it for the guest) before it starts a domain. So a
/// group node is the null device (1:3) under the group's name: it can be stat'ed, chowned, put
/// in a device cgroup, opened and locked, and does no VFIO (no ioctl, no EBUSY while a guest
/// has it: libvirt's in-use check before `nodedev-destroy` cannot see a running guest). The
/// container node keeps vfio's own number (10:196), which nothing here opens. Nodes need
/// CAP_MKNOD: a daemon without it has none.
final class VFIODeviceNodes: Sendable {
  let directory: String
  /// The groups that have a node.
  private let present = Mutex<Set<Int>>([])

  /// `VFIO_MINOR` on the misc major.
  static let containerDevice = (major: UInt32(10), minor: UInt32(196))
  /// What a group node is: the null device.
  static let groupDevice = (major: UInt32(1), minor: UInt32(3))

  struct Failure: Error, CustomStringConvertible {
    var description: String
  }

  /// Creates the directory (emptying what an earlier daemon left) with the container node.
  init(directory: String) throws(Failure) {
    self.directory = directory
    try? FileManager.default.removeItem(atPath: directory)
    guard mkdir(directory, 0o755) == 0 || errno == EEXIST else {
      throw Failure(description: "cannot create \(directory): \(String(cString: strerror(errno)))")
    }
    _ = chmod(directory, 0o755)
    try Self.makeNode(
      directory + "/vfio", major: Self.containerDevice.major, minor: Self.containerDevice.minor,
      mode: 0o666)
  }

  /// glibc's `makedev` (a macro Swift does not import): the kernel's 12-bit major and 20-bit
  /// minor in the layout of `dev_t`.
  static func deviceNumber(_ major: UInt32, _ minor: UInt32) -> dev_t {
    let ma = UInt64(major), mi = UInt64(minor)
    return dev_t(((ma & 0xffff_f000) << 32) | ((ma & 0xfff) << 8) | ((mi & 0xffff_ff00) << 12) | (mi & 0xff))
  }

  private static func makeNode(_ path: String, major: UInt32, minor: UInt32, mode: mode_t) throws(Failure) {
    unlink(path)
    guard mknod(path, S_IFCHR | mode, Self.deviceNumber(major, minor)) == 0 else {
      throw Failure(description: "cannot create the device node \(path): \(String(cString: strerror(errno)))")
    }
    // mknod applies the umask.
    _ = chmod(path, mode)
  }

  /// Makes the group nodes those of `groups`: a node for each new group (root's, mode 0600, as
  /// devtmpfs makes it), none for a group that is gone.
  func sync(groups: Set<Int>) {
    present.withLock { present in
      for gone in present.subtracting(groups) {
        unlink(directory + "/\(gone)")
        present.remove(gone)
      }
      for new in groups.subtracting(present) {
        if (try? Self.makeNode(
          directory + "/\(new)", major: Self.groupDevice.major, minor: Self.groupDevice.minor, mode: 0o600))
          != nil
        {
          present.insert(new)
        }
      }
    }
  }
}
