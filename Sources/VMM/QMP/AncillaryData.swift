#if canImport(Glibc)
  import Glibc
#endif

/// Descriptors passed over a Unix socket (SCM_RIGHTS): the sizes of `<sys/socket.h>`'s CMSG
/// macros, which Swift does not import, and a `msghdr` around one data buffer and one control
/// buffer, which `sendmsg` and `recvmsg` both take.
enum AncillaryData {
  static let align = MemoryLayout<Int>.size
  /// `CMSG_ALIGN(sizeof(struct cmsghdr))`: where a control message's data starts.
  static let header = (MemoryLayout<cmsghdr>.size + align - 1) / align * align

  /// `CMSG_SPACE` for `count` descriptors.
  static func space(descriptors count: Int) -> Int {
    header + (count * MemoryLayout<Int32>.size + align - 1) / align * align
  }

  /// Calls `body` with a message whose one iovec is `data` and whose control buffer is
  /// `control`; returns what `body` returns (the byte count of `sendmsg` or `recvmsg`).
  static func withMessage(
    _ data: inout [UInt8], _ control: inout [UInt8], _ body: (UnsafeMutablePointer<msghdr>) -> Int
  ) -> Int {
    data.withUnsafeMutableBytes { d -> Int in
      control.withUnsafeMutableBytes { c -> Int in
        var iov = iovec(iov_base: d.baseAddress, iov_len: d.count)
        return withUnsafeMutablePointer(to: &iov) { iovp -> Int in
          var msg = msghdr()
          msg.msg_iov = iovp
          msg.msg_iovlen = 1
          msg.msg_control = c.baseAddress
          msg.msg_controllen = c.count
          return body(&msg)
        }
      }
    }
  }
}
