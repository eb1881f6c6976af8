import Foundation
import Machine

#if canImport(Glibc)
  import Glibc
#endif

/// The daemon rows: a real `apvirt up` (the release build), started from nothing: the time from
/// spawning it until `<mount>/bus/ap/apmask` reads (what the CLI's help calls ready), then its
/// resident memory after it has been idle for a while; for the embedded default machine and for
/// the full architecture (256 x 256, a machine file written for the run).
struct UpRows {
  let apvirt: String
  var iterations = setting("UP_ITERATIONS", 5)
  /// Idle time before the resident memory is read, in seconds.
  var idleSeconds = settingDouble("UP_IDLE_SECONDS", 2)

  /// The full architecture as a machine file, as apvirt's own writer puts it.
  static let fullArchitectureYAML = MachineDefinition.fullArchitecture().yamlText

  struct Run {
    var ready = Samples()
    var rss = Samples()
  }

  func run() throws -> [TableLine] {
    let machineFile = "/tmp/apvirt-table-full-architecture-\(getpid()).yaml"
    try Data(Self.fullArchitectureYAML.utf8).write(to: URL(fileURLWithPath: machineFile))
    defer { unlink(machineFile) }
    var full = Run()
    var standard = Run()
    // Interleaved too: full, default, full, default...
    for i in 0..<iterations {
      note("apvirt up \(i + 1)/\(iterations): full architecture, default machine")
      try once(machine: machineFile, into: &full)
      try once(machine: nil, into: &standard)
    }
    func line(_ row: String, _ what: String, _ s: Samples, unit: Unit, limit: Double, text: String)
      -> TableLine
    {
      TableLine(
        row: row, what: what, unit: unit, samples: s, ratio: ratio(s.p50, limit) + " of target (p50)",
        target: text,
        meets: s.p50 <= limit)
    }
    return [
      line(
        "`apvirt up` until apmask is readable", "full architecture", full.ready, unit: .milliseconds,
        limit: 200e6, text: "<= 200 ms"),
      line("", "default machine", standard.ready, unit: .milliseconds, limit: 60e6, text: "<= 60 ms"),
      line(
        "daemon resident memory, idle \(Int(idleSeconds)) s", "full architecture", full.rss, unit: .megabytes,
        limit: 48e6, text: "<= 48 MB"),
      line("", "default machine", standard.rss, unit: .megabytes, limit: 16e6, text: "<= 16 MB"),
    ]
  }

  func once(machine: String?, into run: inout Run) throws {
    let runtime = try makeTemporaryDirectory("apvirt-table-boot")
    defer { try? FileManager.default.removeItem(atPath: runtime) }
    let mount = runtime + "/sys"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: apvirt)
    p.arguments =
      ["up", "--mount", mount, "--state", runtime + "/state"] + (machine.map { ["--machine", $0] } ?? [])
    let devNull = FileHandle(forWritingAtPath: "/dev/null")
    p.standardOutput = devNull
    p.standardError = devNull
    let apmask = Array((mount + "/bus/ap/apmask").utf8CString)
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 16)
    defer { buffer.deallocate() }
    let t0 = monotonicNanoseconds()
    try p.run()
    let deadline = t0 + 30_000_000_000
    var ready: UInt64?
    while monotonicNanoseconds() < deadline && p.isRunning {
      let fd = open(apmask, O_RDONLY | O_CLOEXEC)
      if fd >= 0 {
        let n = read(fd, buffer, 4096)
        close(fd)
        if n > 0 {
          ready = monotonicNanoseconds()
          break
        }
      }
      usleep(200)
    }
    guard let ready else {
      stopDaemon(p, mountPoint: mount)
      throw HarnessError("apvirt up \(machine ?? "(default)") did not get ready")
    }
    run.ready.append(Double(ready - t0))
    usleep(useconds_t(idleSeconds * 1e6))
    run.rss.append(Double(residentBytes(p.processIdentifier) ?? 0))
    stopDaemon(p, mountPoint: mount)
  }
}

/// VmRSS of a process, in bytes.
func residentBytes(_ pid: Int32) -> Int? {
  guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
  for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
    let kb = line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    return kb.map { $0 * 1024 }
  }
  return nil
}
