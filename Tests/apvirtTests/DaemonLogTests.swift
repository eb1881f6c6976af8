import Foundation
import SystemPackage
import Testing

@testable import apvirt

#if canImport(Glibc)
  import Glibc
#endif

/// The daemon's log as a reader of `apvirt up`'s standard error sees it: the stores' lines and
/// swift-log's messages, their order, their delay, and what a reader that falls behind loses.
@Suite("The daemon's log: store lines and messages")
struct DaemonLogTests {
  /// A pipe whose read end never blocks; the log writes into the other end.
  final class Pipe {
    let read: Int32
    let write: Int32

    init() {
      var fds: [Int32] = [0, 0]
      precondition(pipe(&fds) == 0)
      read = fds[0]
      write = fds[1]
      _ = fcntl(read, F_SETFL, fcntl(read, F_GETFL) | O_NONBLOCK)
    }

    deinit {
      close(read)
      close(write)
    }

    /// Everything written so far.
    func drain() -> String {
      var out: [UInt8] = []
      var buf = [UInt8](repeating: 0, count: 4096)
      while true {
        let n = buf.withUnsafeMutableBytes { Glibc.read(read, $0.baseAddress, $0.count) }
        if n <= 0 { break }
        out += buf[..<n]
      }
      return String(decoding: out, as: UTF8.self)
    }

    /// The lines written so far, without their time stamps (`2026-12-02T01:02:03+0000 `).
    func lines() -> [String] {
      drain().split(separator: "\n").map { line in
        let stamp = line.prefix(while: { $0 != " " })
        #expect(stamp.count == 24, "\(line)")
        return String(line.dropFirst(stamp.count + 1))
      }
    }
  }

  /// Runs `body` with a log writing into a fresh pipe. The pipe outlives the log: once the log
  /// is gone its writer writes nothing, so no line can reach a descriptor that another test
  /// opened under the same number.
  func withLog(
    storeDelay: Duration = .seconds(60), pendingLimit: Int = 1 << 20, _ body: (DaemonLog, Pipe) -> Void
  ) {
    let pipe = Pipe()
    withExtendedLifetime(pipe) {
      let log = DaemonLog(
        output: FileDescriptor(rawValue: pipe.write), storeDelay: storeDelay, pendingLimit: pendingLimit)
      body(log, pipe)
    }
  }

