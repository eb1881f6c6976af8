import FUSE
import Foundation
import HostKernel
import Synchronization
import SysfsFUSE
import SystemPackage
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// How many threads of process `pid` sleep in a read of a `/dev/fuse` connection: the kernel's
/// `fuse_dev_do_read`, as `/proc/PID/task/TID/wchan` names where a thread sleeps.
func threadsReadingFUSE(_ pid: pid_t) -> Int {
  let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
  return tasks.count { tid in
    (try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/wchan", encoding: .utf8)) == "fuse_dev_do_read"
  }
}

/// The CPUs this process may run on, as `nproc` counts them.
func cpusAvailable() throws -> Int {
  Int(try run("/usr/bin/nproc", []).stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
}

@Suite("Interop: the daemon on one CPU, where one serving thread at a time reads", .serialized)
struct OneCPUTests {
  /// `apvirt up` serves the host's mount with 4 threads and the guests' with 2. On one CPU one
  /// thread of each reads (the others wait for its turn); on more, every thread does.
  @Test(arguments: [true, false])
  func threadsThatReadTheConnections(oneCPU: Bool) throws {
    let cpus = try cpusAvailable()
    if !oneCPU && cpus < 2 { return }
    let d = try Daemon(wrapper: oneCPU ? ["/usr/bin/taskset", "-c", "0"] : [])
    defer { d.stop() }
    let pid = try #require(d.process?.processIdentifier)
    let expected = oneCPU ? 2 : 6
    var reading = 0
    for _ in 0..<100 {
      reading = threadsReadingFUSE(pid)
      if reading == expected { break }
      usleep(50_000)
    }
    #expect(reading == expected)
    // The log says how the mount is served.
    let serving =
      oneCPU ? "4 threads, one reading at a time on the one CPU the daemon may run on" : "4 threads"
    #expect(d.log.contains("sysfs mounted at \(d.mount), served by \(serving); control socket"), "\(d.log)")
    // Requests come and go as before; afterwards the same threads read.
    let r = try d.bash(
      """
      set -e
      echo -5 > /sys/bus/ap/apmask
      echo 62177883-f1bb-47f0-914d-32a22e3a8804 > \
        /sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create
      echo 5 > /sys/devices/vfio_ap/matrix/62177883-f1bb-47f0-914d-32a22e3a8804/assign_adapter
      for i in $(seq 1 200); do echo 4 > /sys/devices/vfio_ap/matrix/62177883-f1bb-47f0-914d-32a22e3a8804/assign_domain; done
      cat /sys/devices/vfio_ap/matrix/62177883-f1bb-47f0-914d-32a22e3a8804/matrix
      """)
    #expect(r.status == 0, "\(r.stderr)")
    #expect(r.stdout == "05.0004\n")
    usleep(100_000)
    #expect(threadsReadingFUSE(pid) == expected)
  }

  /// The host's tree mounted in process, served by 3 threads of which one reads at a time. A
  /// `remove` of an mdev that a VMM holds open without a request IRQ waits until the VMM closes
  /// the device; the thread that waits hands on its turn, so the mount goes on serving: apmask
  /// is read, another mdev is made and assigned. Then the VMM closes, and the remove returns.
  @Test func aRemoveWaitingForTheVMMStopsNoOtherRequest() throws {
    let host = EmulatedHost(definition: .embeddedDefault)
    let u1 = "62177883-f1bb-47f0-914d-32a22e3a8804"
    let u2 = "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3"
    let matrix = "/devices/vfio_ap/matrix/"
    try host.withKernel { (k) throws(Errno) in
      try k.write("/bus/ap/apmask", "-5")
      try k.write(matrix + "mdev_supported_types/vfio_ap-passthrough/create", u1)
      try k.write(matrix + u1 + "/assign_adapter", "5")
      try k.vfioAP.openDevice(k.vfioAP.mdev(u1)!, kvm: k.kvm.createVM(name: "g"))
    }
    let dir = "/tmp/apvirt-onecpu-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let m = try FUSEMount.mount(at: dir, name: "apvirttest")
    let session = FUSESession(fd: m.fd, fileSystem: SysfsFileSystem(host: host))
    let served = DispatchSemaphore(value: 0)
    Thread.detachNewThread {
      session.serve(threads: 3, readers: 1)
      served.signal()
    }
    defer {
      m.unmount()
      #expect(served.wait(timeout: .now() + 10) == .success)
      try? FileManager.default.removeItem(atPath: dir)
    }
    let removed = DispatchSemaphore(value: 0)
    let status = Mutex<Int32>(-1)
    Thread.detachNewThread {
      let r = try? run("/bin/bash", ["-c", "echo 1 > \(dir)\(matrix)\(u1)/remove"])
      status.withLock { $0 = r?.status ?? -2 }
      removed.signal()
    }
    // The kernel logs that the remove waits.
    var blocked = false
    for _ in 0..<200 where !blocked {
      blocked = host.withKernel { $0.log.dmesgText.contains("blocked until released by user") }
      if !blocked { usleep(10_000) }
    }
    #expect(blocked)
    // Within 20 s, or the test fails rather than hangs.
    let meanwhile = try run(
      "/usr/bin/timeout",
      [
        "20", "/bin/bash", "-c",
        """
        set -e
        cat \(dir)/bus/ap/apmask
        echo \(u2) > \(dir)\(matrix)mdev_supported_types/vfio_ap-passthrough/create
        echo 5 > \(dir)\(matrix)\(u2)/assign_domain
        cat \(dir)\(matrix)\(u2)/matrix
        """,
      ])
    #expect(meanwhile.status == 0, "\(meanwhile.stderr)")
    #expect(
      meanwhile.stdout
        == "0xfbffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff\n" + ".0005\n")
    #expect(removed.wait(timeout: .now()) == .timedOut)
    host.closeDevice(uuid: u1)
    #expect(removed.wait(timeout: .now() + 10) == .success)
    #expect(status.withLock { $0 } == 0)
    #expect(!FileManager.default.fileExists(atPath: dir + matrix + u1))
  }
}
