import Foundation
import Testing

@testable import apvirt

/// What `apvirt exec` builds beside /sys: the `--private` directories and the vfio nodes.
@Suite("apvirt exec: private directories and /dev/vfio")
struct ExecNamespaceTests {
  let paths = RuntimePaths(mount: "/run/apvirt-test/sys", state: "/var/lib/apvirt-test")

  @Test func privateDirectoriesAreCheckedAndParentsComeFirst() throws {
    let dirs = try Exec.privateDirectories(["/var/lib/libvirt-x/sub", "//var//lib/libvirt-x/"], paths: paths)
    #expect(
      dirs == [
        .init(target: "/var/lib/libvirt-x", source: "/var/lib/apvirt-test/private/var/lib/libvirt-x"),
        .init(target: "/var/lib/libvirt-x/sub", source: "/var/lib/apvirt-test/private/var/lib/libvirt-x/sub"),
      ])
    func refusal(_ dir: String) -> String? {
      do {
        _ = try Exec.privateDirectories([dir], paths: paths)
        return nil
      } catch {
        return "\(error)"
      }
    }
    #expect(refusal("run")?.contains("not an absolute path") == true)
    #expect(refusal("/etc/../root")?.contains("without . or ..") == true)
    for apvirtsOwn in ["/", "/sys", "/sys/bus", "/proc", "/dev/vfio"] {
      #expect(refusal(apvirtsOwn)?.contains("apvirt exec's to build") == true, "\(apvirtsOwn)")
    }
    for emulated in ["/run/apvirt-test", "/run/apvirt-test/sys", "/var/lib/apvirt-test", "/etc/mdevctl.d"] {
      #expect(refusal(emulated)?.contains("the emulated host's own directory") == true, "\(emulated)")
    }
    #expect(throws: (any Error).self) { try Exec.privateDirectories(["/opt/x", "/opt/x/"], paths: paths) }
  }

  @Test func deviceNumbersAreGlibcs() {
    // glibc's makedev: 10:196 and a major and minor past their first byte.
    #expect(VFIODeviceNodes.deviceNumber(10, 196) == 0xac4)
    #expect(VFIODeviceNodes.deviceNumber(0x123, 0x45678) == 0x4561_2378)
  }

  @Test func nodesFollowTheGroups() throws {
    guard geteuid() == 0 else { return }
    let dir = NSTemporaryDirectory() + "apvirt-vfio-\(UUID().uuidString.prefix(8))"
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let nodes = try VFIODeviceNodes(directory: dir)
    func listing() -> [String] {
      ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
    }
    #expect(listing() == ["vfio"])
    nodes.sync(groups: [0, 2])
    #expect(listing() == ["0", "2", "vfio"])
    var st = stat()
    #expect(stat(dir + "/2", &st) == 0)
    #expect(st.st_mode & S_IFMT == S_IFCHR && st.st_mode & 0o777 == 0o600)
    // The null device under the group's name: openable, as libvirt opens it.
    #expect(st.st_rdev == VFIODeviceNodes.deviceNumber(1, 3))
    #expect(stat(dir + "/vfio", &st) == 0 && st.st_mode & 0o777 == 0o666 && st.st_rdev == 0xac4)
    nodes.sync(groups: [2])
    #expect(listing() == ["2", "vfio"])
  }
}
