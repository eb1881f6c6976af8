import APModel
import Planning
import SystemPackage

#if canImport(Glibc)
  import Glibc
#endif

/// What a libvirt domain XML says of a scenario's guest: its name, the `-cpu` libvirt gives QEMU
/// for its `<cpu>`, and the mdev of its vfio-ap hostdev. On an LPAR the guests' names and CPU
/// models are not in sysfs but in libvirt's files (`/etc/libvirt/qemu/NAME.xml`, the running
/// domains' `/run/libvirt/qemu/NAME.xml`, `virsh dumpxml` output), which `apvirt capture
/// --libvirt DIR` reads.
public struct LibvirtDomain: Equatable, Sendable {
  public var name: String
  /// QEMU's `-cpu` as libvirt builds it (qemuBuildCpuModelArgStr): `host` for `host-passthrough`
  /// and `host-model` (and for no `<cpu>`: QEMU's default under KVM), the `<model>` for
  /// `custom`, then each `<feature>`: `require` and `force` as `NAME=on`, `disable` and `forbid`
  /// as `NAME=off`, `optional` left to the model.
  public var cpu: String
  /// The UUID of its `<hostdev mode='subsystem' type='mdev' model='vfio-ap'>`, lower case; nil
  /// for a domain without one, which is no scenario guest.
  public var mdev: String?
  /// Whether the XML is a running domain's (`virsh dumpxml` and libvirt's status files give the
  /// `<domain>` an `id`; the persistent definition has none).
  public var running: Bool

  public init(name: String, cpu: String = "host", mdev: String? = nil, running: Bool = false) {
    self.name = name
    self.cpu = cpu
    self.mdev = mdev?.lowercased()
    self.running = running
  }

  /// Why a domain XML cannot be read as one.
  public struct Failure: Error, Equatable, CustomStringConvertible {
    public var description: String
    public init(description: String) { self.description = description }
  }

  /// Reads one domain XML: a `<domain>`, or libvirt's status file whose `<domstatus>` holds one.
  public static func parse(_ text: String) throws(Failure) -> LibvirtDomain {
    let root: XMLReader.Element
    do throws(XMLReader.Failure) {
      root = try XMLReader.parse(text)
    } catch {
      throw Failure(description: "not well-formed XML: \(error)")
    }
    guard let domain = root.name == "domain" ? root : root.child("domain") else {
      throw Failure(description: "line \(root.line): <\(root.name)> is no libvirt domain (expected <domain>)")
    }
    guard let nameElement = domain.child("name") else {
      throw Failure(description: "line \(domain.line): the <domain> has no <name>")
    }
    let name = nameElement.text.trimmingSpace
    guard !name.isEmpty else {
      throw Failure(description: "line \(nameElement.line): the domain's <name> is empty")
    }

    let hostdevs = (domain.child("devices")?.children("hostdev") ?? []).filter {
      $0.attributes["mode"] == "subsystem" && $0.attributes["type"] == "mdev"
        && $0.attributes["model"] == "vfio-ap"
    }
    guard hostdevs.count <= 1 else {
      // What libvirt itself answers when such a domain is defined.
      throw Failure(
        description:
          "line \(hostdevs[1].line): domain \(name): unsupported configuration: Only one hostdev of model vfio-ap is supported"
      )
    }
    var mdev: String?
    if let h = hostdevs.first {
      guard let uuid = h.child("source")?.child("address")?.attributes["uuid"], SysfsSnapshot.isUUID(uuid)
      else {
        throw Failure(
          description:
            "line \(h.line): domain \(name): the vfio-ap <hostdev> has no <source><address uuid='...'/></source> with an mdev's UUID"
        )
      }
      mdev = uuid
    }
    let cpu = try domain.child("cpu").map { c throws(Failure) in try qemuCPU(c, domain: name) } ?? "host"
    return LibvirtDomain(name: name, cpu: cpu, mdev: mdev, running: domain.attributes["id"] != nil)
  }

  /// `-cpu` for a `<cpu>` element.
  static func qemuCPU(_ c: XMLReader.Element, domain: String) throws(Failure) -> String {
    let mode = c.attributes["mode"] ?? (c.child("model") == nil ? "host-model" : "custom")
    var cpu: String
    switch mode {
    case "host-passthrough", "host-model", "maximum":
      cpu = mode == "maximum" ? "max" : "host"
    case "custom":
      guard let model = c.child("model")?.text.trimmingSpace, !model.isEmpty else {
        throw Failure(description: "line \(c.line): domain \(domain): <cpu mode='custom'> has no <model>")
      }
      cpu = model
    default:
      throw Failure(description: "line \(c.line): domain \(domain): unknown <cpu> mode '\(mode)'")
    }
    for f in c.children("feature") {
      guard let name = f.attributes["name"], !name.isEmpty else {
        throw Failure(description: "line \(f.line): domain \(domain): a <feature> without a name")
      }
      switch f.attributes["policy"] ?? "require" {
      case "require", "force": cpu += ",\(name)=on"
      case "disable", "forbid": cpu += ",\(name)=off"
      case "optional": break
      case let p:
        throw Failure(description: "line \(f.line): domain \(domain): unknown feature policy '\(p)'")
      }
    }
    return cpu
  }

  /// Why a directory of domain XMLs cannot be read, naming the file.
  public struct ReadFailure: Error, Equatable, CustomStringConvertible {
    public var path: String
    public var reason: String
    public var description: String { "\(path): \(reason)" }

    public init(path: String, reason: String) {
      self.path = path
      self.reason = reason
    }
  }

  /// Every `*.xml` file in `directory` (libvirt's `/etc/libvirt/qemu`, or files saved with
  /// `virsh dumpxml`), by file name; subdirectories (`autostart`, `networks`) are not read. A
  /// file that cannot be read or is not a domain fails the whole read, naming the file: a
  /// capture that silently lost a guest would replay a different configuration.
  public static func read(directory: String) throws(ReadFailure) -> [(file: String, domain: LibvirtDomain)] {
    let names: [String]
    do throws(Errno) {
      names = try DirectoryListing.names(directory)
    } catch {
      throw ReadFailure(path: directory, reason: "\(error)")
    }
    var found: [(file: String, domain: LibvirtDomain)] = []
    for name in names.sorted() where name.hasSuffix(".xml") && !name.hasPrefix(".") {
      let path = directory + "/" + name
      if DirectoryListing.isDirectory(path) { continue }
      let bytes: [UInt8]
      do throws(Errno) {
        bytes = try FileContents.read(path)
      } catch {
        throw ReadFailure(path: path, reason: "\(error)")
      }
      do throws(Failure) {
        found.append((path, try parse(String(decoding: bytes, as: UTF8.self))))
      } catch {
        throw ReadFailure(path: path, reason: error.description)
      }
    }
    return found
  }
}

extension String {
  var trimmingSpace: String {
    String(
      self.drop { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }.reversed()
        .drop { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }.reversed())
  }
}

/// A directory's entries and a path's type with POSIX calls, failing with the errno, as
/// ``FileContents`` reads files.
enum DirectoryListing {
  static func names(_ path: String) throws(Errno) -> [String] {
    guard let dir = opendir(path) else { throw Errno(rawValue: errno) }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
      }
      if name != "." && name != ".." { names.append(name) }
    }
    return names
  }

  /// Whether `path` is a directory or a link to one.
  static func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
  }
}
