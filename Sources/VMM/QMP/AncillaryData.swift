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

  /// A control buffer with one SCM_RIGHTS message carrying `descriptors`.
  static func control(carrying descriptors: [Int32]) -> [UInt8] {
    var control = [UInt8](repeating: 0, count: space(descriptors: descriptors.count))
    control.withUnsafeMutableBytes { b in
      var h = cmsghdr()
      h.cmsg_len = header + descriptors.count * MemoryLayout<Int32>.size
      h.cmsg_level = SOL_SOCKET
      h.cmsg_type = Int32(SCM_RIGHTS)
      b.storeBytes(of: h, toByteOffset: 0, as: cmsghdr.self)
      for (i, d) in descriptors.enumerated() {
        b.storeBytes(of: d, toByteOffset: header + i * MemoryLayout<Int32>.size, as: Int32.self)
      }
    }
    return control
  }

  /// The descriptors of every SCM_RIGHTS message in a control buffer `recvmsg` filled, in order
  /// (`CMSG_FIRSTHDR`, `CMSG_NXTHDR`).
  static func descriptors(in control: [UInt8]) -> [Int32] {
    var out: [Int32] = []
    var offset = 0
    while offset + MemoryLayout<cmsghdr>.size <= control.count {
      let (length, level, type): (Int, Int32, Int32) = control.withUnsafeBytes { b in
        let h = b.load(fromByteOffset: offset, as: cmsghdr.self)
        return (Int(h.cmsg_len), h.cmsg_level, h.cmsg_type)
      }
      guard length >= header else { break }
      if level == SOL_SOCKET && type == Int32(SCM_RIGHTS) {
        for i in 0..<(length - header) / MemoryLayout<Int32>.size {
          out.append(
            control.withUnsafeBytes {
              $0.load(fromByteOffset: offset + header + i * MemoryLayout<Int32>.size, as: Int32.self)
            })
        }
      }
      offset += (length + align - 1) / align * align
    }
    return out
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
