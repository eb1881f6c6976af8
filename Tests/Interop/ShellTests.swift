import Foundation
import Testing

/// The spec's rules through the mount, as a shell user meets them: the errno text bash prints,
/// file modes, links.
@Suite("Interop: the shell against the mount", .serialized)
struct ShellTests {
  let u1 = "62177883-f1bb-47f0-914d-32a22e3a8804"
  let u2 = "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3"

  @Test func errnoTextsReachTheShell() throws {
    let d = try Daemon()
    let m = "/sys/devices/vfio_ap/matrix"
    let setup = try d.bash(
      """
      set -e
      echo -5,-6 > /sys/bus/ap/apmask
      echo \(u1) > \(m)/mdev_supported_types/vfio_ap-passthrough/create
      echo \(u2) > \(m)/mdev_supported_types/vfio_ap-passthrough/create
      echo 5 > \(m)/\(u1)/assign_adapter
      echo 0x47 > \(m)/\(u1)/assign_domain
      echo 0x47 > \(m)/\(u2)/assign_domain
      """)
    #expect(setup.status == 0, "\(setup.stderr)")
    func failure(_ script: String) throws -> String {
      let r = try d.bash(script)
      #expect(r.status != 0)
      return r.stderr
    }
    #expect(
      try failure("echo 7 > \(m)/\(u1)/assign_adapter").hasSuffix(
        "echo: write error: Cannot assign requested address\n"))
    #expect(
      try failure("echo 5 > \(m)/\(u2)/assign_adapter").hasSuffix(
        "echo: write error: Address already in use\n"))
    #expect(
      try failure("echo 256 > \(m)/\(u1)/assign_adapter").hasSuffix("echo: write error: No such device\n"))
    #expect(
      try failure("echo +5 > /sys/bus/ap/apmask").hasSuffix("echo: write error: Device or resource busy\n"))
    #expect(
      try failure("echo five > \(m)/\(u1)/assign_domain").hasSuffix("echo: write error: Invalid argument\n"))
    #expect(
      try failure("echo 99999999999999999999 > \(m)/\(u1)/assign_domain").hasSuffix(
        "echo: write error: Numerical result out of range\n"))
    #expect(
      try failure("echo \(u1) > \(m)/mdev_supported_types/vfio_ap-passthrough/create").hasSuffix(
        "echo: write error: File exists\n"))
    #expect(try failure("cat \(m)/\(u1)/assign_adapter").contains("Permission denied"))
    #expect(try failure("echo 1 > /sys/bus/ap/bindings").contains("Permission denied"))
    // What did succeed shows.
    #expect(try d.bash("cat \(m)/\(u1)/matrix \(m)/\(u2)/matrix").stdout == "05.0047\n.0047\n")
    // And the kernel log says why the sharing was refused.
    let dmesg = try d.apvirt(["dmesg"]).stdout
    #expect(
      dmesg.contains(
        "vfio_ap_mdev \(u2): Userspace may not assign queue 05.0047 to mdev: already assigned to \(u1)"))
    #expect(
      dmesg.contains("vfio_ap_mdev \(u1): Can not reserve queue 05.0047 for host driver: in use by mdev"))
  }

  @Test func modesAndLinks() throws {
    let d = try Daemon()
    let m = "/sys/devices/vfio_ap/matrix"
    try d.bash("echo \(u1) > \(m)/mdev_supported_types/vfio_ap-passthrough/create")
    let modes = try d.bash("cd \(m)/\(u1) && stat -c '%A %n' *").stdout
    #expect(
      modes == """
        -rw-r--r-- ap_config
        --w------- assign_adapter
        --w------- assign_control_domain
        --w------- assign_domain
        -r--r--r-- control_domains
        lrwxrwxrwx driver
        -r--r--r-- guest_matrix
        lrwxrwxrwx iommu_group
        -r--r--r-- matrix
        lrwxrwxrwx mdev_type
        --w------- remove
        lrwxrwxrwx subsystem
        -rw-r--r-- uevent
        --w------- unassign_adapter
        --w------- unassign_control_domain
        --w------- unassign_domain

        """)
    #expect(
      try d.bash("readlink /sys/bus/mdev/devices/\(u1)").stdout == "../../../devices/vfio_ap/matrix/\(u1)\n")
    #expect(
      try d.bash("readlink /sys/bus/mdev/devices/\(u1)/mdev_type").stdout
        == "../mdev_supported_types/vfio_ap-passthrough\n")
    #expect(
      try d.bash("readlink -f /sys/bus/mdev/devices/\(u1)/mdev_type").stdout
        == "/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough\n")
    #expect(try d.bash("readlink /sys/class/mdev_bus/matrix").stdout == "../../devices/vfio_ap/matrix\n")
    #expect(
      try d.bash("readlink /sys/bus/ap/devices/05.0004/driver").stdout
        == "../../../../bus/ap/drivers/cex4queue\n")
    #expect(
      try d.bash("stat -c '%A' /sys/bus/ap/apmask /sys/bus/ap/bindings /sys/bus/ap/drivers_probe").stdout
        == "-rw-r--r--\n-r--r--r--\n--w-------\n")
    #expect(
      try d.bash("readlink /sys/bus/mdev/devices/\(u1)/driver").stdout
        == "../../../../bus/mdev/drivers/vfio_ap_mdev\n")
    // vfio gives the mdev an IOMMU group of its own, bound in place under /sys/kernel.
    #expect(
      try d.bash("readlink -f /sys/bus/mdev/devices/\(u1)/iommu_group").stdout
        == "/sys/kernel/iommu_groups/0\n")
    #expect(
      try d.bash("readlink -f /sys/kernel/iommu_groups/0/devices/\(u1)").stdout
        == "/sys/devices/vfio_ap/matrix/\(u1)\n")
    #expect(try d.bash("cat /sys/kernel/iommu_groups/0/type").stdout == "unknown\n")
    #expect(
      try d.bash("cat /sys/devices/ap/card05/05.0004/uevent").stdout
        == "DEVTYPE=ap_queue\nDRIVER=cex4queue\nMODE=cca\n")
    #expect(try d.bash("echo $SYSTEMD_DEVICE_VERIFY_SYSFS").stdout == "0\n")
    // The mount itself can be used directly, without a namespace.
    #expect(try run("/bin/cat", [d.mount + "/devices/vfio_ap/matrix/\(u1)/matrix"]).status == 0)
  }

  /// Debian's udevadm (libudev) reads a card's properties from its uevent file through the
  /// namespace's /sys.
  /// `apvirt exec` ends as env(1) does when the command cannot run: 127 for no such command,
  /// 126 for one that is not executable; a missing host is exit 1, without the usage text.
  @Test func execsExitStatusesAreEnvs() throws {
    let d = try Daemon()
    let missing = try d.exec(["/no/such/command"])
    #expect(missing.status == 127)
    #expect(missing.stderr == "apvirt exec: /no/such/command: No such file or directory\n")
    let plain = d.root + "/not-executable"
    FileManager.default.createFile(atPath: plain, contents: Data("echo no\n".utf8))
    let refused = try d.exec([plain])
    #expect(refused.status == 126)
    #expect(refused.stderr == "apvirt exec: \(plain): Permission denied\n")
    let nohost = try run(apvirtBinary, ["exec", "--mount", d.root + "/nothing/sys", "--", "true"])
    #expect(nohost.status == 1)
    #expect(
      nohost.stderr
        == "Error: no emulated host mounted at \(d.root)/nothing/sys; start one with `apvirt up`\n")
  }

  @Test func udevadmReadsACardsProperties() throws {
    guard FileManager.default.isExecutableFile(atPath: "/usr/bin/udevadm") else {
      Issue.record("udevadm is not installed (apt-get install udev)")
      return
    }
    let d = try Daemon()
    let r = try d.exec(["udevadm", "info", "-q", "property", "-p", "/devices/ap/card05"])
    #expect(r.status == 0, "\(r.stderr)")
    let lines = Set(r.stdout.split(separator: "\n").map(String.init))
    for p in [
      "DEVPATH=/devices/ap/card05", "SUBSYSTEM=ap", "DEVTYPE=ap_card", "DRIVER=cex4card", "DEV_TYPE=000E",
      "MODALIAS=ap:t0E", "MODE=cca",
    ] {
      #expect(lines.contains(p), "\(p) in \(r.stdout)")
    }
  }

  /// kernfs cuts a write to a sysfs attribute to one page and returns the short count (E2BIG is
  /// only for files with an `atomic_write_len`, which attributes lack); whoever wrote then sends
  /// the rest, which is a store of its own. `scans` counts its stores (each one scans).
  @Test func aWriteOfMoreThanAPageIsStoredAPageAtATime() throws {
    let d = try Daemon()
    let r = try d.bash(
      """
      echo 120 > /sys/bus/ap/config_time
      long=$(head -c 5000 /dev/zero | tr '\\0' x)
      before=$(cat /sys/bus/ap/scans)
      echo $long > /sys/bus/ap/scans
      echo "echo: $? $(( $(cat /sys/bus/ap/scans) - before ))"
      python3 -c 'import os; fd = os.open("/sys/bus/ap/scans", os.O_WRONLY); print(os.write(fd, b"x" * 5000))'
      echo "one write(2): $(( $(cat /sys/bus/ap/scans) - before ))"
      echo $long > /sys/bus/ap/config_time
      """)
    // bash's echo goes through stdio, which writes 4096 bytes then the 905 left (the file's
    // st_blksize is a page): two stores, both complete. One write(2) of 5000 bytes returns 4096:
    // one store. A store that refuses its first page fails the write, as for a short one.
    #expect(r.stdout == "echo: 0 2\n4096\none write(2): 3\n")
    #expect(r.stderr.hasSuffix("echo: write error: Invalid argument\n"), "\(r.stderr)")
  }

  @Test func theAttributesLszcryptReads() throws {
    let d = try Daemon()
    let r = try d.bash(
      """
      cd /sys/bus/ap && cat ap_usage_domain_mask ap_control_domain_mask features ap_domain ap_max_domain_id \
        config_time poll_timeout poll_thread ap_interrupts
      cd /sys/devices/ap/card05 && cat type online ap_functions hwtype depth request_count pendingq_count \
        requestq_count config chkstop serialnr max_msg_size && readlink driver
      cd 05.0004 && cat online config chkstop request_count ap_functions && readlink driver
      """)
    #expect(r.status == 0, "\(r.stderr)")
    let all = String(repeating: "f", count: 64)
    #expect(
      r.stdout == """
        0x\(all)
        0x\(all)
        APSC APXA QACT RC8A
        0
        255
        30
        250000
        0
        1
        CEX8C
        1
        0x92000000
        14
        8
        0
        0
        0
        1
        0
        93AADF05
        12288
        ../../../bus/ap/drivers/cex4card
        1
        1
        0
        0
        0x92000000
        ../../../../bus/ap/drivers/cex4queue

        """)
  }

  /// What `lszcrypt -s` and `lszcrypt -c 05.0004` read: the cards' `serialnr` (cut to 8
  /// characters), the CUR lines of a queue's `mkvps`; an accelerator has neither.
  @Test func theCoprocessorFilesLszcryptReads() throws {
    let d = try Daemon()
    let r = try d.bash(
      """
      cd /sys/devices/ap && head -c 8 card05/serialnr; echo; head -c 8 card06/serialnr; echo
      grep CUR card05/05.0004/mkvps; grep CUR card06/06.0004/mkvps
      test -e card0a/serialnr || echo no serialnr; test -e card0a/0a.0004/mkvps || echo no mkvps
      cat card0a/ap_functions
      """)
    #expect(r.status == 0, "\(r.stderr)")
    #expect(
      r.stdout == """
        93AADF05
        93AADF06
        AES CUR: valid 0x788fde493e59653d
        APKA CUR: valid 0x47666d1b6fcaa9e7
        ASYM CUR: valid 0x74cdd16b7f0fb3c439edba15ba6d5dea
        WK CUR: valid 0x3f85c7fe3f7852646f639edcc040b8e5dfce21f83b7755ffa601bd724de89bbc
        no serialnr
        no mkvps
        0xEA000000

        """)
  }
}

