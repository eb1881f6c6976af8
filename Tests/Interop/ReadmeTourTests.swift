import Foundation
import Testing

/// README's session, run line by line as a user would type it: every `# COMMAND` line of the
/// block under "A short session" runs in one bash (so `cd` and variables carry over), and what
/// it prints must be what README shows under it.
///
/// The host is a test daemon rather than `/run/apvirt`: the block's `/run/apvirt` and
/// `/var/lib/apvirt` are replaced by the daemon's directories, and `APVIRT_MOUNT` and
/// `APVIRT_STATE` point the commands without `--mount` at it, as they would a user's shell.
@Suite("Interop: README's session prints what README shows", .serialized)
struct ReadmeTourTests {
  static let readme = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("README.md").path

  struct Step {
    var command: String
    var expected: String
  }

  /// The commands of the first code block after `heading`, with the output README shows for
  /// each. A here-document's lines belong to its command.
  static func steps(under heading: String) throws -> [Step] {
    let text = try String(contentsOfFile: readme, encoding: .utf8)
    guard let h = text.range(of: heading + "\n") else { throw DaemonError(description: "no \(heading)") }
    // The first block of the section that has commands in it (`# ...`).
    var after = text[h.upperBound...]
    var body: Substring = ""
    while let open = after.range(of: "\n```\n") {
      let rest = after[open.upperBound...]
      guard let close = rest.range(of: "\n```\n") else { throw DaemonError(description: "block not closed") }
      if rest.hasPrefix("# ") {
        body = rest[..<close.upperBound]
        break
      }
      after = rest[close.upperBound...]
    }
    guard let close = body.range(of: "\n```\n", options: .backwards) else {
      throw DaemonError(description: "no block of commands under \(heading)")
    }
    var steps: [Step] = []
    var heredoc: String?
    for line in body[..<close.lowerBound].split(separator: "\n", omittingEmptySubsequences: false) {
      if let end = heredoc {
        steps[steps.count - 1].command += "\n" + line
        if line == end { heredoc = nil }
      } else if line.hasPrefix("# ") {
        let command = String(line.dropFirst(2))
        if let r = command.range(of: "<<'") {
          heredoc = String(command[r.upperBound...].prefix { $0 != "'" })
        }
        steps.append(Step(command: command, expected: ""))
      } else if !steps.isEmpty {
        steps[steps.count - 1].expected += line + "\n"
      }
    }
    return steps
  }

  /// What differs between two runs, or between README's interactive shell and `bash -c`, made
  /// the same on both sides: a pid, the kernel log's times, and bash's prefix of an error
  /// (`-bash: ` typed, `bash: line N: ` in a script).
  static func normalized(_ text: String) -> String {
    var t = text.replacing(#/pid \d+/#, with: "pid N")
    t = t.replacing(#/\[ *\d+\.\d{6}\]/#, with: "[TIME]")
    t = t.replacing(#/(?m)^(/bin/)?bash: line \d+: /#, with: "-bash: ")
    return t
  }

  @Test(.enabled(if: Requirement.mdevctl, Requirement.mdevctlMissing))
  func theShortSessionPrintsWhatReadmeShows() throws {
    let steps = try Self.steps(under: "## A short session")
    #expect(steps.count > 10, "README's session has \(steps.count) commands")
    let d = try Daemon()
    let bin = URL(fileURLWithPath: apvirtBinary).deletingLastPathComponent().path
    func local(_ s: String) -> String {
      s.replacingOccurrences(of: "/run/apvirt", with: d.runtime).replacingOccurrences(
        of: "/var/lib/apvirt", with: d.state)
    }
    // One shell for the whole session; a marker before each command splits what it printed.
    let marker = "@@apvirt-step@@"
    var script = "cd \(d.root)\n"
    for (i, s) in steps.enumerated() {
      script += "echo \(marker)\(i)\n{\n\(local(s.command))\n} 2>&1\n"
    }
    var env = ProcessInfo.processInfo.environment
    env["PATH"] = bin + ":" + (env["PATH"] ?? "/usr/bin:/bin")
    env["APVIRT_MOUNT"] = d.mount
    env["APVIRT_STATE"] = d.state
    let r = try run("/bin/bash", ["-c", script], environment: env)
    let parts = r.stdout.components(separatedBy: marker).dropFirst()
    #expect(parts.count == steps.count, "\(r.stdout)\(r.stderr)")
    for (s, part) in zip(steps, parts) {
      let printed = Self.normalized(String(part.drop { $0 != "\n" }.dropFirst()))
      #expect(printed == Self.normalized(local(s.expected)), "# \(s.command)")
    }
    d.process.map { _ = waitForExit($0) }
    d.process = nil
  }
}
