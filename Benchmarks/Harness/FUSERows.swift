import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The FUSE rows: the same system calls against every server, interleaved: each batch runs
/// every measurement on every server in turn (the order rotating from batch to batch), so that
/// a slow minute of the machine (other builds share its two cores) falls on all of them alike.
/// Within a batch the open/write/close and open/read/close cycles go round the servers in turns
/// of ``Settings/turn`` cycles: a virtual machine's CPU is taken away for milliseconds at a time
/// (this one's steal time reaches 50%), and turns of 500 cycles (about 10 ms) let that fall on one
/// server more than another: two copies of the libfuse server, pinned to one CPU, measured
/// within 1% of each other in turns of 50 cycles, and up to 3.2% apart in turns of 500
/// (Benchmarks/README.md).
struct FUSERows {
  struct Settings {
    /// Rounds over all servers.
    var batches = setting("FUSE_BATCHES", 30)
    /// open/write/close and open/read/close cycles per server and batch.
    var cycles = setting("FUSE_CYCLES", 500)
    /// Cycles each server runs before the next one's turn, within a batch.
    var turn = max(1, setting("FUSE_TURN", 50))
    /// `echo 5 > attr` per server and batch, in one bash.
    var echoes = setting("FUSE_ECHOES", 100)
    /// How long each parallel-reader sample reads, in seconds.
    var readerSeconds = settingDouble("FUSE_READER_SECONDS", 0.2)
    var readerCounts = [1, 2, 4, 8]
  }

  /// What one server gave over the run.
  struct Results {
    var write = Samples()
    var read = Samples()
    var echo = Samples()
    var readers: [Int: Samples] = [:]
    /// Requests by opcode spent in each kind of segment, and how many operations they served.
    var writeRequests: [UInt32: Int] = [:]
    var readRequests: [UInt32: Int] = [:]
    var echoRequests: [UInt32: Int] = [:]
  }

  let settings: Settings
  let servers: [any BenchServer]
  /// Servers measured in the echo segments only (the reference with GETXATTR ENOSYS).
  var echoOnly: [any BenchServer] = []

  func run() -> [String: Results] {
    var results: [String: Results] = [:]
    for s in servers + echoOnly { results[s.name] = Results() }
    // Warm-up: the first lookups, the reference's threads, the page cache of bash.
    for s in servers {
      for _ in 0..<100 {
        writeCycle(s)
        _ = readCycle(Array(s.readPath.utf8CString), buffer: cycleBuffer)
      }
      _ = echo(s, count: 5)
    }
    for s in echoOnly { _ = echo(s, count: 5) }
    for batch in 0..<settings.batches {
      let order = (0..<servers.count).map { servers[(batch + $0) % servers.count] }
      note("FUSE batch \(batch + 1)/\(settings.batches)")
      let (writes, writeRequests) = inTurns(order) { s in
        let (path, flags) = (Array(s.writePath.utf8CString), s.writeFlags)
        return { timedWriteCycle(path, flags: flags) }
      }
      let (reads, readRequests) = inTurns(order) { s in
        let path = Array(s.readPath.utf8CString)
        return { timedReadCycle(path) }
      }
      for (i, s) in order.enumerated() {
        results[s.name]!.write.append(contentsOf: writes[i])
        results[s.name]!.writeRequests.merge(writeRequests[i], uniquingKeysWith: +)
        results[s.name]!.read.append(contentsOf: reads[i])
        results[s.name]!.readRequests.merge(readRequests[i], uniquingKeysWith: +)
      }
      let echoing = servers + echoOnly
      for s in (0..<echoing.count).map({ echoing[(batch + $0) % echoing.count] }) {
        let (samples, requests) = counting(s) { echo(s, count: settings.echoes) }
        results[s.name]!.echo.append(contentsOf: samples)
        results[s.name]!.echoRequests.merge(requests, uniquingKeysWith: +)
      }
      for k in settings.readerCounts {
        for s in order {
          results[s.name]!.readers[k, default: Samples()].append(
            readRate(s.readPath, readers: k, seconds: settings.readerSeconds))
        }
      }
    }
    return results
  }

  /// `settings.cycles` timed cycles on each of `servers`, in turns of `settings.turn` (the order
  /// rotating from turn to turn), and the requests each served for them: the samples and the
  /// counts by server, in the order of `servers`. `cycle` gives a server's timed cycle, made
  /// before the timing starts.
  func inTurns(
    _ servers: [any BenchServer], _ cycle: (any BenchServer) -> () -> Double
  ) -> ([[Double]], [[UInt32: Int]]) {
    let timed = servers.map(cycle)
    var samples = [[Double]](repeating: [], count: servers.count)
    for i in samples.indices { samples[i].reserveCapacity(settings.cycles) }
    for s in servers { settle(s) }
    let before = servers.map { $0.requestCounts() }
    for (t, start) in stride(from: 0, to: settings.cycles, by: settings.turn).enumerated() {
      let count = min(settings.turn, settings.cycles - start)
      for k in servers.indices {
        let i = (t + k) % servers.count
        for _ in 0..<count { samples[i].append(timed[i]()) }
      }
    }
    var spent = [[UInt32: Int]](repeating: [:], count: servers.count)
    for (i, s) in servers.enumerated() {
      settle(s)
      guard let b = before[i], let after = s.requestCounts() else { continue }
      spent[i] = Self.requests(from: b, to: after)
    }
    return (samples, spent)
  }

