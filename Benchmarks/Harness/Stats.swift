import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// CLOCK_MONOTONIC in nanoseconds: the clock every sample here is taken with.
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// A row's samples, in the row's unit. Percentiles are nearest-rank, so that p99 of a few
/// samples is the largest rather than an interpolation nobody measured.
struct Samples: Sendable {
  private(set) var values: [Double] = []

  init(_ values: [Double] = []) { self.values = values }

  mutating func append(_ v: Double) { values.append(v) }
  mutating func append(contentsOf vs: [Double]) { values.append(contentsOf: vs) }

  var count: Int { values.count }

  func percentile(_ p: Double) -> Double {
    guard !values.isEmpty else { return .nan }
    let sorted = values.sorted()
    let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
    return sorted[min(sorted.count - 1, max(0, rank - 1))]
  }

  var p50: Double { percentile(50) }
  var p90: Double { percentile(90) }
  var p99: Double { percentile(99) }
}

/// How a row's numbers are written.
enum Unit: Sendable {
  case nanoseconds, milliseconds, megabytes, perSecond, requests

  /// `value` is in the unit's base: ns for times, bytes for memory, counts otherwise.
  func format(_ value: Double) -> String {
    guard value.isFinite else { return "n/a" }
    switch self {
    case .nanoseconds:
      if value >= 1_000_000 { return String(format: "%.2f ms", value / 1_000_000) }
      if value >= 10_000 { return String(format: "%.0f us", value / 1000) }
      return String(format: "%.2f us", value / 1000)
    case .milliseconds: return String(format: "%.1f ms", value / 1_000_000)
    case .megabytes: return String(format: "%.1f MB", value / 1_000_000)
    case .perSecond: return String(format: "%.0f/s", value)
    case .requests: return String(format: "%.2f", value)
    }
  }
}

/// One line of the printed table.
struct TableLine: Sendable {
  var row: String
  var what: String
  var unit: Unit
  var samples: Samples
  /// "ratio" column: free text (apvirt/libfuse, measured/target...).
  var ratio: String = ""
  var target: String = ""
  /// Whether the target is met; nil when there is no target on this line.
  var meets: Bool? = nil
}

/// Prints lines as a Markdown table.
func printTable(_ title: String, _ lines: [TableLine]) {
  print("\n### \(title)\n")
  print("| Row | Measured | n | p50 | p90 | p99 | Ratio | Target | Met |")
  print("| --- | --- | ---: | ---: | ---: | ---: | --- | --- | --- |")
  for l in lines {
    let met = l.meets.map { $0 ? "yes" : "**no**" } ?? ""
    let s = l.samples
    print(
      "| \(l.row) | \(l.what) | \(s.count) | \(l.unit.format(s.p50)) | \(l.unit.format(s.p90)) | \(l.unit.format(s.p99)) | \(l.ratio) | \(l.target) | \(met) |"
    )
  }
  fflush(nil)
}

/// `a / b` as "1.23x".
func ratio(_ a: Double, _ b: Double) -> String {
  guard a.isFinite, b.isFinite, b != 0 else { return "n/a" }
  return String(format: "%.2fx", a / b)
}

/// The three percentile ratios of two sample sets: "p50 0.91x, p90 0.95x, p99 1.10x".
func ratios(_ a: Samples, _ b: Samples, against name: String) -> String {
  "\(ratio(a.p50, b.p50)) / \(ratio(a.p90, b.p90)) / \(ratio(a.p99, b.p99)) of \(name)"
}

/// Writes a progress note to stderr (the table goes to stdout).
func note(_ text: String) {
  FileHandle.standardError.write(Data("[apvirt-table] \(text)\n".utf8))
}

/// An integer from the environment, or the default.
func setting(_ name: String, _ fallback: Int) -> Int {
  ProcessInfo.processInfo.environment[name].flatMap { Int($0) } ?? fallback
}

func settingDouble(_ name: String, _ fallback: Double) -> Double {
  ProcessInfo.processInfo.environment[name].flatMap { Double($0) } ?? fallback
}
