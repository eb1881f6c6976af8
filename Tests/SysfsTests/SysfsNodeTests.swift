import Sysfs
import SystemPackage
import Testing

/// A node that a FUSE client keeps (as a node id) is asked again and again while the tree
/// changes under it: it must answer what its path answers at that moment, whatever it found
/// before.
@Suite("SysfsNode: a kept node answers what its path answers")
struct SysfsNodeTests {
  /// The node's read and its path's read, side by side (an errno stands for a failed read).
  func reads(_ t: SysfsTree, _ node: SysfsNode, _ path: String) -> (node: String, path: String) {
    func text(_ body: () throws(Errno) -> [UInt8]) -> String {
      do throws(Errno) {
        return String(decoding: try body(), as: UTF8.self)
      } catch {
        return "\(error)"
      }
    }
    return (text { () throws(Errno) in try t.read(node) }, text { () throws(Errno) in try t.read(path) })
  }

  @Test("a group bound or unbound later is seen by a node that was read before")
  func groupsComeAndGo() throws {
    let t = makeTree()
    let card = try t.directory(at: "/devices/ap/card05")
    let first = keep(Device("first"))
    let second = keep(Device("second"))
    let g1 = SysfsAttributeGroup([
      SysfsAttribute.readOnly("online") { (d: Device) throws(Errno) in d.value + "\n" }
    ])
    let g2 = SysfsAttributeGroup([
      SysfsAttribute.readOnly("online") { (d: Device) throws(Errno) in d.value + "!\n" }
    ])
    card.addGroup(g1, owner: first)
    let node = try t.node("online", in: t.node(at: "/devices/ap/card05"))
    #expect(reads(t, node, "/devices/ap/card05/online") == ("first\n", "first\n"))
    // Read again: the same answer, from what the node found.
    #expect(reads(t, node, "/devices/ap/card05/online") == ("first\n", "first\n"))
    // A later group shadows the earlier one, for the node as for the path.
    card.addGroup(g2, owner: second)
    #expect(reads(t, node, "/devices/ap/card05/online") == ("second!\n", "second!\n"))
    card.removeGroup(g2)
    #expect(reads(t, node, "/devices/ap/card05/online") == ("first\n", "first\n"))
    card.removeGroup(g1)
    let gone = "\(Errno.noSuchFileOrDirectory)"
    #expect(reads(t, node, "/devices/ap/card05/online") == (gone, gone))
    #expect(errno { try t.checkOpen(node, read: true, write: false) } == .noSuchFileOrDirectory)
  }

  @Test("when the owner of the group a node found goes, an earlier group's attribute answers")
  func ownerGoneUncoversAnEarlierGroup() throws {
    let t = makeTree()
    let card = try t.directory(at: "/devices/ap/card05")
    let online = SysfsAttribute.readOnly("online") { (d: Device) throws(Errno) in d.value + "\n" }
    card.addGroup(SysfsAttributeGroup([online]), owner: keep(Device("bus")))
    let node: SysfsNode
    do {
      let driver = Device("driver")
      card.addGroup(SysfsAttributeGroup([online]), owner: driver)
      node = try t.node("online", in: t.node(at: "/devices/ap/card05"))
      #expect(reads(t, node, "/devices/ap/card05/online") == ("driver\n", "driver\n"))
    }
    // The driver's object is gone, its group still bound: the directory shows the bus's.
    #expect(reads(t, node, "/devices/ap/card05/online") == ("bus\n", "bus\n"))
  }

  @Test(
    "a node of another tree (a guest's kernel that ran before this one) means what its path means in this one"
  )
  func nodeOfAnotherTree() throws {
    let before = makeTree()
    let node = try before.node("value", in: before.node(at: "/devices/ap/card05"))
    #expect(reads(before, node, "/devices/ap/card05/value") == ("hello\n", "hello\n"))
    let now = makeTree(Device("again"))
    #expect(reads(now, node, "/devices/ap/card05/value") == ("again\n", "again\n"))
    try now.directory(at: "/devices/ap/card05").remove("value")
    let gone = "\(Errno.noSuchFileOrDirectory)"
    #expect(reads(now, node, "/devices/ap/card05/value") == (gone, gone))
    // The tree it came from still answers it from its own directory.
    #expect(reads(before, node, "/devices/ap/card05/value") == ("hello\n", "hello\n"))
  }

  @Test("a stored attribute replaced by a link or a directory is seen by its node")
  func storedChildReplaced() throws {
    let t = makeTree()
    let card = try t.directory(at: "/devices/ap/card05")
    let node = try t.node("value", in: t.node(at: "/devices/ap/card05"))
    #expect(reads(t, node, "/devices/ap/card05/value") == ("hello\n", "hello\n"))
    #expect(errno { try t.checkOpen(node, read: true, write: true) } == nil)
    card.symlink("value", toAbsolute: "/name")
    #expect(reads(t, node, "/devices/ap/card05/value") == ("root\n", "root\n"))
    #expect(try t.readlink(node) == "../../../name")
    card.remove("value")
    card.directory("value")
    let isDirectory = "\(Errno.isDirectory)"
    #expect(reads(t, node, "/devices/ap/card05/value") == (isDirectory, isDirectory))
    #expect(try t.info(node).kind == .directory)
    #expect(errno { try t.checkOpen(node, read: false, write: true) } == .isDirectory)
    card.remove("value")
    card.attribute(valueAttribute, owner: keep(Device("again")))
    #expect(reads(t, node, "/devices/ap/card05/value") == ("again\n", "again\n"))
  }

  @Test("in a directory with a provider, a computed child that appears shadows a group's attribute")
  func computedChildShadowsAGroup() throws {
    let t = makeTree()
    let devices = try t.directory(at: "/bus/ap/devices")
    let table = DeviceTable()
    devices.provideChildren(DeviceTableProvider(), owner: table)
    devices.addGroup(
      SysfsAttributeGroup([SysfsAttribute.readOnly("card06") { (d: Device) throws(Errno) in d.value + "\n" }]
      ),
      owner: keep(Device("attribute")))
    let node = try t.node("card06", in: t.node(at: "/bus/ap/devices"))
    #expect(reads(t, node, "/bus/ap/devices/card06") == ("attribute\n", "attribute\n"))
    // The provider's table changes without the directory seeing it.
    table.linked["card06"] = t.makeDirectories("/devices/ap/card05")
    #expect(try t.info(node).kind == .symlink)
    #expect(try t.readlink(node) == "../../../devices/ap/card05")
    table.linked["card06"] = nil
    #expect(reads(t, node, "/bus/ap/devices/card06") == ("attribute\n", "attribute\n"))
    _ = table
  }

  @Test("a write through a kept node reaches the owner the path reaches")
  func writesFollowTheOwner() throws {
    let old = Device("hello")
    let t = makeTree(old)
    let card = try t.directory(at: "/devices/ap/card05")
    let node = try t.node("value", in: t.node(at: "/devices/ap/card05"))
    #expect(try t.write(node, Array("1\n".utf8)) == 2)
    let new = keep(Device("new"))
    card.attribute(valueAttribute, owner: new)
    #expect(try t.write(node, Array("2\n".utf8)) == 2)
    #expect(old.stored == [Array("1\n".utf8)])
    #expect(new.stored == [Array("2\n".utf8)])
  }
}
