import Foundation
import Synchronization
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// The host kernel's log as a file (the daemon's `/run/apvirt/dmesg`), following the log.
///
/// Every store comes through ``sync()``. It follows the log by sequence number, as a `/dev/kmsg`
/// reader does: it asks for the lines logged since the last line it wrote, formats only those
/// (outside the host's lock) and appends them, so a store's cost does not depend on how full the
/// log is. Lines that fell out of the log's ring before a sync (a single store can log more than
/// the ring holds) are missing from the file as from `dmesg`.
///
/// The file is kept within ``maxFileBytes``: an append that would pass it rewrites the file
/// from the log's ring instead (written aside and renamed over, so a reader sees the old file or
/// the new one). The ring's formatted text is a few hundred kilobytes at most (a 128 KiB ring),
/// so with the default bound of 1 MiB a rewrite, whose cost is the ring's, happens once per
/// several hundred kilobytes appended: amortised, a store still costs what it logged.
public final class KernelLogFile: Sendable {
  public let host: EmulatedHost
  public let path: String
  /// The file's bound in bytes; it should exceed the ring's formatted size, or every append
  /// past it rewrites the ring.
  public let maxFileBytes: Int

  /// What the syncs did, for tests: the work done, independent of wall time.
  public struct Stats: Sendable, Equatable {
    /// Lines formatted (appended or rewritten).
    public var linesFormatted = 0
    /// Bytes written to the file.
    public var bytesWritten = 0
    /// Times the file was written whole from the ring.
    public var rewrites = 0
    /// Lines that fell out of the ring before they were written.
    public var missed: UInt64 = 0

    public init(linesFormatted: Int = 0, bytesWritten: Int = 0, rewrites: Int = 0, missed: UInt64 = 0) {
      self.linesFormatted = linesFormatted
      self.bytesWritten = bytesWritten
      self.rewrites = rewrites
      self.missed = missed
    }
  }

  private struct State {
    /// The sequence number of the next line to write; nil before the first sync.
    var next: UInt64?
    var fileBytes = 0
    var stats = Stats()
  }

  private let state = Mutex(State())

  public init(host: EmulatedHost, path: String, maxFileBytes: Int = 1 << 20) {
    self.host = host
    self.path = path
    self.maxFileBytes = maxFileBytes
  }

  public var stats: Stats { state.withLock { $0.stats } }

  /// Brings the file up to date with the log (cheap when nothing was logged).
  public func sync() {
    state.withLock { st in
      guard let next = st.next else {
        rewrite(&st)
        return
      }
      // Under the host's lock only the copy of the new lines (their strings are shared, not
      // copied): no formatting.
      guard let follow = host.withKernel({ k in k.log.nextSeq == next ? nil : k.log.lines(from: next) })
      else { return }
      let text = follow.lines.map(\.formatted).joined()
      let bytes = text.utf8.count
      st.stats.linesFormatted += follow.lines.count
      st.stats.missed += follow.missed
      if st.fileBytes + bytes > maxFileBytes {
        rewrite(&st)
        return
      }
      guard append(text) else {
        rewrite(&st)
        return
      }
      st.next = follow.next
      st.fileBytes += bytes
      st.stats.bytesWritten += bytes
    }
  }

  /// Writes the whole ring as the file.
  private func rewrite(_ st: inout State) {
    let follow = host.withKernel { k in k.log.lines(from: 0) }
    let text = follow.lines.map(\.formatted).joined()
    st.next = follow.next
    st.fileBytes = text.utf8.count
    st.stats.linesFormatted += follow.lines.count
    st.stats.bytesWritten += st.fileBytes
    st.stats.rewrites += 1
    try? text.write(toFile: path, atomically: true, encoding: .utf8)
  }

  /// Appends to the file; false when it cannot be opened (removed from outside: rewrite it).
  private func append(_ text: String) -> Bool {
    let fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    do {
      _ = try FileDescriptor(rawValue: fd).writeAll(text.utf8)
      return true
    } catch {
      return false
    }
  }
}