@Suite("Interop: the kernel's caches never show what is gone", .serialized)
struct CacheCoherenceTests {
  @Test func removedNodesVanishAtOnce() throws {
    let d = try Daemon()
    let u = "90c6c135-ad44-41d0-b1b7-bae47de48627"
    let t = "/sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough"
    let r = try d.bash(
      """
      for i in $(seq 1 20); do
        echo \(u) > \(t)/create
        test -e /sys/bus/mdev/devices/\(u)/matrix || echo "missing after create $i"
        cat /sys/devices/vfio_ap/matrix/\(u)/matrix > /dev/null || echo "unreadable $i"
        echo 1 > /sys/devices/vfio_ap/matrix/\(u)/remove
        test -e /sys/devices/vfio_ap/matrix/\(u) && echo "still there after remove $i"
        test -e /sys/bus/mdev/devices/\(u) && echo "link still there after remove $i"
      done
      # A driver's attributes go with the driver.
      test -e /sys/bus/ap/devices/05.0004/online || echo "no online"
      echo -5 > /sys/bus/ap/apmask
      test -e /sys/bus/ap/devices/05.0004/online && echo "online still there"
      test -e /sys/bus/ap/devices/05.0004/status || echo "no status"
      readlink /sys/bus/ap/devices/05.0004/driver
      """)
    #expect(r.stdout == "../../../../bus/ap/drivers/vfio_ap\n", "\(r.stdout)\(r.stderr)")
  }
}
