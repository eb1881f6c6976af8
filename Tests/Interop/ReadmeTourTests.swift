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
    let after = text[h.upperBound...]
    guard let open = after.range(of: "\n```\n") else { throw DaemonError(description: "no block") }
    let body = after[open.upperBound...]
    guard let close = body.range(of: "\n```\n") else { throw DaemonError(description: "block not closed") }
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
      script += "echo \(marker)\(i)\n\(local(s.command)) 2>&1\n"
    }
    var env = ProcessInfo.processInfo.environment
    env["PATH"] = bin + ":" + (env["PATH"] ?? "/usr/bin:/bin")
    env["APVIRT_MOUNT"] = d.mount
    env["APVIRT_STATE"] = d.state
    let r = try run("/bin/bash", ["-c", script], environment: env)
    let parts = r.stdout.components(separatedBy: marker).dropFirst()
    #expect(parts.count == steps.count, "\(r.stdout)\(r.stderr)")
    for (s, part) in zip(steps, parts) {
      let printed = String(part.drop { $0 != "\n" }.dropFirst())
      #expect(printed == local(s.expected), "# \(s.command)")
    }
    d.process.map { _ = waitForExit($0) }
    d.process = nil
  }
}
