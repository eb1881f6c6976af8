import Foundation

/// What QEMU prints for its informational options before exiting with status 0, without starting
/// a guest: `-version`, `-machine help`, `-cpu help`, `-device help` and `-device DRIVER,help`.
/// The texts list what apvirt emulates (the machine, CPU models, AP features and devices that its
/// command line takes) in the layout of QEMU's own (compared with Debian's qemu-system-s390x 7.2).
public enum QEMUInformation {
  /// `-version` (also `--version`): QEMU's two lines; the copyright runs to the release's year.
  public static func version(_ v: QEMUVersion) -> String {
    """
    QEMU emulator version \(v)
    Copyright (c) 2003-\(releaseYear(v)) Fabrice Bellard and the QEMU Project developers

    """
  }

  /// The year a QEMU release came out: since 3.0 one major version a year, 2.x from 2014 to 2018.
  static func releaseYear(_ v: QEMUVersion) -> Int {
    if v.major >= 3 { return 2015 + v.major }
    switch v.minor {
    case ...1: return 2014
    case 2...5: return 2015
    case 6...8: return 2016
    case 9...11: return 2017
    default: return 2018
    }
  }

  /// `-machine help` (`-M help`, `-machine ?`): the machines apvirt emulates, sorted by type name,
  /// an alias before the machine it names, as `machine_help_func` prints them. They are the ones
  /// `query-machines` answers: the s390-ccw-virtio machine of the emulated version and `none`.
  public static func machines(_ v: QEMUVersion) -> String {
    let versioned = "s390-ccw-virtio-\(v.major).\(v.minor)"
    let desc = "Virtual s390x machine (version \(v.major).\(v.minor))"
    func line(_ name: String, _ text: String) -> String {
      name.padding(toLength: max(20, name.count), withPad: " ", startingAt: 0) + " " + text + "\n"
    }
    return "Supported machines are:\n" + line("none", "empty machine")
      + line("s390-ccw-virtio", desc + " (alias of \(versioned))") + line(versioned, desc + " (default)")
  }

  /// The CPU models `-cpu` takes, with QEMU's descriptions: (name, description, migration-safe).
  static let cpuModels: [(String, String, Bool)] = [
    ("qemu", "QEMU Virtual CPU version 2.5+", true),
    ("max", "Enables all features supported by the accelerator in the current host", false),
    ("host", "KVM only: All recognized features of the current host CPU", false),
    ("z13", "IBM z13 GA1", true), ("z14", "IBM z14 GA1", true), ("z15", "IBM z15 T01 GA1", true),
    ("z16", "IBM 3931 GA1", true),
  ]

  /// The AP features apvirt models, in QEMU's order (facilities, then the misc and UV features).
  static let apFeatures: [(String, String)] = [
    ("apqci", "Query AP Configuration Information facility"), ("apft", "AP Facilities Test facility"),
    ("apqi", "AP-Queue interruption facility"), ("ap", "AP instructions installed"),
    ("appv", "AP instructions installed for secure guests"),
    ("appvi", "AP instructions interruption support for secure guests"),
  ]

  /// From 9.0 QEMU heads the list with "Available CPUs:" and indents it instead of prefixing each
  /// model with the architecture.
  static let availableCPUsHeading = QEMUVersion(9, 0, 0)

  /// `-cpu help` (`-cpu ?`): the models and the AP feature flags, as `s390_cpu_list` prints them.
  public static func cpus(_ v: QEMUVersion) -> String {
    let modern = v >= availableCPUsHeading
    var out = modern ? "Available CPUs:\n" : ""
    let lead = modern ? "  " : "s390 "
    for (name, desc, safe) in cpuModels where CPUModel.knownModels.contains(name) {
      let n = name.padding(toLength: max(15, name.count), withPad: " ", startingAt: 0)
      if safe {
        out +=
          lead + n + " " + desc.padding(toLength: max(35, desc.count), withPad: " ", startingAt: 0)
          + " (migration-safe)\n"
      } else {
        out += lead + n + " " + desc + "\n"
      }
    }
    out += "\nRecognized feature flags:\n"
    for (name, desc) in apFeatures {
      out +=
        (modern ? "  " : "") + name.padding(toLength: max(20, name.count), withPad: " ", startingAt: 0)
        + " " + desc + "\n"
    }
    return out
  }

  /// The devices `-device` takes: (name, bus, alias, description), by QEMU's category.
  static let deviceCategories: [(String, [(String, String, String?, String?)])] = [
    ("Storage", [("virtio-blk-ccw", "virtual-css-bus", "virtio-blk", nil)]),
    (
      "Input",
      [
        ("sclpconsole", "s390-sclp-events-bus", nil, nil),
        ("sclplmconsole", "s390-sclp-events-bus", nil, nil),
      ]
    ),
    (
      "Misc",
      [
        ("vfio-ap", "ap-bus", nil, "VFIO-based AP device assignment"),
        ("virtio-balloon-ccw", "virtual-css-bus", "virtio-balloon", nil),
      ]
    ),
  ]

  /// QEMU's device categories in order; a category after the first is preceded by an empty line.
  static let categoryOrder = [
    "Controller/Bridge/Hub", "USB", "Storage", "Network", "Input", "Display", "Sound", "Misc", "CPU",
    "Watchdog", "Uncategorized",
  ]

  /// `-device help`: the devices apvirt realizes (vfio-ap) or accepts as inert, as
  /// `qdev_print_devinfos` prints them.
  public static func devices() -> String {
    var out = ""
    for (category, devices) in deviceCategories {
      let index = categoryOrder.firstIndex(of: category) ?? 0
      out += (index > 0 ? "\n" : "") + category + " devices:\n"
      for (name, bus, alias, desc) in devices {
        out += "name \"\(name)\", bus \(bus)"
        if let alias { out += ", alias \"\(alias)\"" }
        if let desc { out += ", desc \"\(desc)\"" }
        out += "\n"
      }
    }
    return out
  }

  /// `-device DRIVER,help`: the properties apvirt models, as `qdev_device_help` prints them; nil
  /// for a driver apvirt does not know. For vfio-ap that is `sysfsdev`, and from 10.1
  /// `x-cfg-chg-irq`; QEMU's vfio-ap also has `iommufd` and `fd` (from 9.0), which apvirt refuses
  /// and does not list. The inert devices take any property and model none.
  public static func deviceProperties(_ driver: String, _ v: QEMUVersion) -> String? {
    if driver == "vfio-ap" {
      var out = "vfio-ap options:\n"
      out += property(
        "sysfsdev=<str>", v >= QEMUVersion(10, 0, 0) ? "Host sysfs path of assigned device" : nil)
      if v >= .configChangeIRQ { out += property("x-cfg-chg-irq=<bool>", "on/off (default: true)") }
      return out
    }
    if Guest.inertDrivers.contains(driver) { return "There are no options for \(driver).\n" }
    return nil
  }

  /// One property line: the description, if any, from column 25.
  static func property(_ text: String, _ description: String?) -> String {
    var line = "  " + text
    if let description {
      line = line.padding(toLength: max(24, line.count), withPad: " ", startingAt: 0) + " - " + description
    }
    return line + "\n"
  }
}
