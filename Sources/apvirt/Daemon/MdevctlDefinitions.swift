import Foundation
import HostKernel
import SystemPackage

/// mdevctl's persistent definitions (`/etc/mdevctl.d/<parent>/<uuid>`), read at boot to start the
/// mdevs defined with `"start": "auto"`, as udev's `mdevctl start-parent-mdevs matrix` does when
/// the matrix parent appears on a real host.
struct MdevctlDefinitions {
  struct Definition {
    var uuid: String
    var type: String
    var autoStart: Bool
    /// Attribute writes in order; keys may repeat.
    var attributes: [(String, String)]
  }

  let directory: String

  /// The definitions for `parent`, by UUID; unreadable files are reported, not fatal.
  func definitions(parent: String = "matrix") -> (found: [Definition], problems: [String]) {
    let dir = directory + "/" + parent
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return ([], []) }
    var found: [Definition] = []
    var problems: [String] = []
    for name in names.sorted() {
      let path = dir + "/" + name
      guard let data = FileManager.default.contents(atPath: path),
        let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
      else {
        problems.append("\(path): not a JSON object")
        continue
      }
      guard let type = object["mdev_type"] as? String else {
        problems.append("\(path): no mdev_type")
        continue
      }
      var attrs: [(String, String)] = []
      for item in object["attrs"] as? [[String: Any]] ?? [] {
        for (k, v) in item { attrs.append((k, v as? String ?? "\(v)")) }
      }
      found.append(
        Definition(
          uuid: name.lowercased(), type: type, autoStart: (object["start"] as? String) == "auto",
          attributes: attrs))
    }
    return (found, problems)
  }

  /// Whether `start-parent-mdevs` has anything to do at boot: an auto-start definition, or one
  /// it cannot read (which makes it fail).
  var hasBootWork: Bool {
    let (found, problems) = definitions()
    return !problems.isEmpty || found.contains { $0.autoStart }
  }

  /// Why `mdevctl start` of one mdev failed.
  enum StartFailure: Error {
    case create(Errno)
    case attribute(String, String, Errno)
  }

  /// What `mdevctl start` does to the host for one mdev: create it, then write each attribute
  /// in order; on a failed write the half-made mdev is removed again.
  static func start(_ uuid: String, attributes: [(String, String)], on host: EmulatedHost)
    throws(StartFailure)
  {
    let create = "/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create"
    do throws(Errno) {
      try host.write(create, Array(uuid.utf8))
    } catch {
      throw .create(error)
    }
    for (attr, value) in attributes {
      do throws(Errno) {
        try host.write("/devices/vfio_ap/matrix/\(uuid)/\(attr)", Array(value.utf8))
      } catch {
        _ = try? host.write("/devices/vfio_ap/matrix/\(uuid)/remove", Array("1".utf8))
        throw .attribute(attr, value, error)
      }
    }
  }

  /// Starts every auto-start definition of the `vfio_ap-passthrough` type (``start(_:attributes:on:)``
  /// each). Returns one line per definition saying what happened, and whether it failed.
  func startAutoDevices(on host: EmulatedHost) -> [(text: String, failed: Bool)] {
    let (defs, problems) = definitions()
    // mdevctl (1.2) reads every definition of the parent before it starts any: one it cannot
    // parse (a 0-byte file, say) makes `start-parent-mdevs` fail, and `list -d` with it, so
    // no mdev of the parent starts at boot.
    if !problems.isEmpty {
      return (problems + ["no mdev of parent matrix started: mdevctl fails on the definition(s) above"]).map {
        ($0, true)
      }
    }
    var report: [(String, Bool)] = []
    for d in defs where d.autoStart {
      guard d.type == "vfio_ap-passthrough" else {
        report.append(("\(d.uuid): type \(d.type) is not offered by parent matrix", true))
        continue
      }
      do throws(StartFailure) {
        try Self.start(d.uuid, attributes: d.attributes, on: host)
        report.append(("\(d.uuid): started", false))
      } catch {
        switch error {
        case .create(let e): report.append(("\(d.uuid): create failed: \(e)", true))
        case .attribute(let attr, let value, let e):
          report.append(("\(d.uuid): not started, \(attr)=\(value): \(e)", true))
        }
      }
    }
    return report
  }
}