  @Test func aStoreLineSaysWhatWasWrittenAndHowItWent() {
    withLog { log, pipe in
      log.store("/bus/ap/apmask", Array("-5\n".utf8), nil)
      log.store("/devices/vfio_ap/matrix/u1/assign_adapter", Array("0x99\n".utf8), .addressNotAvailable)
      // Only the newlines around the value go; inner ones and other spaces stay.
      log.store("/bus/ap/aqmask", Array("\n +1 \r\n".utf8), .invalidArgument)
      log.store("/bus/ap/apmask", Array("\u{00e9}5\n".utf8), .invalidArgument)
      log.flush()
      #expect(
        pipe.lines() == [
          "info: store bus/ap/apmask \"-5\": ok",
          "info: store devices/vfio_ap/matrix/u1/assign_adapter \"0x99\": EADDRNOTAVAIL (Cannot assign requested address)",
          "info: store bus/ap/aqmask \" +1 \": EINVAL (Invalid argument)",
          "info: store bus/ap/apmask \"\u{00e9}5\": EINVAL (Invalid argument)",
        ])
    }
  }

  @Test func theStoresLinesComeOnTheirOwnAfterTheirDelay() {
    withLog(storeDelay: .milliseconds(5)) { log, pipe in
      log.store("/bus/ap/apmask", Array("-5\n".utf8), nil)
      var text = ""
      for _ in 0..<500 where !text.contains("\n") {
        usleep(10_000)
        text += pipe.drain()
      }
      #expect(text.hasSuffix(" info: store bus/ap/apmask \"-5\": ok\n"), "\(text)")
      // A second batch is written too: the writer waits again after each.
      log.store("/bus/ap/aqmask", Array("-7\n".utf8), nil)
      text = ""
      for _ in 0..<500 where !text.contains("\n") {
        usleep(10_000)
        text += pipe.drain()
      }
      #expect(text.hasSuffix(" info: store bus/ap/aqmask \"-7\": ok\n"), "\(text)")
    }
  }

  @Test func aMessageComesAfterTheStoresLoggedBeforeIt() {
    withLog { log, pipe in
      log.store("/bus/ap/apmask", Array("-5".utf8), nil)
      log.store("/bus/ap/apmask", Array("-6".utf8), nil)
      log.write(.notice, "stopping: signal 15")
      log.store("/bus/ap/apmask", Array("-7".utf8), nil)
      #expect(
        pipe.lines() == [
          "info: store bus/ap/apmask \"-5\": ok", "info: store bus/ap/apmask \"-6\": ok",
          "notice: stopping: signal 15",
        ])
      log.flush()
      #expect(pipe.lines() == ["info: store bus/ap/apmask \"-7\": ok"])
    }
  }

  @Test func aReaderThatStopsReadingBlocksNoStore() {
    withLog(storeDelay: .milliseconds(1), pendingLimit: 4096) { log, pipe in
      // The pipe full: the log's writer blocks in write(2) at its first batch.
      let flags = fcntl(pipe.write, F_GETFL)
      _ = fcntl(pipe.write, F_SETFL, flags | O_NONBLOCK)
      let chunk = [UInt8](repeating: 0x2E, count: 4096)
      while chunk.withUnsafeBytes({ Glibc.write(pipe.write, $0.baseAddress, $0.count) }) > 0 {}
      _ = fcntl(pipe.write, F_SETFL, flags)
      let stored = DispatchSemaphore(value: 0)
      Thread.detachNewThread {
        for i in 0..<2000 {
          log.store("/bus/ap/apmask", Array("-\(i % 256)".utf8), nil)
          if i % 100 == 0 { usleep(1000) }
        }
        stored.signal()
      }
      #expect(stored.wait(timeout: .now() + 10) == .success, "a store waited for the log's reader")
      // The reader comes back: what was kept comes, and what was not is counted.
      var text = ""
      for _ in 0..<500 where !text.contains("store lines lost") {
        text += pipe.drain()
        log.flush()
        usleep(2000)
      }
      #expect(text.contains(" info: store bus/ap/apmask \"-0\": ok\n"))
      #expect(text.contains(" store lines lost: the log's reader fell 4096 bytes behind\n"))
    }
  }

  @Test func linesLongerThanTheBuffersComeWholeAndInOrder() {
    // The buffers start at 4 KiB and grow; after a burst they are written from again.
    withLog { log, pipe in
      let value = String(repeating: "5", count: 5000)
      let message = String(repeating: "m", count: 9000)
      var expected: [String] = []
      for round in 0..<3 {
        for _ in 0..<10 {
          log.store("/bus/ap/apmask", Array(value.utf8), nil)
          expected.append("info: store bus/ap/apmask \"\(value)\": ok")
        }
        log.write(.notice, message + "\(round)")
        expected.append("notice: \(message)\(round)")
        // About 60 KiB: the pipe holds 64.
        #expect(pipe.lines() == expected)
        expected = []
      }
    }
  }

  @Test func aBurstLargerThanABufferKeepsComesWhole() {
    // 60 lines of 5 KB: more than the 256 KiB a buffer keeps once written, and more than the
    // pipe holds, so the flush runs beside the reader.
    withLog { log, pipe in
      let value = String(repeating: "7", count: 5000)
      for batch in 0..<2 {
        for _ in 0..<60 { log.store("/bus/ap/apmask", Array(value.utf8), nil) }
        let flushed = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
          log.flush()
          flushed.signal()
        }
        var text = ""
        var newlines = 0
        for _ in 0..<2000 where newlines < 60 {
          let more = pipe.drain()
          newlines += more.utf8.count { $0 == 0x0A }
          text += more
          usleep(1000)
        }
        #expect(flushed.wait(timeout: .now() + 10) == .success)
        let lines = text.split(separator: "\n")
        #expect(lines.count == 60, "batch \(batch)")
        #expect(
          lines.allSatisfy { $0.hasSuffix(" info: store bus/ap/apmask \"\(value)\": ok") }, "batch \(batch)")
      }
    }
  }

  @Test func aReaderThatFallsBehindLosesLinesAndIsToldHowMany() {
    // Each line is 24 + 37 bytes: two fit in 150.
    withLog(pendingLimit: 150) { log, pipe in
      for _ in 0..<10 { log.store("/bus/ap/apmask", Array("-5".utf8), nil) }
      log.flush()
      #expect(
        pipe.lines() == [
          "info: store bus/ap/apmask \"-5\": ok", "info: store bus/ap/apmask \"-5\": ok",
          "warning: 8 store lines lost: the log's reader fell 150 bytes behind",
        ])
      // The count starts again.
      log.store("/bus/ap/apmask", Array("-5".utf8), nil)
      log.flush()
      #expect(pipe.lines() == ["info: store bus/ap/apmask \"-5\": ok"])
    }
  }
}