  /// The requests `s` served while `body` ran. RELEASE goes out asynchronously after close(2)
  /// returns: before and after, wait (up to 200 ms) until every OPEN has had its RELEASE.
  func counting<T>(_ s: any BenchServer, _ body: () -> T) -> (T, [UInt32: Int]) {
    settle(s)
    let before = s.requestCounts()
    let value = body()
    settle(s)
    guard let before, let after = s.requestCounts() else { return (value, [:]) }
    return (value, Self.requests(from: before, to: after))
  }

  /// The requests by opcode that a server's counters grew by from `before` to `after`.
  static func requests(from before: [UInt32: Int], to after: [UInt32: Int]) -> [UInt32: Int] {
    var spent: [UInt32: Int] = [:]
    for (op, c) in after where c - (before[op] ?? 0) > 0 { spent[op] = c - (before[op] ?? 0) }
    return spent
  }

  func settle(_ s: any BenchServer) {
    for _ in 0..<200 {
      guard let c = s.requestCounts() else { return }
      if (c[18] ?? 0) >= (c[14] ?? 0) { return }  // RELEASE >= OPEN
      usleep(1000)
    }
  }

  // MARK: The table

  func lines(_ results: [String: Results]) -> [TableLine] {
    let tmpfsName = "tmpfs"
    let refName = servers.first { $0 is ReferenceServer }?.name
    var lines: [TableLine] = []
    func comparisons(
      _ name: String, _ pick: (Results) -> Samples, prefersSmaller: Bool, target: String,
      extra: [any BenchServer] = []
    ) -> [TableLine] {
      var out: [TableLine] = []
      for s in servers + extra {
        let mine = pick(results[s.name]!)
        var line = TableLine(row: "", what: s.name, unit: .nanoseconds, samples: mine)
        if s.name.hasPrefix("apvirt") {
          var parts: [String] = []
          if let refName { parts.append(ratios(mine, pick(results[refName]!), against: "libfuse")) }
          for e in extra { parts.append(ratio(mine.p50, pick(results[e.name]!).p50) + " of \(e.name) (p50)") }
          parts.append(ratio(mine.p50, pick(results[tmpfsName]!).p50) + " of tmpfs (p50)")
          line.ratio = parts.joined(separator: "; ")
          line.target = target
          if let refName {
            let r = mine.p50 / pick(results[refName]!).p50
            line.meets = prefersSmaller ? r <= 1.0 : r >= 1.0
          }
        }
        out.append(line)
      }
      out[0].row = name
      return out
    }
    lines += comparisons("open/write/close", { $0.write }, prefersSmaller: true, target: "<= 1.0x libfuse")
    lines += comparisons("open/read/close", { $0.read }, prefersSmaller: true, target: "<= 1.0x libfuse")
    lines += comparisons(
      "`echo 5 > attr` (bash)", { $0.echo }, prefersSmaller: true, target: "<= 1.0x libfuse", extra: echoOnly)
    // Requests per operation, where the server can count them.
    for (label, pick, perOp, target) in [
      ("requests per open/write/close", { (r: Results) in r.writeRequests }, settings.cycles, ""),
      ("requests per open/read/close", { (r: Results) in r.readRequests }, settings.cycles, ""),
      ("requests per `echo 5 > attr`", { (r: Results) in r.echoRequests }, settings.echoes, "3"),
    ] as [(String, (Results) -> [UInt32: Int], Int, String)] {
      var first = true
      let counted = servers + (label.contains("echo") ? echoOnly : [])
      for s in counted where s.countsRequests {
        let spent = pick(results[s.name]!)
        let ops = Double(perOp * settings.batches)
        let total = Double(spent.values.reduce(0, +)) / ops
        let breakdown = spent.sorted { $0.key < $1.key }.map {
          "\(opcodeNames[$0.key] ?? "op\($0.key)") \(String(format: "%.2f", Double($0.value) / ops))"
        }.joined(separator: ", ")
        var line = TableLine(
          row: first ? label : "", what: s.name, unit: .requests, samples: Samples([total]), ratio: breakdown,
          target: s.name.hasPrefix("apvirt") ? target : "")
        if !target.isEmpty && s.name.hasPrefix("apvirt") { line.meets = total <= Double(target)! + 0.05 }
        lines.append(line)
        first = false
      }
    }
    for k in settings.readerCounts {
      var block = comparisons(
        "reads/s, \(k) parallel reader\(k == 1 ? "" : "s")", { $0.readers[k] ?? Samples() },
        prefersSmaller: false,
        target: ">= 1.0x libfuse")
      for i in block.indices { block[i].unit = .perSecond }
      lines += block
    }
    return lines
  }
}

