import Sysfs
import SystemPackage
import Testing

@Suite("SysfsTree: directories, groups and links")
struct SysfsTreeStructureTests {
  @Test("directories are created once and know their path")
  func directories() throws {
    let tree = SysfsTree()
    let card = tree.makeDirectories("/devices/ap/card05")
    #expect(card.path == "/devices/ap/card05")
    #expect(card.name == "card05")
    #expect(card.parent?.path == "/devices/ap")
    #expect(tree.root.path == "/")
    #expect(tree.makeDirectories("devices/ap/card05/") === card)
    #expect(try tree.directory(at: "/devices/ap/card05") === card)
    #expect(try tree.directory(at: "/") === tree.root)
    let ap = try tree.directory(at: "/devices/ap")
    #expect(ap.directory("card05") === card)
    #expect(ap.existingDirectory("card05") === card)
    #expect(ap.existingDirectory("card06") == nil)
    #expect(ap.contains("card05") && !ap.contains("card06"))
    #expect(card.serial != ap.serial)
  }

  @Test("removing a child")
  func remove() throws {
    let tree = makeTree()
    let ap = try tree.directory(at: "/devices/ap")
    let card = try tree.directory(at: "/devices/ap/card05")
    ap.remove("card05")
    #expect(card.parent == nil)
    #expect(errno { _ = try tree.directory(at: "/devices/ap/card05") } == .noSuchFileOrDirectory)
    // The link is left dangling.
    #expect(try tree.readlink("/bus/ap/devices/card05") == "../../../devices/ap/card05")
    #expect(errno { _ = try tree.list("/bus/ap/devices/card05") } == .noSuchFileOrDirectory)
    let root = tree.root
    root.remove("name")
    #expect(!root.contains("name"))
  }

  @Test("attribute groups bind their owner and can be removed")
  func groups() throws {
    let tree = SysfsTree()
    let a = tree.makeDirectories("/devices/ap/card05/05.0004")
    let b = tree.makeDirectories("/devices/ap/card05/05.0005")
    let group = SysfsAttributeGroup([
      .readOnly("driver_name") { (d: Driver) throws(Errno) in d.name + "\n" },
      .readOnly("online") { (_: Driver) throws(Errno) in "1\n" },
    ])
    a.addGroup(group, owner: keepDriver(Driver("cex4queue")))
    b.addGroup(group, owner: keepDriver(Driver("vfio_ap")))
    #expect(a.hasGroup(group))
    #expect(try tree.readString("/devices/ap/card05/05.0004/driver_name") == "cex4queue\n")
    #expect(try tree.readString("/devices/ap/card05/05.0005/driver_name") == "vfio_ap\n")
    #expect(a.entryNames == ["driver_name", "online"])
    #expect(a.contains("online"))
    #expect(try tree.list("/devices/ap/card05/05.0004").map(\.kind) == [.attribute, .attribute])

    a.removeGroup(group)
    #expect(!a.hasGroup(group))
    #expect(b.hasGroup(group))
    #expect(a.entryNames.isEmpty)
    #expect(errno { _ = try tree.read("/devices/ap/card05/05.0004/driver_name") } == .noSuchFileOrDirectory)
    #expect(try tree.readString("/devices/ap/card05/05.0005/online") == "1\n")
  }

  @Test("a plain child shadows a group attribute; a later group shadows an earlier one")
  func groupPrecedence() throws {
    let tree = SysfsTree()
    let d = tree.makeDirectories("/d")
    let g1 = SysfsAttributeGroup([.readOnly("x") { (o: Driver) throws(Errno) in "g1 " + o.name }])
    let g2 = SysfsAttributeGroup([.readOnly("x") { (o: Driver) throws(Errno) in "g2 " + o.name }])
    d.addGroup(g1, owner: keepDriver(Driver("a")))
    d.addGroup(g2, owner: keepDriver(Driver("b")))
    #expect(try tree.readString("/d/x") == "g2 b")
    #expect(d.entryNames == ["x"])
    d.removeGroup(g2)
    #expect(try tree.readString("/d/x") == "g1 a")
    d.attribute(
      .readOnly("x") { (o: Driver) throws(Errno) in "plain " + o.name }, owner: keepDriver(Driver("c")))
    d.addGroup(g2, owner: keepDriver(Driver("b")))
    #expect(try tree.readString("/d/x") == "plain c")
  }

