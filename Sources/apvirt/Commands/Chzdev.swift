import APModel
import ArgumentParser
import Foundation

/// `apvirt chzdev -t ap apmask=... aqmask=... [-p] [-a]`: the AP part of s390-tools' chzdev.
struct Chzdev: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "chzdev",
    abstract: "Set the AP masks now and for every boot, as s390-tools' chzdev -t ap does.",
    discussion: """
      A mask is a comma-separated list of the adapters (apmask) or domains (aqmask) kept for \
      the host's zcrypt drivers, which replaces the mask (3,5-10,0x25), or of changes to it \
      (+0-4,-0xf0: + keeps for the host, - frees for vfio_ap). Numbers are decimal or 0x-hex.

      -a (--active) writes the running host's /sys/bus/ap/apmask and aqmask; -p (--persistent) \
      keeps the masks in chzdev's udev rule, STATE/etc/udev/rules.d/41-ap.rules, which the host \
      applies at every boot when the AP bus first reports its bindings complete, before the \
      mdevs mdevctl starts at boot. Without either, both. --remove forgets the persistent masks. \
      As in zdev, the persistent masks start empty: a list of changes applies to what was kept \
      before, or to nothing, so give them whole the first time.

        apvirt chzdev -t ap apmask=-5,-6 -a
        apvirt chzdev -t ap apmask=0-4,7-255 aqmask=0-3,5-255
      """)

  @Option(name: [.customShort("t"), .long], help: "The device type: ap.") var type: String

  @Argument(help: ArgumentHelp("apmask=MASK and/or aqmask=MASK.", valueName: "SETTING"))
  var settings: [String] = []

  @Flag(name: [.customShort("a"), .long], help: "Change the running host only.") var active = false
  @Flag(name: [.customShort("p"), .long], help: "Change the persistent masks only.") var persistent = false
  @Flag(name: .long, help: "Forget the persistent masks (the rule file goes).") var remove = false

  @Option(name: .long, help: "The daemon's sysfs mount, for -a.") var mount: String = RuntimePaths
    .environmentMount
  @Option(name: .long, help: "The state directory, for -p.") var state: String = RuntimePaths.environmentState

  func validate() throws {
    guard type == "ap" else { throw ValidationError("-t \(type): apvirt's chzdev knows the type ap only") }
    guard remove || !settings.isEmpty else {
      throw ValidationError("nothing to set: give apmask=MASK or aqmask=MASK")
    }
    for s in settings {
      let (name, _) = Self.split(s)
      guard name == "apmask" || name == "aqmask" else {
        throw ValidationError("'\(s)': the ap type has the settings apmask=MASK and aqmask=MASK")
      }
    }
  }

  static func split(_ setting: String) -> (String, String) {
    guard let eq = setting.firstIndex(of: "=") else { return (setting, "") }
    return (String(setting[..<eq]), String(setting[setting.index(after: eq)...]))
  }

  /// A setting's value applied to `base` with zdev's grammar.
  static func mask(_ name: String, _ value: String, base: APMask) throws -> APMask {
    guard let mask = PersistentAPMasks.apply(value, to: base) else {
      throw ValidationError(
        "\(name)=\(value): not a list of numbers 0-255 and ranges (3,5-10) or of changes (+0-4,-0xf0)")
    }
    return mask
  }

  func run() throws {
    let doActive = active || !persistent
    let doPersistent = persistent || !active || remove
    let paths = RuntimePaths(mount: mount, state: state)
    if remove {
      try PersistentAPMasks().write(state: state)
      print("Persistent AP masks removed (\(PersistentAPMasks.path(state: state)))")
      if settings.isEmpty { return }
    }
    // Active first: a mask the kernel refuses (EBUSY: an mdev holds what it would take back)
    // is not made persistent.
    if doActive {
      for s in settings {
        let (name, value) = Self.split(s)
        let file = paths.mount + "/bus/ap/" + name
        let mask = try Self.mask(
          name, value, base: try MaskParser.hexToBitmap(Array(readTextFile(file).utf8)))
        let fd = open(file, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RuntimeError.errno(file) }
        let text = Array(mask.hexString.utf8)
        let n = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let e = errno
        close(fd)
        guard n == text.count else {
          throw RuntimeError.errno("writing \(name) \(mask.hexString) to \(file)", e)
        }
        print("\(name) \(mask.hexString) (active)")
      }
    }
    // (With --remove and no settings it returned above.)
    if doPersistent {
      var masks = try PersistentAPMasks.read(state: state) ?? PersistentAPMasks()
      for s in settings {
        let (name, value) = Self.split(s)
        let mask = try Self.mask(
          name, value, base: (name == "apmask" ? masks.apmask : masks.aqmask) ?? APMask())
        if name == "apmask" { masks.apmask = mask } else { masks.aqmask = mask }
        print("\(name) \(mask.hexString) (persistent)")
      }
      try masks.write(state: state)
    }
  }
}
