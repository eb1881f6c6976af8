import APModel
import ArgumentParser
import Foundation
import Planning
import Scenario

#if canImport(Glibc)
  import Glibc
#endif

/// What `plan` and `apply` share: the scenario, the sysfs root, the plan between them.
struct PlanOptions: ParsableArguments {
  @Argument(help: ArgumentHelp("The scenario file whose state to reach.", valueName: "FILE"))
  var file: String

  @OptionGroup var root: SysfsRootOptions

  @Flag(name: .long, help: "Print the plan as JSON.") var json = false

  @Flag(
    name: .customLong("ap-config"),
    help: "Change each mdev that has ap_config (Linux 6.10) with one ap_config write, not assign_*.")
  var apConfig = false

  func load() throws -> (Scenario, SysfsSnapshot, ConfigurationPlan) {
    let scenario: Scenario
    do {
      scenario = try ScenarioLoader.load(path: file)
    } catch {
      throw RuntimeError("\(error)")
    }
    let s = try root.snapshot()
    return (scenario, s, ConfigurationPlan(from: s, to: scenario.planTarget, apConfig: apConfig))
  }
}

enum PlanReport {
  /// The plan as a shell script to run from the sysfs root: a comment header, each write with
  /// its effects as comments under it, then the guests' changes and the queues reset.
  static func text(_ plan: ConfigurationPlan, file: String) -> String {
    var t =
      "# plan: \(plan.before.root) -> \(file): \(plan.steps.count) write\(plan.steps.count == 1 ? "" : "s")\n"
    if plan.steps.isEmpty {
      t += "# nothing to do: \(plan.before.root) already has the scenario's masks and mdevs\n"
      return t
    }
    t += "# run from the sysfs root: cd \(plan.before.root)\n"
    for p in plan.steps {
      t += "\(p.step)\n"
      for e in p.effects { t += "#   \(e)\n" }
    }
    let guests = plan.guestChanges
    if !guests.isEmpty {
      t += "# running guests:\n"
      for g in guests {
        var parts: [String] = []
        if !g.gained.isEmpty { parts.append("gains \(MatrixRules.apqnList(g.gained))") }
        if !g.lost.isEmpty { parts.append("loses \(MatrixRules.apqnList(g.lost))") }
        if !g.controlGained.isEmpty {
          parts.append("gains control domains \(g.controlGained.map(hex4).joined(separator: " "))")
        }
        if !g.controlLost.isEmpty {
          parts.append("loses control domains \(g.controlLost.map(hex4).joined(separator: " "))")
        }
        let who = g.guest.map { "guest \($0) (mdev \(g.mdev))" } ?? "the guest of mdev \(g.mdev)"
        t += "#   \(who): \(parts.isEmpty ? "no change" : parts.joined(separator: ", "))\n"
      }
    }
    let reset = plan.resetQueues
    t +=
      "# queues reset (zeroized): \(reset.isEmpty ? "none" : "\(reset.count): " + MatrixRules.apqnList(reset))\n"
    return t
  }

  static func refusal(_ plan: ConfigurationPlan, file: String) -> String {
    var t = "cannot reach \(file) from \(plan.before.root):\n"
    for c in plan.conflicts { t += "  \(c)\n" }
    return t
  }

  static func stepJSON(_ p: PlannedStep) -> [String: Any] {
    [
      "shell": p.step.description, "path": p.step.path,
      "value": String(decoding: p.step.bytes.dropLast(), as: UTF8.self), "effects": p.effects,
    ]
  }

  static func json(_ plan: ConfigurationPlan, file: String) -> [String: Any] {
    [
      "root": plan.before.root, "scenario": file, "reachable": plan.reachable,
      "writes": plan.steps.map(stepJSON),
      "conflicts": plan.conflicts.map { c -> [String: Any] in
        var d: [String: Any] = ["reasons": c.reasons]
        if let s = c.step { d["write"] = s.description }
        if let e = c.errno { d["errno"] = e.symbolicName }
        return d
      },
      "guests": plan.guestChanges.map { g -> [String: Any] in
        var d: [String: Any] = [
          "mdev": g.mdev, "gains": g.gained.map(\.description), "loses": g.lost.map(\.description),
          "gainsControlDomains": g.controlGained.map(hex4), "losesControlDomains": g.controlLost.map(hex4),
        ]
        if let n = g.guest { d["guest"] = n }
        return d
      },
      "reset": plan.resetQueues.map(\.description),
    ]
  }

