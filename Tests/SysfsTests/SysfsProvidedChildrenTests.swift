import Sysfs
import SystemPackage
import Testing

/// A table of devices, like a bus's: the names it holds are links to their directories, and
/// one `queues` directory that the table keeps, not the tree.
final class DeviceTable: @unchecked Sendable, SysfsOwner {  // test-only; used from one test at a time
  lazy var sysfsOwnerToken = SysfsOwnerToken(owner: self)
  var linked: [String: SysfsDirectory] = [:]
  var kept: SysfsDirectory?
}

/// The provider of a ``DeviceTable``'s children: stateless, given the table back as owner.
final class DeviceTableProvider: SysfsChildProvider {
  func child(_ name: String, of owner: AnyObject, in directory: SysfsDirectory) -> SysfsProvidedChild? {
    let t = owner as! DeviceTable
    if let k = t.kept, k.name == name { return .directory(k) }
    return t.linked[name].map { .symlink(directory.linkTarget(to: $0)) }
  }

  func childNames(of owner: AnyObject, in directory: SysfsDirectory) -> [String] {
    let t = owner as! DeviceTable
    return Array(t.linked.keys) + (t.kept.map { [$0.name] } ?? [])
  }
}

@Suite("SysfsTree: children computed by a provider look like stored ones")
struct SysfsProvidedChildrenTests {
  /// Two trees, one with stored links, one with the same links computed.
  func trees() -> (stored: SysfsTree, computed: SysfsTree, table: DeviceTable) {
    let stored = makeTree()
    stored.makeDirectories("/devices/ap/card06")
    stored.makeDirectories("/bus/ap/devices").symlink("card06", toAbsolute: "/devices/ap/card06")
    let computed = makeTree()
    let devices = computed.makeDirectories("/bus/ap/devices")
    devices.remove("card05")
    let table = DeviceTable()
    table.linked["card05"] = computed.makeDirectories("/devices/ap/card05")
    table.linked["card06"] = computed.makeDirectories("/devices/ap/card06")
    devices.provideChildren(DeviceTableProvider(), owner: table)
    return (stored, computed, table)
  }

  @Test("lookup, readlink, list, stat and resolution through the link agree")
  func sameAsStored() throws {
    let (stored, computed, table) = trees()
    for t in [stored, computed] {
      #expect(try t.readlink("/bus/ap/devices/card05") == "../../../devices/ap/card05")
      #expect(try t.readlink("/bus/ap/devices/card06") == "../../../devices/ap/card06")
      #expect(try t.list("/bus/ap/devices").map(\.name) == ["card05", "card06"])
      #expect(try t.list("/bus/ap/devices").map(\.kind) == [.symlink, .symlink])
      #expect(try t.readString("/bus/ap/devices/card05/value") == "hello\n")
      #expect(try t.canonicalPath("/bus/ap/devices/card05") == "/devices/ap/card05")
      #expect(try t.info("/bus/ap/devices/card05", followLast: false).kind == .symlink)
      #expect(try t.info("/bus/ap/devices/card05", followLast: false).size == 26)
      #expect(try t.info("/bus/ap/devices/card05").kind == .directory)
      #expect(errno { _ = try t.readlink("/bus/ap/devices/card07") } == .noSuchFileOrDirectory)
      #expect(errno { _ = try t.checkOpen("/bus/ap/devices/card05", read: true, write: false) } == nil)
    }
    _ = table
  }

  @Test("nodes: a computed link is a name in its directory, seen as the table changes")
  func nodes() throws {
    let (_, t, table) = trees()
    let devices = try t.node(at: "/bus/ap/devices")
    let link = try t.node("card06", in: devices)
    #expect(try t.readlink(link) == "../../../devices/ap/card06")
    let entries = try t.entries(devices)
    #expect(entries.map(\.entry.name) == ["card05", "card06"])
    #expect(entries[1].inode == (try t.info(link)).inode)
    // The inode of a link comes from its directory and its target: stable across lookups.
    #expect(try t.info(t.node("card06", in: devices)).inode == (try t.info(link)).inode)
    table.linked["card06"] = nil
    #expect(errno { _ = try t.readlink(link) } == .noSuchFileOrDirectory)
    #expect(errno { _ = try t.node("card06", in: devices) } == .noSuchFileOrDirectory)
    #expect(try t.entries(devices).map(\.entry.name) == ["card05"])
  }

