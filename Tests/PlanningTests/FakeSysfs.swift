import APModel
import Foundation
import Planning

/// A sysfs tree written as plain files into a temporary directory, as a `cp -r` copy of a host's
/// `/sys` looks: files with the kernel's texts, `driver` links relative and dangling.
final class FakeSysfs {
  let root: String

  init() throws {
    root = NSTemporaryDirectory() + "apvirt-fake-sysfs-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
  }

  deinit { try? FileManager.default.removeItem(atPath: root) }

  func write(_ relative: String, _ text: String) throws {
    let path = root + "/" + relative
    try FileManager.default.createDirectory(
      atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try text.write(toFile: path, atomically: false, encoding: .utf8)
  }

  func remove(_ relative: String) throws { try FileManager.default.removeItem(atPath: root + "/" + relative) }

  func link(_ relative: String, to target: String) throws {
    try FileManager.default.createSymbolicLink(atPath: root + "/" + relative, withDestinationPath: target)
  }

  /// The AP bus's files.
  func bus(
    apmask: APMask, aqmask: APMask, qci: APMatrix?, maxAdapter: Int = 84, maxDomain: Int = 84,
    features: String? = "APSC APXA QACT RC8A"
  ) throws {
    try write("bus/ap/apmask", apmask.hexString + "\n")
    try write("bus/ap/aqmask", aqmask.hexString + "\n")
    try write("bus/ap/ap_max_adapter_id", "\(maxAdapter)\n")
    try write("bus/ap/ap_max_domain_id", "\(maxDomain)\n")
    try write("bus/ap/ap_adapter_mask", (qci?.apm.hexString ?? "not supported") + "\n")
    try write("bus/ap/ap_usage_domain_mask", (qci?.aqm.hexString ?? "not supported") + "\n")
    try write("bus/ap/ap_control_domain_mask", (qci?.adm.hexString ?? "not supported") + "\n")
    if let features { try write("bus/ap/features", features + "\n") }
    try FileManager.default.createDirectory(atPath: root + "/devices/ap", withIntermediateDirectories: true)
  }

  func card(_ apid: APID, type: String = "CEX8C", config: Bool = true, chkstop: Bool = false) throws {
    let dir = "devices/ap/card\(hex2(apid))"
    try write(dir + "/type", type + "\n")
    try write(dir + "/config", config ? "1\n" : "0\n")
    try write(dir + "/chkstop", chkstop ? "1\n" : "0\n")
    try write(dir + "/online", config && !chkstop ? "1\n" : "0\n")
    try link(dir + "/driver", to: "../../../bus/ap/drivers/cex4card")
  }

  /// A queue bound to `driver` (nil: unbound); vfio_ap's gets `status`.
  func queue(_ q: APQN, driver: String?, status: String? = nil, override: String? = nil) throws {
    let dir = "devices/ap/card\(hex2(q.apid))/\(q)"
    try write(dir + "/config", "1\n")
    try write(dir + "/chkstop", "0\n")
    if let driver {
      try link(dir + "/driver", to: "../../../../bus/ap/drivers/" + driver)
      if driver == "vfio_ap" { try write(dir + "/status", (status ?? "unassigned") + "\n") }
      if driver == "cex4queue" { try write(dir + "/online", "1\n") }
    }
    if let override { try write(dir + "/driver_override", override + "\n") }
  }

  /// An mdev with the files of `kernel` 6.19 (`old`: no `ap_config` nor `guest_matrix`).
  func mdev(_ uuid: String, _ m: APMatrix, guest: APMatrix?, old: Bool = false) throws {
    let dir = "devices/vfio_ap/matrix/" + uuid
    try write(dir + "/matrix", m.matrixText)
    try write(dir + "/control_domains", m.adm.map { hex4($0) + "\n" }.joined())
    if !old { try write(dir + "/ap_config", m.apConfigText) }
    if let guest { try write(dir + "/guest_matrix", guest.matrixText) }
    for a in ["assign_adapter", "unassign_adapter", "assign_domain", "remove"] {
      try write(dir + "/" + a, "")
    }
  }

  func snapshot() throws -> SysfsSnapshot { try SysfsSnapshot.read(root: root) }
}

let uuidA = "11111111-2222-4333-8444-555555555555"
let uuidB = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"

/// A small host: adapters 01-04 and domains 04, 05 (control domains 04-06); apmask frees 01, 02
/// and 07 for vfio_ap. mdev A holds 01.0004, used by a guest; mdev B holds 02 and the
/// over-provisioned 07 x 05, with control domain 06. 02.0004 is unbound; adapter 04 is
/// checkstopped.
func smallHost(old: Bool = false) throws -> FakeSysfs {
  let f = try FakeSysfs()
  try f.bus(
    apmask: APMask.all().subtracting(APMask([1, 2, 7])), aqmask: .all(),
    qci: APMatrix(apm: APMask([1, 2, 3, 4]), aqm: APMask([4, 5]), adm: APMask([4, 5, 6])),
    features: old ? nil : "APSC APXA QACT RC8A")
  for a in [1, 2, 3] { try f.card(a) }
  try f.card(4, chkstop: true)
  try f.queue(APQN(1, 4), driver: "vfio_ap", status: "in use")
  try f.queue(APQN(1, 5), driver: "vfio_ap")
  try f.queue(APQN(2, 4), driver: nil)
  try f.queue(APQN(2, 5), driver: "vfio_ap", status: "assigned")
  for d in [4, 5] {
    try f.queue(APQN(3, d), driver: "cex4queue")
    try f.queue(APQN(4, d), driver: "cex4queue")
  }
  try f.mdev(
    uuidA, APMatrix(apm: APMask([1]), aqm: APMask([4])),
    guest: old ? nil : APMatrix(apm: APMask([1]), aqm: APMask([4])),
    old: old)
  try f.mdev(
    uuidB, APMatrix(apm: APMask([2, 7]), aqm: APMask([5]), adm: APMask([6])),
    guest: old ? nil : APMatrix(apm: APMask([2]), aqm: APMask([5])), old: old)
  return f
}
