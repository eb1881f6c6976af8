import Sysfs
import Testing

@Suite("SysfsTree: the removal journal is bounded")
struct SysfsJournalTests {
  @Test("nothing is recorded before the first take; then each removal once, in order")
  func recordsOnceTaken() {
    let tree = makeTree()
    let d = tree.makeDirectories("/devices/ap/card05")
    d.symlink("driver", toAbsolute: "/bus/ap")
    d.remove("driver")
    #expect(tree.pendingRemovalCount == 0)
    #expect(tree.takeRemovedPaths().isEmpty)
    for _ in 0..<100 {
      d.symlink("driver", toAbsolute: "/bus/ap")
      d.remove("driver")
      tree.makeDirectories("/devices/ap/card05/05.0004")
      d.remove("05.0004")
    }
    // Removed a hundred times each, kept once each.
    #expect(tree.takeRemovedPaths() == ["/devices/ap/card05/driver", "/devices/ap/card05/05.0004"])
    #expect(tree.pendingRemovalCount == 0)
  }

  @Test("past its capacity the journal drops its oldest half and counts it")
  func dropsTheOldestPastCapacity() {
    let tree = makeTree()
    _ = tree.takeRemovedPaths()
    tree.removalJournal.capacity = 100
    let d = tree.makeDirectories("/devices/vfio_ap/matrix")
    for i in 0..<1000 {
      d.directory("mdev\(i)")
      d.remove("mdev\(i)")
      #expect(tree.pendingRemovalCount <= 100)
    }
    #expect(tree.removalJournal.dropped > 0)
    let paths = tree.takeRemovedPaths()
    #expect(paths.count + tree.removalJournal.dropped == 1000)
    #expect(paths.last == "/devices/vfio_ap/matrix/mdev999")
  }
}