  static func printJSON(_ value: [String: Any]) {
    let data = try! JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys])
    print(String(decoding: data, as: UTF8.self))
  }
}

/// `apvirt plan`
struct PlanCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plan",
    abstract: "Show the ordered writes that take a sysfs root to a scenario's masks and mdevs.",
    discussion: """
      Reads the current state (the running emulated host's mount by default; /sys on an LPAR; a \
      plain copy of either) and prints the writes that reach FILE's masks and mdevs, in an order \
      the kernel accepts that never passes through a state it refuses: mdevs that go are removed \
      and matrices shrink first, then the masks free what they lose and reserve what they gain, \
      then mdevs are created and assigned. Each write is predicted with the kernel's rules on the \
      state the writes before it leave, and its effects follow it as comments; then what each \
      running guest gains or loses, and which queues get reset (zeroized). The output is a shell \
      script: run it from the sysfs root.

      A target that cannot be reached is refused (exit status 1) with each conflict: the write \
      the kernel would refuse, its errno, and why. Nothing is written.
      """)

  @OptionGroup var options: PlanOptions

  func run() throws {
    let (_, _, plan) = try options.load()
    if options.json {
      PlanReport.printJSON(PlanReport.json(plan, file: options.file))
    } else if plan.reachable {
      print(PlanReport.text(plan, file: options.file), terminator: "")
    }
    if !plan.reachable {
      if !options.json {
        FileHandle.standardError.write(Data(PlanReport.refusal(plan, file: options.file).utf8))
      }
      throw ExitCode(1)
    }
  }
}