  @Test("symlinks: relative targets and toAbsolute through the common ancestor")
  func symlinks() throws {
    let tree = makeTree()
    #expect(try tree.readlink("/bus/ap/devices/card05") == "../../../devices/ap/card05")
    let drivers = tree.makeDirectories("/bus/ap/drivers/cex4card")
    let card = try tree.directory(at: "/devices/ap/card05")
    card.symlink("driver", toAbsolute: drivers.path)
    #expect(try tree.readlink("/devices/ap/card05/driver") == "../../../bus/ap/drivers/cex4card")
    let mdev = tree.makeDirectories("/devices/vfio_ap/matrix/62177883-f1bb-47f0-914d-32a22e3a8804")
    tree.makeDirectories("/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough")
    mdev.symlink("mdev_type", toAbsolute: "/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough")
    #expect(
      try tree.readlink("/devices/vfio_ap/matrix/62177883-f1bb-47f0-914d-32a22e3a8804/mdev_type")
        == "../mdev_supported_types/vfio_ap-passthrough")
    #expect(
      try tree.canonicalPath("/devices/vfio_ap/matrix/62177883-f1bb-47f0-914d-32a22e3a8804/mdev_type")
        == "/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough")
    tree.root.symlink("top", toAbsolute: "/devices/ap/card05")
    #expect(try tree.readlink("/top") == "devices/ap/card05")
    tree.makeDirectories("/class/misc").symlink("ap", toAbsolute: "/devices/ap")
    #expect(try tree.readlink("/class/misc/ap") == "../../devices/ap")
    let devices = try tree.directory(at: "/devices")
    devices.symlink("down", toAbsolute: "/devices/ap/card05")
    #expect(try tree.readlink("/devices/down") == "ap/card05")
    devices.symlink("rel", to: "ap/card05")
    #expect(try tree.readlink("/devices/rel") == "ap/card05")
    #expect(try tree.canonicalPath("/devices/rel") == "/devices/ap/card05")
  }

  @Test("paths resolve through intermediate and final symlinks")
  func resolution() throws {
    let tree = makeTree()
    #expect(try tree.readString("/bus/ap/devices/card05/hwtype") == "14\n")
    #expect(try tree.directory(at: "/bus/ap/devices/card05") === tree.directory(at: "/devices/ap/card05"))
    #expect(try tree.list("/bus/ap/devices/card05") == tree.list("/devices/ap/card05"))
    // A link to a link.
    tree.root.symlink("alias", to: "bus/ap/devices/card05")
    #expect(try tree.readString("/alias/hwtype") == "14\n")
    #expect(try tree.canonicalPath("/alias") == "/devices/ap/card05")
    // A link to an attribute, read and written through.
    let card = try tree.directory(at: "/devices/ap/card05")
    card.symlink("v", to: "value")
    #expect(try tree.readString("/bus/ap/devices/card05/v") == "hello\n")
    #expect(try tree.canonicalPath("/bus/ap/devices/card05/v") == "/devices/ap/card05/value")
    // Relative paths start at the root.
    #expect(try tree.readString("devices/ap/card05/hwtype") == "14\n")
  }

  @Test("'.' and '..' are resolved physically, '..' of the root is the root")
  func dots() throws {
    let tree = makeTree()
    #expect(try tree.canonicalPath("/devices/ap/../ap/./card05") == "/devices/ap/card05")
    #expect(try tree.canonicalPath("/bus/ap/devices/card05/..") == "/devices/ap")
    #expect(try tree.canonicalPath("/..") == "/")
    #expect(try tree.canonicalPath("/../../devices") == "/devices")
    #expect(try tree.canonicalPath("/devices/.") == "/devices")
    #expect(try tree.canonicalPath("//devices///ap/") == "/devices/ap")
    #expect(try tree.readString("/devices/ap/card05/../card05/hwtype") == "14\n")
  }

  @Test("readlink")
  func readlink() {
    let tree = makeTree()
    #expect(errno { _ = try tree.readlink("/devices/ap/card05") } == .invalidArgument)
    #expect(errno { _ = try tree.readlink("/devices/ap/card05/hwtype") } == .invalidArgument)
    #expect(errno { _ = try tree.readlink("/bus/ap/devices/card06") } == .noSuchFileOrDirectory)
    // A link inside a linked directory.
    let card = try? tree.directory(at: "/devices/ap/card05")
    card?.symlink("subsystem", toAbsolute: "/bus/ap")
    #expect((try? tree.readlink("/bus/ap/devices/card05/subsystem")) == "../../../bus/ap")
  }

  @Test("a symlink loop is ELOOP")
  func loop() {
    let tree = SysfsTree()
    tree.root.symlink("a", to: "b")
    tree.root.symlink("b", to: "a")
    tree.root.symlink("self", to: "self")
    tree.makeDirectories("/d").symlink("up", to: "../d/up")
    for path in ["/a", "/b", "/self", "/a/x", "/d/up", "/d/up/y"] {
      #expect(errno { _ = try tree.read(path) } == .tooManySymbolicLinkLevels)
      #expect(errno { _ = try tree.info(path) } == .tooManySymbolicLinkLevels)
      #expect(errno { _ = try tree.canonicalPath(path) } == .tooManySymbolicLinkLevels)
    }
    #expect(errno { _ = try tree.list("/a") } == .tooManySymbolicLinkLevels)
    #expect(errno { try tree.checkOpen("/a", read: true, write: false) } == .tooManySymbolicLinkLevels)
    // lstat and readlink do not follow the last link.
    #expect((try? tree.info("/a", followLast: false))?.kind == .symlink)
    #expect((try? tree.readlink("/a")) == "b")
  }

  @Test("a long but finite chain of links resolves")
  func chain() throws {
    let tree = SysfsTree()
    tree.makeDirectories("/target")
    tree.root.symlink("l0", to: "target")
    for i in 1...30 { tree.root.symlink("l\(i)", to: "l\(i - 1)") }
    #expect(try tree.canonicalPath("/l30") == "/target")
  }

  @Test("missing names are ENOENT")
  func enoent() {
    let tree = makeTree()
    for path in [
      "/nope", "/devices/nope", "/devices/nope/x", "/devices/ap/card05/nope", "/bus/ap/devices/card06",
    ] {
      #expect(errno { _ = try tree.read(path) } == .noSuchFileOrDirectory)
      #expect(errno { _ = try tree.info(path) } == .noSuchFileOrDirectory)
      #expect(errno { try tree.checkOpen(path, read: true, write: false) } == .noSuchFileOrDirectory)
      #expect(errno { _ = try tree.write(path, "1") } == .noSuchFileOrDirectory)
    }
    tree.root.symlink("dangling", to: "devices/ap/card99")
    #expect(errno { _ = try tree.info("/dangling") } == .noSuchFileOrDirectory)
    #expect((try? tree.info("/dangling", followLast: false))?.kind == .symlink)
  }

  @Test("an attribute used as a directory is ENOTDIR")
  func enotdir() {
    let tree = makeTree()
    #expect(errno { _ = try tree.read("/devices/ap/card05/hwtype/x") } == .notDirectory)
    #expect(errno { _ = try tree.info("/name/x") } == .notDirectory)
    #expect(errno { _ = try tree.directory(at: "/devices/ap/card05/hwtype") } == .notDirectory)
    #expect(errno { _ = try tree.list("/devices/ap/card05/value") } == .notDirectory)
    // Through a link to an attribute.
    tree.root.symlink("hw", to: "devices/ap/card05/hwtype")
    #expect(errno { _ = try tree.read("/hw/x") } == .notDirectory)
  }

  @Test("list: sorted names with kinds, group attributes included")
  func list() throws {
    let tree = makeTree()
    let card = try tree.directory(at: "/devices/ap/card05")
    card.directory("05.0004")
    card.symlink("subsystem", toAbsolute: "/bus/ap")
    card.addGroup(
      SysfsAttributeGroup([.readOnly("type") { (_: Device) throws(Errno) in "CEX8C\n" }]),
      owner: keep(Device("")))
    let entries = try tree.list("/devices/ap/card05")
    #expect(entries.map(\.name) == ["05.0004", "hwtype", "reset", "subsystem", "type", "value"])
    #expect(entries.map(\.kind) == [.directory, .attribute, .attribute, .symlink, .attribute, .attribute])
    #expect(try tree.list("/").map(\.name) == ["bus", "devices", "name"])
    #expect(try tree.list("/").map(\.kind) == [.directory, .directory, .attribute])
    let links = try tree.list("/bus/ap/devices")
    #expect(links.map(\.name) == ["card05"] && links.map(\.kind) == [.symlink])
    #expect(try tree.list("/devices/ap/card05/05.0004").isEmpty)
  }

  @Test("info: modes, sizes and inodes")
  func info() throws {
    let tree = makeTree()
    let dir = try tree.info("/devices/ap/card05")
    #expect(dir.kind == .directory && dir.mode == 0o755 && dir.size == 0)
    #expect(dir.inode == (try tree.directory(at: "/devices/ap/card05")).serial)
    #expect(try tree.info("/devices/ap/card05/hwtype") == tree.info("/devices/ap/card05/hwtype"))
    let ro = try tree.info("/devices/ap/card05/hwtype")
    #expect(ro.kind == .attribute && ro.mode == 0o444 && ro.size == 4096)
    let wo = try tree.info("/devices/ap/card05/reset")
    #expect(wo.kind == .attribute && wo.mode == 0o200 && wo.size == 4096)
    let rw = try tree.info("/devices/ap/card05/value")
    #expect(rw.kind == .attribute && rw.mode == 0o644 && rw.size == 4096)
    #expect(Set([ro.inode, wo.inode, rw.inode, dir.inode]).count == 4)
    let link = try tree.info("/bus/ap/devices/card05", followLast: false)
    #expect(link.kind == .symlink && link.mode == 0o777)
    #expect(link.size == "../../../devices/ap/card05".utf8.count)
    #expect(try tree.info("/bus/ap/devices/card05") == dir)
    #expect(try tree.info("/bus/ap/devices/card05/hwtype") == ro)
    #expect(try tree.info("/").kind == .directory)
  }

  @Test("canonicalPath")
  func canonicalPath() throws {
    let tree = makeTree()
    #expect(try tree.canonicalPath("/") == "/")
    #expect(try tree.canonicalPath("") == "/")
    #expect(try tree.canonicalPath("/name") == "/name")
    #expect(try tree.canonicalPath("/bus/ap/devices/card05") == "/devices/ap/card05")
    #expect(try tree.canonicalPath("/bus/ap/devices/card05/hwtype") == "/devices/ap/card05/hwtype")
    #expect(errno { _ = try tree.canonicalPath("/bus/ap/devices/card06") } == .noSuchFileOrDirectory)
  }
}

