#if canImport(Glibc)
  import Glibc
#endif

/// A whole file read with POSIX calls, failing with the system's errno (EISDIR for a directory),
/// so that every reader says what `strerror` says (`/etc: Is a directory`) instead of
/// Foundation's wrapped errors. The machine loader, the sysfs snapshot and the CLI share it.
public enum FileContents {
  public static func read(_ path: String) throws(Errno) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw Errno(rawValue: errno) }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw Errno(rawValue: errno) }
    if st.st_mode & S_IFMT == S_IFDIR { throw .isDirectory }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
      let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
      if n < 0 {
        if errno == EINTR { continue }
        throw Errno(rawValue: errno)
      }
      if n == 0 { break }
      bytes += buffer[..<n]
    }
    return bytes
  }
}