// MARK: - The measured operations

/// open(2), write(2) of "5\n", close(2): `echo 5 > path` without the shell.
@inline(never)
func writeCycle(_ s: any BenchServer) {
  writeCycle(Array(s.writePath.utf8CString), flags: s.writeFlags)
}

@inline(never)
func writeCycle(_ path: [CChar], flags: Int32) {
  let fd = open(path, flags | O_CLOEXEC, 0o644)
  precondition(fd >= 0, "open: \(errno)")
  let n = write(fd, "5\n", 2)
  precondition(n == 2, "write: \(errno)")
  precondition(close(fd) == 0, "close: \(errno)")
}

func timedWriteCycle(_ path: [CChar], flags: Int32) -> Double {
  let t0 = monotonicNanoseconds()
  writeCycle(path, flags: flags)
  return Double(monotonicNanoseconds() - t0)
}

/// open(2) O_RDONLY, one read(2) of up to 4096 bytes into `buffer`, close(2); the count read.
@inline(never)
func readCycle(_ path: [CChar], buffer: UnsafeMutableRawPointer) -> Int {
  let fd = open(path, O_RDONLY | O_CLOEXEC)
  precondition(fd >= 0, "open: \(errno)")
  let n = read(fd, buffer, 4096)
  precondition(n == expectedApmask.utf8.count, "read \(n) bytes")
  precondition(close(fd) == 0, "close: \(errno)")
  return n
}

/// The one buffer of the single-threaded read cycles.
nonisolated(unsafe) let cycleBuffer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 16)

func timedReadCycle(_ path: [CChar]) -> Double {
  let t0 = monotonicNanoseconds()
  _ = readCycle(path, buffer: cycleBuffer)
  return Double(monotonicNanoseconds() - t0)
}

/// `count` times `echo 5 > attr` in one bash, each timed by bash itself ($EPOCHREALTIME
/// around the command, microseconds): what a shell user's store costs, O_TRUNC and all.
func echo(_ s: any BenchServer, count: Int) -> [Double] {
  let script = """
    f=$1; n=$2; out=()
    for ((i = 0; i < n; i++)); do
      t0=$EPOCHREALTIME; echo 5 > "$f"; t1=$EPOCHREALTIME
      out+=("${t0/./} ${t1/./}")
    done
    printf '%s\\n' "${out[@]}"
    """
  let p = Process()
  p.executableURL = URL(fileURLWithPath: "/bin/bash")
  p.arguments = ["-c", script, "bash", s.writePath, "\(count)"]
  var env = ProcessInfo.processInfo.environment
  env["LC_ALL"] = "C"
  p.environment = env
  let pipe = Pipe()
  p.standardOutput = pipe
  do { try p.run() } catch { fatalError("bash: \(error)") }
  let data = pipe.fileHandleForReading.readDataToEndOfFile()
  p.waitUntilExit()
  precondition(p.terminationStatus == 0, "echo loop on \(s.name) failed")
  return String(decoding: data, as: UTF8.self).split(separator: "\n").compactMap { line in
    let f = line.split(separator: " ")
    guard f.count == 2, let a = Int(f[0]), let b = Int(f[1]) else { return nil }
    return Double(b - a) * 1000  // us to ns
  }
}

/// Reads per second of `readers` threads each repeating open/read/close of `path` for `seconds`.
func readRate(_ path: String, readers: Int, seconds: Double) -> Double {
  let cpath = Array(path.utf8CString)
  let total = Atomic<Int>(0)
  let ready = Atomic<Int>(0)
  let go = Atomic<Bool>(false)
  let group = DispatchGroup()
  let duration = UInt64(seconds * 1e9)
  let start = Atomic<UInt64>(0)
  for _ in 0..<readers {
    group.enter()
    let t = Thread {
      let buffer = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 16)
      defer { buffer.deallocate() }
      ready.add(1, ordering: .relaxed)
      while !go.load(ordering: .acquiring) { sched_yield() }
      let end = start.load(ordering: .relaxed) + duration
      var n = 0
      while monotonicNanoseconds() < end {
        _ = readCycle(cpath, buffer: buffer)
        n += 1
      }
      total.add(n, ordering: .relaxed)
      group.leave()
    }
    t.start()
  }
  while ready.load(ordering: .relaxed) < readers { usleep(100) }
  let t0 = monotonicNanoseconds()
  start.store(t0, ordering: .relaxed)
  go.store(true, ordering: .releasing)
  group.wait()
  let elapsed = Double(monotonicNanoseconds() - t0) / 1e9
  return Double(total.load(ordering: .relaxed)) / elapsed
}
