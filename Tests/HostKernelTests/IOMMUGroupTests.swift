import APModel
import SystemPackage
import Testing

@testable import HostKernel

@Suite("IOMMU groups: the group vfio gives each mdev")
struct IOMMUGroupTests {
  @Test func eachMdevHasAGroupOfItsOwn() throws {
    let k = HostKernel()
    #expect(try k.sysfs.list("/kernel/iommu_groups").isEmpty)
    makeMdev(k, uuid1)
    let dir = mdevPath(uuid1)
    #expect(try k.sysfs.readlink(dir + "/iommu_group") == "../../../../kernel/iommu_groups/0")
    #expect(try k.sysfs.canonicalPath("/bus/mdev/devices/\(uuid1)/iommu_group") == "/kernel/iommu_groups/0")
    #expect(
      try k.sysfs.readlink("/kernel/iommu_groups/0/devices/\(uuid1)")
        == "../../../../devices/vfio_ap/matrix/\(uuid1)")
    #expect(try k.sysfs.canonicalPath("/kernel/iommu_groups/0/devices/\(uuid1)") == dir)
    #expect(cat(k, "/kernel/iommu_groups/0/type") == "unknown\n")
    #expect(cat(k, "/kernel/iommu_groups/0/name") == "vfio-noiommu\n")
    #expect(cat(k, "/kernel/iommu_groups/0/reserved_regions") == "")
    for a in ["type", "name", "reserved_regions"] {
      #expect(try k.sysfs.info("/kernel/iommu_groups/0/" + a).mode == 0o444)
    }
    #expect(try k.sysfs.list("/kernel/iommu_groups/0/devices").map(\.name) == [uuid1])
    #expect(k.vfioAP.mdev(uuid1)?.iommuGroup?.id == 0)
    #expect(k.log.messages.last == "vfio_ap_mdev \(uuid1): Adding to iommu group 0")
  }

  @Test func idsAreTheLowestFreeAndReused() throws {
    let k = HostKernel()
    makeMdev(k, uuid1)
    makeMdev(k, uuid2)
    makeMdev(k, uuid3)
    #expect(try k.sysfs.canonicalPath(mdevPath(uuid2) + "/iommu_group") == "/kernel/iommu_groups/1")
    #expect(try k.sysfs.canonicalPath(mdevPath(uuid3) + "/iommu_group") == "/kernel/iommu_groups/2")
    #expect(echo(k, "1", mdevPath(uuid2) + "/remove") == nil)
    #expect(try k.sysfs.list("/kernel/iommu_groups").map(\.name).sorted() == ["0", "2"])
    #expect((try? k.sysfs.info("/kernel/iommu_groups/1")) == nil)
    #expect(k.log.messages.contains("vfio_ap_mdev \(uuid2): Removing from iommu group 1"))
    let u4 = "0b0ad1f3-7b8a-4a63-9d3e-1c5e8f4a2b61"
    makeMdev(k, u4)
    #expect(try k.sysfs.canonicalPath(mdevPath(u4) + "/iommu_group") == "/kernel/iommu_groups/1")
    let u5 = "1b0ad1f3-7b8a-4a63-9d3e-1c5e8f4a2b61"
    makeMdev(k, u5)
    #expect(try k.sysfs.canonicalPath(mdevPath(u5) + "/iommu_group") == "/kernel/iommu_groups/3")
  }

  /// The bitmap behind the ids: the lowest free id across its words, freed ids taken again
  /// lowest first, and the count going on after the last word is full.
  @Test func idAllocatorTakesTheLowestFreeAcrossWords() {
    var ids = IDAllocator()
    #expect((0..<130).map { _ in ids.allocate() } == Array(0..<130))
    for id in [129, 64, 3] { ids.release(id) }
    ids.release(500)  // never taken: nothing happens
    #expect((0..<4).map { _ in ids.allocate() } == [3, 64, 129, 130])
  }
}