@Suite("SysfsTree: open, read and write")
struct SysfsTreeIOTests {
  @Test("checkOpen: EACCES for a mode or callback that is missing, EISDIR for writing a directory")
  func checkOpen() {
    let tree = makeTree()
    let card = "/devices/ap/card05"
    #expect(errno { try tree.checkOpen("\(card)/reset", read: true, write: false) } == .permissionDenied)
    #expect(errno { try tree.checkOpen("\(card)/reset", read: false, write: true) } == nil)
    #expect(errno { try tree.checkOpen("\(card)/reset", read: true, write: true) } == .permissionDenied)
    #expect(errno { try tree.checkOpen("\(card)/hwtype", read: false, write: true) } == .permissionDenied)
    #expect(errno { try tree.checkOpen("\(card)/hwtype", read: true, write: false) } == nil)
    #expect(errno { try tree.checkOpen("\(card)/value", read: true, write: true) } == nil)
    #expect(errno { try tree.checkOpen(card, read: true, write: false) } == nil)
    #expect(errno { try tree.checkOpen(card, read: false, write: true) } == .isDirectory)
    #expect(errno { try tree.checkOpen("/bus/ap/devices/card05", read: false, write: true) } == .isDirectory)
    #expect(
      errno { try tree.checkOpen("/bus/ap/devices/card05/hwtype", read: false, write: true) }
        == .permissionDenied)
  }

  @Test("the mode and the callbacks must both allow an access")
  func modeAndCallbacks() throws {
    let tree = SysfsTree()
    let d = tree.makeDirectories("/d")
    let owner = Device("x")
    // Mode says writable, but there is no store; mode says read-only, but there is a store.
    d.attribute(
      SysfsAttribute("nostore", mode: 0o644, show: { (o: Device) throws(Errno) in o.value }), owner: owner)
    d.attribute(
      SysfsAttribute(
        "rostore", mode: 0o444, show: { (o: Device) throws(Errno) in o.value },
        store: { (o: Device, b: [UInt8]) throws(Errno) in o.stored.append(b) }), owner: owner)
    d.attribute(
      SysfsAttribute("noshow", mode: 0o644, store: { (o: Device, b) throws(Errno) in o.stored.append(b) }),
      owner: owner)
    #expect(errno { try tree.checkOpen("/d/nostore", read: false, write: true) } == .permissionDenied)
    #expect(errno { try tree.checkOpen("/d/rostore", read: false, write: true) } == .permissionDenied)
    #expect(errno { _ = try tree.write("/d/rostore", "1") } == .permissionDenied)
    #expect(errno { try tree.checkOpen("/d/noshow", read: true, write: false) } == .permissionDenied)
    #expect(errno { _ = try tree.read("/d/noshow") } == .permissionDenied)
    #expect(owner.stored.isEmpty)
    #expect(valueAttribute.isReadable && valueAttribute.isWritable)
    #expect(readOnlyAttribute.isReadable && !readOnlyAttribute.isWritable && readOnlyAttribute.mode == 0o444)
    #expect(
      !writeOnlyAttribute.isReadable && writeOnlyAttribute.isWritable && writeOnlyAttribute.mode == 0o200)
    #expect(valueAttribute.mode == 0o644)
  }

  @Test("read returns show's text; reads of directories and write-only attributes fail")
  func read() throws {
    let device = Device("hello")
    let tree = makeTree(device)
    #expect(try tree.read("/devices/ap/card05/value") == Array("hello\n".utf8))
    #expect(try tree.readString("/name") == "root\n")
    device.value = "changed"
    #expect(try tree.readString("/bus/ap/devices/card05/value") == "changed\n")
    #expect(errno { _ = try tree.read("/devices/ap/card05/reset") } == .permissionDenied)
    #expect(errno { _ = try tree.read("/devices/ap/card05") } == .isDirectory)
    device.showError = .ioError
    #expect(errno { _ = try tree.read("/devices/ap/card05/value") } == .ioError)
  }

  @Test("read cuts show output at 4095 bytes and reports it")
  func readTruncates() throws {
    let device = Device("")
    let tree = makeTree(device)
    var messages: [String] = []
    tree.onTruncatedShow = { messages.append($0) }

    device.value = String(repeating: "a", count: 4094)  // + "\n" = 4095 bytes
    #expect(try tree.read("/devices/ap/card05/value").count == 4095)
    #expect(messages.isEmpty)

    device.value = String(repeating: "b", count: 4095)  // 4096 bytes
    let cut = try tree.read("/devices/ap/card05/value")
    #expect(cut == Array(repeating: UInt8(ascii: "b"), count: 4095))
    #expect(messages.count == 1)
    #expect(messages.first?.contains("/devices/ap/card05/value") == true)

    device.value = String(repeating: "c", count: 10000)
    #expect(try tree.read("/bus/ap/devices/card05/value").count == 4095)
    #expect(messages.count == 2)

    tree.onTruncatedShow = nil
    #expect(try tree.read("/devices/ap/card05/value").count == 4095)
  }

  @Test("write hands store the exact bytes and returns the count")
  func write() throws {
    let device = Device("")
    let tree = makeTree(device)
    #expect(try tree.write("/devices/ap/card05/value", "1\n") == 2)
    #expect(try tree.write("/bus/ap/devices/card05/reset", [0x31, 0x00, 0x32]) == 3)
    let page = [UInt8](repeating: 0x41, count: 4096)
    #expect(try tree.write("/devices/ap/card05/value", page) == 4096)
    #expect(device.stored == [Array("1\n".utf8), [0x31, 0x00, 0x32], page])
  }

  @Test("a write of more than a page stores the first page and returns a short count")
  func writeTooBig() throws {
    let device = Device("")
    let tree = makeTree(device)
    let big = (0..<5000).map { UInt8(ascii: "a") + UInt8($0 % 26) }
    #expect(try tree.write("/devices/ap/card05/value", big) == 4096)
    #expect(device.stored == [Array(big.prefix(4096))])
    // What a writer that retries the rest (stdio's fflush) sends next is a store of its own.
    #expect(try tree.write("/devices/ap/card05/value", Array(big.dropFirst(4096))) == 904)
    #expect(device.stored == [Array(big.prefix(4096)), Array(big.dropFirst(4096))])
    // One byte over a page, and far over it: still one page.
    #expect(try tree.write("/devices/ap/card05/value", [UInt8](repeating: 0x41, count: 4097)) == 4096)
    #expect(try tree.write("/bus/ap/devices/card05/value", [UInt8](repeating: 0x42, count: 200_000)) == 4096)
    #expect(device.stored.suffix(2).map(\.count) == [4096, 4096])
    #expect(device.stored.last == [UInt8](repeating: 0x42, count: 4096))
  }

  @Test("a long write that store refuses fails whole, with store's errno")
  func writeTooBigRefused() {
    let device = Device("")
    device.storeError = .invalidArgument
    let tree = makeTree(device)
    let big = [UInt8](repeating: 0x41, count: 5000)
    #expect(errno { _ = try tree.write("/devices/ap/card05/value", big) } == .invalidArgument)
    #expect(device.stored.isEmpty)
  }

  @Test("an empty write returns 0 without calling store")
  func writeEmpty() throws {
    let device = Device("")
    device.storeError = .invalidArgument
    let tree = makeTree(device)
    #expect(try tree.write("/devices/ap/card05/value", "") == 0)
    #expect(try tree.write("/devices/ap/card05/value", [UInt8]()) == 0)
    #expect(device.stored.isEmpty)
  }

  @Test("write fails on directories and read-only attributes; store's errno propagates")
  func writeErrors() {
    let device = Device("")
    let tree = makeTree(device)
    #expect(errno { _ = try tree.write("/devices/ap/card05", "1") } == .isDirectory)
    #expect(errno { _ = try tree.write("/devices/ap/card05/hwtype", "1") } == .permissionDenied)
    for e in [Errno.invalidArgument, .addressNotAvailable, .addressInUse, .resourceBusy, .ioError] {
      device.storeError = e
      #expect(errno { _ = try tree.write("/devices/ap/card05/value", "5\n") } == e)
    }
    #expect(device.stored.isEmpty)
  }
}

@Suite("SysfsTree: owners are held weakly")
struct SysfsOwnerLifetimeTests {
  @Test("an attribute whose owner is gone is gone too, and the owner is not kept alive")
  func ownerGone() throws {
    let tree = SysfsTree()
    let d = tree.makeDirectories("/d")
    weak var weakOwner: Driver?
    do {
      let owner = Driver("short-lived")
      weakOwner = owner
      d.addGroup(SysfsAttributeGroup([.readOnly("x") { (o: Driver) throws(Errno) in o.name }]), owner: owner)
      #expect(try tree.readString("/d/x") == "short-lived")
    }
    #expect(weakOwner == nil)
    #expect(errno { _ = try tree.read("/d/x") } == .noSuchFileOrDirectory)
    #expect(try tree.list("/d").isEmpty)
  }
}