/// `apvirt apply`
struct ApplyCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "apply",
    abstract: "Carry out `apvirt plan`: write, read back, and undo everything on a failure.",
    discussion: """
      Makes the writes `apvirt plan FILE` prints, one at a time, and after each reads back the \
      masks and every mdev's matrix and guest_matrix (not the cards and queues, which no write \
      of the plan touches). When a write fails, or what it reads back is not what the \
      kernel's rules predict, the writes made so far are undone in reverse order, so that the \
      host ends in its old state or in the new one, and apply exits with status 1, naming the \
      write and its errno. A target that cannot be reached is refused before anything is written.

      --persist also keeps the result for the next boot: mdevctl's definitions \
      (STATE/etc/mdevctl.d/matrix/UUID, made with mdevctl define where mdevctl is installed and \
      apply runs as root, else written as it writes them; those of the mdevs the plan removed \
      go) and chzdev's persistent masks (STATE/etc/udev/rules.d/41-ap.rules).
      """)

  @OptionGroup var options: PlanOptions

  @Flag(name: .long, help: "Also write the mdevctl definitions and the persistent masks.")
  var persist = false

  @Option(name: .long, help: "The state directory, for --persist (/ on an LPAR).")
  var state: String = RuntimePaths.environmentState

  /// For tests: `N:COMMAND` runs COMMAND with /bin/sh in the sysfs root before the Nth write.
  @Option(name: .customLong("before-write"), help: .hidden) var hook: String?

  func run() throws {
    let (scenario, _, plan) = try options.load()
    let root = options.root.sysfs
    guard plan.reachable else {
      if options.json {
        PlanReport.printJSON(PlanReport.json(plan, file: options.file))
      } else {
        FileHandle.standardError.write(Data(PlanReport.refusal(plan, file: options.file).utf8))
      }
      throw ExitCode(1)
    }
    let outcome: ConfigurationApply.Outcome
    do {
      outcome = try ConfigurationApply.run(plan, on: POSIXSysfsRoot(root)) { runHook(before: $0, root: root) }
    } catch {
      throw RuntimeError("cannot read the AP configuration: \(error)")
    }
    guard let failure = outcome.failure else {
      var persisted: [String] = []
      if persist { persisted = try persistScenario(scenario, plan: plan) }
      report(plan: plan, persisted: persisted)
      return
    }
    let undo = outcome.undone
    let back = outcome.differences
    if options.json {
      var d: [String: Any] = [
        "applied": false, "failedWrite": failure.step.description, "index": failure.index + 1,
        "reasons": failure.reasons, "undone": undo.map(\.description),
        "undoErrors": outcome.undoErrors.map(\.description), "restored": back.isEmpty, "differences": back,
      ]
      if let e = failure.errno { d["errno"] = e.symbolicName }
      PlanReport.printJSON(d)
    } else {
      var t = "apvirt apply: write \(failure.index + 1) of \(plan.steps.count) failed: \(failure.step)"
      if let e = failure.errno { t += ": \(Explanation.strerror(e)) (\(e.symbolicName))" }
      t += "\n"
      for r in failure.reasons { t += "  \(r)\n" }
      t += "undone: \(undo.count) write\(undo.count == 1 ? "" : "s")\n"
      for u in undo { t += "  \(u)\n" }
      for e in outcome.undoErrors { t += "undo failed: \(e)\n" }
      t +=
        back.isEmpty
        ? "the host is as it was before apply\n"
        : "the host is NOT as before: \(back.joined(separator: "; "))\n"
      FileHandle.standardError.write(Data(t.utf8))
    }
    throw ExitCode(1)
  }

  func report(plan: ConfigurationPlan, persisted: [String]) {
    if options.json {
      var d = PlanReport.json(plan, file: options.file)
      d["applied"] = true
      d["persisted"] = persisted
      PlanReport.printJSON(d)
      return
    }
    var t = PlanReport.text(plan, file: options.file)
    t += "# applied: \(plan.steps.count) write\(plan.steps.count == 1 ? "" : "s"), each read back\n"
    for p in persisted { t += "# persisted: \(p)\n" }
    print(t, terminator: "")
  }

  func runHook(before n: Int, root: String) {
    guard let hook, let colon = hook.firstIndex(of: ":"), Int(hook[..<colon]) == n else { return }
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", String(hook[hook.index(after: colon)...])]
    p.currentDirectoryURL = URL(fileURLWithPath: root)
    try? p.run()
    p.waitUntilExit()
  }

  /// mdevctl's definitions and chzdev's persistent masks for the scenario. The definitions are
  /// mdevctl's own `define` and `undefine` where mdevctl can run (``MdevctlDefine``), else
  /// written as it writes them.
  func persistScenario(_ scenario: Scenario, plan: ConfigurationPlan) throws -> [String] {
    var out: [String] = []
    let dir = state + "/etc/mdevctl.d/matrix"
    let fm = FileManager.default
    let gone = plan.before.mdevs.filter {
      scenario.mdev($0.uuid) == nil && fm.fileExists(atPath: dir + "/" + $0.uuid)
    }
    let mdevctl = MdevctlDefine(sysfs: options.root.sysfs, state: state)
    /// Runs one definition's change, as mdevctl's command or on the file; a file that cannot be
    /// written says where.
    func change(_ body: () throws -> Void) throws {
      do {
        try body()
      } catch let e as RuntimeError {
        throw e
      } catch {
        throw RuntimeError("cannot write mdevctl's definitions in \(dir): \(systemReason(error))")
      }
    }
    try change { try fm.createDirectory(atPath: dir, withIntermediateDirectories: true) }
    for m in scenario.mdevs {
      let file = dir + "/" + m.uuid
      try change {
        if let mdevctl {
          try mdevctl.define(uuid: m.uuid, json: m.mdevctlJSON, replacing: fm.fileExists(atPath: file))
        } else {
          try m.mdevctlJSON.write(toFile: file, atomically: true, encoding: .utf8)
        }
      }
      out.append(file)
    }
    for m in gone {
      let file = dir + "/" + m.uuid
      try change {
        if let mdevctl { try mdevctl.undefine(uuid: m.uuid) } else { try fm.removeItem(atPath: file) }
      }
      out.append(file + " (removed)")
    }
    try PersistentAPMasks(apmask: scenario.apmask, aqmask: scenario.aqmask).write(state: state)
    out.append(PersistentAPMasks.path(state: state))
    return out
  }
}
