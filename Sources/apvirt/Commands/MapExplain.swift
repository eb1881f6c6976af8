import ArgumentParser
import Foundation
import Planning

#if canImport(Glibc)
  import Glibc
#endif

/// The sysfs root that `map` and `explain` read.
struct SysfsRootOptions: ParsableArguments {
  @Option(
    name: .long,
    help: ArgumentHelp(
      "The sysfs root to read: the emulated host's mount (the default, APVIRT_MOUNT), /sys on an LPAR, or a copy of either (cp -r).",
      valueName: "ROOT"))
  var sysfs: String = RuntimePaths.environmentMount

  func snapshot() throws -> SysfsSnapshot {
    do {
      return try SysfsSnapshot.read(root: sysfs)
    } catch {
      throw RuntimeError("cannot read the AP configuration: \(error)")
    }
  }
}

/// `apvirt map`
struct MapCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "map",
    abstract: "Show who owns every APQN: the adapters x domains grid and the control domains.",
    discussion: """
      Reads a sysfs root (the running emulated host's mount by default; /sys on an LPAR; a plain \
      copy of either) and prints a row per adapter and a column per domain, in blocks of 64 \
      domains so that it fits 80 columns:

        h  a host (zcrypt) driver has the queue: apmask and aqmask reserve it
        .  free: bound to vfio_ap, no mdev holds it
        a  held by mdev a (the mdevs are listed below the grid); A: used by its guest
        ?  unbound   -  deconfigured   !  checkstopped
        blank: the host's configuration does not have the APQN

      The row ctl shows the control domains: . the host's, a letter an mdev's, * several mdevs'. \
      On a terminal the symbols are coloured. `apvirt explain APQN` says why a cell is what it is.
      """)

  @OptionGroup var root: SysfsRootOptions
  @Flag(name: .long, help: "Print the map as JSON.") var json = false
  @Option(
    name: .long, help: ArgumentHelp("Also write the map as one self-contained HTML page.", valueName: "FILE"))
  var html: String?

  func run() throws {
    let map = MatrixMap(try root.snapshot())
    if let html {
      do {
        try map.html().write(toFile: html, atomically: true, encoding: .utf8)
      } catch {
        throw RuntimeError("\(html): \(systemReason(error))")
      }
    }
    if json {
      print(map.json(), terminator: "")
    } else {
      let color =
        isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"] == nil
        && ProcessInfo.processInfo.environment["TERM"] != "dumb"
      print(map.text(color: color), terminator: "")
    }
  }
}

/// `apvirt explain`
struct ExplainCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "explain",
    abstract: "Say who owns an APQN, what an mdev's guest gets, or what a write would do, and why.",
    discussion: """
      SUBJECT is one of:
        05.0004              an APQN: its owner, and why (mask bits, driver, mdev,
                             guest)
        UUID                 an mdev: its matrix and guest_matrix, and why an
                             adapter or domain is missing from guest_matrix
        'echo VALUE > PATH'  a write not yet made (assign_*, unassign_*,
                             ap_config, bus/ap/apmask, bus/ap/aqmask): the errno
                             the kernel would return and why, or what it would
                             change; PATH may be abbreviated (.../UUID/ap_config)

      Nothing is written: the answer comes from the kernel's rules applied to what \
      the sysfs root shows. A write predicted to fail exits with status 2.
      """)

  @OptionGroup var root: SysfsRootOptions
  @Argument(help: ArgumentHelp("An APQN, an mdev's UUID, or 'echo VALUE > PATH'.", valueName: "SUBJECT"))
  var subject: String

  func run() throws {
    let subject: ExplainSubject
    do {
      subject = try ExplainSubject.parse(self.subject)
    } catch {
      throw ValidationError(error.description)
    }
    let s = try root.snapshot()
    for line in Explanation.lines(subject, in: s) { print(line) }
    if case .write(let w) = subject, !MatrixRules.predict(w, in: s).succeeds {
      throw ExitCode(2)
    }
  }
}
