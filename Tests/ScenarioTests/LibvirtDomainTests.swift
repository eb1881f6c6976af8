import APModel
import Foundation
import Planning
import Scenario
import Testing

/// A running domain as `virsh dumpxml` prints it on an LPAR (libvirt 9): a declaration, an `id`,
/// metadata in another namespace, a CPU model with AP features, a disk, a console, a PCI
/// hostdev besides the vfio-ap one, and entities in the description.
let runningDomainXML = """
  <?xml version="1.0" encoding="UTF-8"?>
  <!-- virsh dumpxml web -->
  <domain type='kvm' id='7'>
    <name>web</name>
    <uuid>7de585c2-211a-4d1a-ba6b-f5625711f814</uuid>
    <description>front end &amp; TLS offload &lt;CCA&gt; &#x263A;</description>
    <metadata>
      <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
        <libosinfo:os id="http://redhat.com/rhel/9.4"/>
      </libosinfo:libosinfo>
    </metadata>
    <memory unit='KiB'>2097152</memory>
    <vcpu placement='static'>2</vcpu>
    <os>
      <type arch='s390x' machine='s390-ccw-virtio-rhel9.4.0'>hvm</type>
      <boot dev='hd'/>
    </os>
    <cpu mode='custom' match='exact' check='partial'>
      <model fallback='forbid'>z15</model>
      <feature policy='require' name='ap'/>
      <feature policy='require' name='apqci'/>
      <feature policy='optional' name='vxpdeh'/>
      <feature policy='disable' name='appv'/>
      <feature name='apft'/>
    </cpu>
    <devices>
      <emulator>/usr/libexec/qemu-kvm</emulator>
      <disk type='file' device='disk'>
        <driver name='qemu' type='qcow2'/>
        <source file='/var/lib/libvirt/images/web.qcow2' index='1'/>
        <target dev='vda' bus='virtio'/>
        <address type='ccw' cssid='0xfe' ssid='0x0' devno='0x0000'/>
      </disk>
      <hostdev mode='subsystem' type='pci' managed='yes'>
        <source><address domain='0x0000' bus='0x00' slot='0x00' function='0x0'/></source>
      </hostdev>
      <hostdev mode='subsystem' type='mdev' managed='no' model='vfio-ap'>
        <source>
          <address uuid="8A3CE2FB-0F4E-44B6-B7C2-1C3B0E7C8E9A"/>
        </source>
        <alias name='hostdev0'/>
      </hostdev>
      <console type='pty' tty='/dev/pts/1'>
        <target type='sclp' port='0'/>
      </console>
      <memballoon model='virtio'><address type='ccw' cssid='0xfe' ssid='0x0' devno='0x0001'/></memballoon>
    </devices>
    <seclabel type='dynamic' model='dac' relabel='yes'><label>+107:+107</label></seclabel>
  </domain>

  """

@Suite struct LibvirtDomainTests {
  @Test func readsARunningDomainAsVirshDumpsIt() throws {
    let d = try LibvirtDomain.parse(runningDomainXML)
    #expect(d.name == "web")
    // libvirt's -cpu: require (the default policy too) is =on, disable =off, optional left out.
    #expect(d.cpu == "z15,ap=on,apqci=on,appv=off,apft=on")
    #expect(d.mdev == "8a3ce2fb-0f4e-44b6-b7c2-1c3b0e7c8e9a")
    #expect(d.running)
  }

