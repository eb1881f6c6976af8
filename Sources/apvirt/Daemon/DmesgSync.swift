import Foundation
import HostKernel
import Synchronization

/// The host kernel's log as a file beside the mount (`/run/apvirt/dmesg`), rewritten when the
/// log grows.
final class DmesgSync: Sendable {
  let host: EmulatedHost
  let path: String
  private let written = Mutex(-1)

  init(host: EmulatedHost, path: String) {
    self.host = host
    self.path = path
  }

  func sync() {
    written.withLock { count in
      // Every store comes through here: format the log only when it grew.
      guard
        let (n, text) = host.withKernel({ [count] k in
          k.log.lines.count == count ? nil : (k.log.lines.count, k.log.dmesgText)
        })
      else { return }
      count = n
      try? text.write(toFile: path, atomically: true, encoding: .utf8)
    }
  }
}