  @Test("the owner journals what leaves its tables; a stored child shadows a computed one")
  func journalAndShadowing() throws {
    let (_, t, table) = trees()
    _ = t.takeRemovedPaths()
    let devices = try t.directory(at: "/bus/ap/devices")
    table.linked["card06"] = nil
    devices.computedChildRemoved("card06")
    #expect(t.takeRemovedPaths() == ["/bus/ap/devices/card06"])
    devices.symlink("card05", toAbsolute: "/bus")
    #expect(try t.readlink("/bus/ap/devices/card05") == "../../")
    #expect(try t.list("/bus/ap/devices").map(\.name) == ["card05"])
    // Removing the stored child uncovers the computed one.
    devices.remove("card05")
    #expect(try t.readlink("/bus/ap/devices/card05") == "../../../devices/ap/card05")
  }

  @Test("a computed directory resolves, lists and goes back up by its parent")
  func computedDirectory() throws {
    let (_, t, table) = trees()
    let card = try t.directory(at: "/devices/ap/card05")
    card.provideChildren(DeviceTableProvider(), owner: table)
    let q = card.makeComputedDirectory("05.0004")
    table.kept = q
    #expect(try t.directory(at: "/devices/ap/card05/05.0004") === q)
    #expect(q.path == "/devices/ap/card05/05.0004")
    #expect(try t.directory(at: "/devices/ap/card05/05.0004/..") === card)
    #expect(try t.list("/devices/ap/card05").map(\.name).contains("05.0004"))
    let node = try t.node("05.0004", in: t.node(at: "/devices/ap/card05"))
    #expect(try t.info(node).kind == .directory)
    _ = t.takeRemovedPaths()
    table.kept = nil
    card.computedDirectoryRemoved(q)
    #expect(q.parent == nil)
    #expect(t.takeRemovedPaths() == ["/devices/ap/card05/05.0004"])
    #expect(errno { _ = try t.info(node) } == .noSuchFileOrDirectory)
  }

  @Test("a provider whose owner is gone serves nothing")
  func ownerGone() throws {
    let t = SysfsTree()
    let d = t.makeDirectories("/bus/ap/devices")
    do {
      let table = DeviceTable()
      table.linked["card05"] = t.makeDirectories("/devices/ap/card05")
      d.provideChildren(DeviceTableProvider(), owner: table)
      #expect(d.contains("card05"))
    }
    #expect(!d.contains("card05"))
    #expect(try t.list("/bus/ap/devices").isEmpty)
  }
}

@Suite("SysfsDirectory: link targets between directories")
struct SysfsLinkTargetTests {
  @Test("linkTarget(to:) is what a stored link to the same directory holds")
  func sameAsStoredLinks() throws {
    let t = SysfsTree()
    let dirs = [
      "/", "/bus", "/bus/ap", "/bus/ap/devices", "/bus/ap/drivers/cex4queue", "/devices/ap",
      "/devices/ap/card05", "/devices/ap/card05/05.0004", "/devices/ap/card06/06.0004",
      "/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough",
    ].map { t.makeDirectories($0) }
    for from in dirs {
      for to in dirs {
        from.symlink("probe", to: to)
        let stored = try t.readlink(from.path == "/" ? "/probe" : from.path + "/probe")
        #expect(from.linkTarget(to: to) == stored, "\(from.path) -> \(to.path)")
        from.remove("probe")
      }
    }
    #expect(
      t.makeDirectories("/bus/ap/devices").linkTarget(to: t.makeDirectories("/devices/ap/card05/05.0004"))
        == "../../../devices/ap/card05/05.0004")
  }
}
