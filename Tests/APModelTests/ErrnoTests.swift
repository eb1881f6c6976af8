import APModel
import Testing

@Suite("Errno re-export")
struct ErrnoTests {
  @Test("APModel re-exports Errno and names the values the AP stack uses")
  func symbolicNames() {
    let table: [(Errno, String)] = [
      (.invalidArgument, "EINVAL"), (.outOfRange, "ERANGE"), (.noSuchDevice, "ENODEV"),
      (.addressInUse, "EADDRINUSE"), (.addressNotAvailable, "EADDRNOTAVAIL"), (.resourceBusy, "EBUSY"),
      (.fileExists, "EEXIST"), (.tooManyUsers, "EUSERS"), (.permissionDenied, "EACCES"),
      (.argListTooLong, "E2BIG"), (.isDirectory, "EISDIR"), (.notDirectory, "ENOTDIR"),
      (.noSuchFileOrDirectory, "ENOENT"), (.ioError, "EIO"), (.notPermitted, "EPERM"),
      (.noFunction, "ENOSYS"),
    ]
    for (e, name) in table { #expect(e.symbolicName == name) }
    #expect(Errno.noSuchDevice.rawValue == 19)
    #expect(Errno.invalidArgument.rawValue == 22)
  }
}