  @Test func hostModesAreHostAndTheirFeaturesFollow() throws {
    func cpu(_ element: String) throws -> String {
      try LibvirtDomain.parse("<domain type='kvm'><name>g</name>\(element)</domain>").cpu
    }
    #expect(
      try cpu(
        "<cpu mode='host-passthrough' check='none' migratable='on'><feature policy='require' name='ap'/><feature policy='force' name='apqi'/></cpu>"
      ) == "host,ap=on,apqi=on")
    #expect(try cpu("<cpu mode='host-model' check='partial'/>") == "host")
    #expect(try cpu("") == "host")
    #expect(try cpu("<cpu><model>z14</model><feature policy='forbid' name='apqi'/></cpu>") == "z14,apqi=off")
  }

  /// A persistent definition (`/etc/libvirt/qemu/batch.xml`) without a vfio-ap hostdev: no
  /// scenario guest, and not running (no `id`).
  @Test func aDomainWithoutAVFIOAPHostdevHasNoMdev() throws {
    let d = try LibvirtDomain.parse(
      """
      <!--
      WARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE
      OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:
        virsh edit batch
      -->
      <domain type='kvm'>
        <name>batch</name>
        <cpu mode='host-model'/>
        <devices><hostdev mode='subsystem' type='mdev' model='vfio-pci'>
          <source><address uuid='11111111-2222-4333-8444-555555555555'/></source></hostdev></devices>
      </domain>
      """)
    #expect(d == LibvirtDomain(name: "batch", cpu: "host", mdev: nil, running: false))
  }

  /// libvirt's status file of a running domain wraps it.
  @Test func aStatusFileIsRead() throws {
    let d = try LibvirtDomain.parse(
      """
      <domstatus state='running' reason='booted' pid='4242'>
        <monitor path='/var/lib/libvirt/qemu/domain-3-g/monitor.sock' type='unix'/>
        <domain type='kvm' id='3'><name>g</name><cpu mode='host-passthrough'/>
          <devices><hostdev mode='subsystem' type='mdev' model='vfio-ap'>
            <source><address uuid='62177883-f1bb-47f0-914d-32a22e3a8804'/></source></hostdev></devices>
        </domain>
      </domstatus>
      """)
    #expect(
      d == LibvirtDomain(name: "g", cpu: "host", mdev: "62177883-f1bb-47f0-914d-32a22e3a8804", running: true))
  }

  @Test(arguments: [
    (
      "<domain><name>g</name>\n<devices>\n</domain>",
      "not well-formed XML: line 3: </domain> closes <devices> (line 2)"
    ),
    ("<domain><name>g</name>", "not well-formed XML: line 1: <domain> (line 1) is not closed"),
    ("<domain a='1' a='2'/>", "not well-formed XML: line 1: <domain>: attribute a is given twice"),
    ("<domain><name>a &nbsp; b</name></domain>", "not well-formed XML: line 1: unknown entity &nbsp;"),
    ("<domain/><domain/>", "not well-formed XML: line 1: a second root element"),
    ("", "not well-formed XML: line 1: no root element: the file is empty"),
    ("<network><name>default</name></network>", "line 1: <network> is no libvirt domain (expected <domain>)"),
    ("<domain type='kvm'>\n  <uuid>x</uuid>\n</domain>", "line 1: the <domain> has no <name>"),
    (
      "<domain><name>two</name><devices>\n<hostdev mode='subsystem' type='mdev' model='vfio-ap'><source><address uuid='62177883-f1bb-47f0-914d-32a22e3a8804'/></source></hostdev>\n<hostdev mode='subsystem' type='mdev' model='vfio-ap'><source><address uuid='4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3'/></source></hostdev></devices></domain>",
      "line 3: domain two: unsupported configuration: Only one hostdev of model vfio-ap is supported"
    ),
    (
      "<domain><name>g</name><devices><hostdev mode='subsystem' type='mdev' model='vfio-ap'/></devices></domain>",
      "line 1: domain g: the vfio-ap <hostdev> has no <source><address uuid='...'/></source> with an mdev's UUID"
    ),
  ])
  func aBadDomainSaysWhyAndWhere(_ xml: String, _ message: String) {
    #expect(throws: LibvirtDomain.Failure(description: message)) { try LibvirtDomain.parse(xml) }
  }

  @Test func theXMLReaderKeepsTextCDATAAndLines() throws {
    let root = try XMLReader.parse(
      "<?xml version='1.0'?>\n<!DOCTYPE a>\n<a x=\"1 &quot;2&quot;\">t<![CDATA[<raw> & ]]><!-- c --><b\n  y='z'/>u</a>\n"
    )
    #expect(root.attributes == ["x": "1 \"2\""])
    #expect(root.text == "t<raw> & u")
    #expect(root.child("b")?.attributes == ["y": "z"])
    #expect(root.child("b")?.line == 3)
  }

  /// The files of a directory by name; a file that cannot be read or is not a domain fails the
  /// read and names it; subdirectories and other files are not read.
  @Test func aDirectoryIsReadAndABadFileNamed() throws {
    let dir = NSTemporaryDirectory() + "apvirt-libvirt-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir + "/autostart", withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    try runningDomainXML.write(toFile: dir + "/web.xml", atomically: true, encoding: .utf8)
    try "<domain><name>batch</name></domain>".write(
      toFile: dir + "/batch.xml", atomically: true, encoding: .utf8)
    try "not xml".write(toFile: dir + "/README", atomically: true, encoding: .utf8)
    let read = try LibvirtDomain.read(directory: dir)
    #expect(read.map(\.file) == [dir + "/batch.xml", dir + "/web.xml"])
    #expect(read.map(\.domain.name) == ["batch", "web"])

    try "<domain><name>half".write(toFile: dir + "/half.xml", atomically: true, encoding: .utf8)
    #expect(
      throws: LibvirtDomain.ReadFailure(
        path: dir + "/half.xml", reason: "not well-formed XML: line 1: <name> (line 1) is not closed")
    ) { try LibvirtDomain.read(directory: dir) }
    try FileManager.default.removeItem(atPath: dir + "/half.xml")

    // A link to a file that is gone: unreadable.
    try FileManager.default.createSymbolicLink(
      atPath: dir + "/gone.xml", withDestinationPath: dir + "/nowhere")
    #expect(throws: LibvirtDomain.ReadFailure(path: dir + "/gone.xml", reason: "No such file or directory")) {
      try LibvirtDomain.read(directory: dir)
    }
    #expect(throws: LibvirtDomain.ReadFailure(path: dir + "/none", reason: "No such file or directory")) {
      try LibvirtDomain.read(directory: dir + "/none")
    }
  }

  /// Which domain is an in-use mdev's guest: the only one naming it, else the running one; the
  /// others are left out with a note that says why.
  @Test func domainsAreMatchedToTheMdevsInUse() {
    let a = "62177883-f1bb-47f0-914d-32a22e3a8804"
    let b = "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3"
    let c = "90c6c135-ad44-41d0-b1b7-bae47de48627"
    let snapshot = SysfsSnapshot(
      root: "/copy",
      mdevs: [
        .init(uuid: a, matrix: APMatrix(), inUse: true), .init(uuid: b, matrix: APMatrix(), inUse: true),
        .init(uuid: c, matrix: APMatrix(), inUse: false),
      ])
    let domains: [(file: String, domain: LibvirtDomain)] = [
      ("d/g1.xml", LibvirtDomain(name: "g1", cpu: "z15,ap=on", mdev: a)),
      ("d/g2-old.xml", LibvirtDomain(name: "g2-old", mdev: b)),
      ("d/g2.xml", LibvirtDomain(name: "g2", mdev: b, running: true)),
      ("d/g3.xml", LibvirtDomain(name: "g3", mdev: c)),
      ("d/other.xml", LibvirtDomain(name: "other", mdev: nil)),
      ("d/plain.xml", LibvirtDomain(name: "plain", cpu: "z16", mdev: nil, running: true)),
    ]
    let known = ScenarioCapture.guests(libvirt: domains, directory: "d", snapshot: snapshot)
    #expect(known.source == "libvirt's domains in d")
    #expect(
      known.guests == [
        Scenario.Guest(name: "g1", cpu: "z15,ap=on", mdev: a), Scenario.Guest(name: "g2", mdev: b),
        Scenario.Guest(name: "plain", cpu: "z16"),
      ])
    #expect(
      known.notes.sorted() == [
        "libvirt domain g3 uses mdev \(c), whose queues are not in use (the domain does not run): left out.",
        "libvirt domains that do not run and have no vfio-ap hostdev: left out: other.",
      ])
  }

  /// Without a source, each guest is named after its mdev; with one, the source's names and CPU
  /// models, and the daemon's facts about the machine.
  @Test func theCaptureTakesGuestsAndMachineFactsFromTheirSources() {
    let a = "62177883-f1bb-47f0-914d-32a22e3a8804"
    let snapshot = SysfsSnapshot(
      root: "/copy", cards: [5: .init(apid: 5, rawHardwareType: 14)],
      mdevs: [.init(uuid: a, matrix: APMatrix(), inUse: true)])
    let bare = ScenarioCapture.capture(snapshot)
    #expect(bare.scenario.guests == [Scenario.Guest(name: "guest-62177883", cpu: "host", mdev: a)])
    #expect(bare.unnamedGuests == [a])
    #expect(bare.scenario.machine.name == "captured")

    let known = ScenarioCapture.KnownGuests(
      source: "the apvirt daemon at /run/apvirt/sys",
      guests: [Scenario.Guest(name: "web", cpu: "z15,ap=on", mdev: a), Scenario.Guest(name: "batch")])
    let facts = ScenarioCapture.HostFacts(
      machineName: "lab", kernel: "6.12", crycbFormat: 1, latencies: [5: (reset: 2_000_000, irq: 0)])
    let full = ScenarioCapture.capture(snapshot, guests: known, host: facts)
    #expect(full.unnamedGuests.isEmpty)
    #expect(full.scenario.guests == known.guests)
    #expect(full.scenario.machine.name == "lab")
    #expect(full.scenario.machine.kernel == "6.12")
    #expect(full.scenario.machine.crycbFormat == 1)
    #expect(full.scenario.machine.adapters.map(\.resetLatency) == [2_000_000])
    #expect(
      full.scenario.notes.contains("Guest names and CPU models from the apvirt daemon at /run/apvirt/sys."))
    #expect(ScenarioCapture.capture(snapshot, host: facts, name: "prod").scenario.machine.name == "prod")
  }

  /// The order of mdevs and guests is no part of a configuration.
  @Test func equalityIgnoresTheListsOrder() throws {
    var s = try ScenarioLoader.load(path: examples + "/three-guests.yaml")
    var t = s
    t.mdevs.reverse()
    t.guests.reverse()
    #expect(s == t)
    #expect(s.hashValue == t.hashValue)
    s.guests[0].cpu = "z15"
    #expect(s != t)
  }
}
