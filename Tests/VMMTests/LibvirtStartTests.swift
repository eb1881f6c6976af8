import Foundation
import Synchronization
import Testing

@testable import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// What libvirt 9.0 gives and asks a QEMU it starts: its command line (read from a domain log),
/// the monitor on a passed descriptor, the commands it sends at start and later.
@Suite("QEMU as libvirt starts it: command line, passed monitor, runtime commands")
struct LibvirtStartTests {
  /// libvirt 9.0's command line for a small s390x domain with a vfio-ap hostdev.
  static let libvirtArgs = [
    "-name", "guest=guest1,debug-threads=on", "-S", "-object",
    "secret,id=masterKey0,format=raw,file=/var/lib/libvirt/qemu/domain-3-guest1/master-key.aes", "-machine",
    "s390-ccw-virtio-10.2,usb=off,dump-guest-core=off,memory-backend=s390.ram", "-accel", "kvm", "-cpu",
    "z15,ap=on,apqci=on,apft=on", "-m", "512", "-object", "memory-backend-ram,id=s390.ram,size=536870912",
    "-overcommit", "mem-lock=off", "-smp", "1,sockets=1,cores=1,threads=1", "-uuid",
    "7de585c2-211a-4d1a-ba6b-f5625711f814", "-display", "none", "-no-user-config", "-nodefaults", "-chardev",
    "socket,id=charmonitor,fd=27,server=on,wait=off", "-mon", "chardev=charmonitor,id=monitor,mode=control",
    "-rtc", "base=utc", "-no-shutdown", "-boot", "strict=on", "-audiodev",
    #"{"id":"audio1","driver":"none"}"#,
    "-device", "vfio-ap,id=hostdev0,sysfsdev=/sys/bus/mdev/devices/\(uuid1)", "-msg", "timestamp=on",
  ]

  @Test func libvirtsCommandLine() throws {
    let c = try QEMUCommandLine.parse(Self.libvirtArgs)
    #expect(c.name == "guest1")
    #expect(c.monitorDescriptors == [27] && c.qmpSockets.isEmpty)
    #expect(c.uuid == "7de585c2-211a-4d1a-ba6b-f5625711f814")
    #expect(c.accelerators == ["kvm"] && c.noShutdown && c.startPaused)
    #expect(c.cpu == "z15,ap=on,apqci=on,apft=on")
    // The monitor as newer libvirt gives it: an object.
    let object = try QEMUCommandLine.parse([
      "-chardev", "socket,id=charmonitor,fd=31,server=on,wait=off", "-object",
      #"{"qom-type":"monitor-qmp","id":"monitor","chardev":"charmonitor"}"#,
    ])
    #expect(object.monitorDescriptors == [31])
    #expect(
      try QEMUCommandLine.parse([
        "-chardev", "socket,id=m,path=/tmp/m.sock,server=on", "-object", "monitor-qmp,id=x,chardev=m",
      ])
      .qmpSockets == ["/tmp/m.sock"])
    // A console on a pty is accepted and serves nothing; a monitor must be a socket.
    let console = try QEMUCommandLine.parse(["-chardev", "pty,id=charconsole0"])
    #expect(console.qmpSockets.isEmpty && console.monitorDescriptors.isEmpty)
    func failure(_ args: [String]) -> String {
      do {
        _ = try QEMUCommandLine.parse(args)
        return ""
      } catch { return error.message }
    }
    #expect(
      failure(["-chardev", "pty,id=c0", "-mon", "chardev=c0,mode=control"])
        == "-mon chardev=c0: a QMP monitor needs a socket chardev")
    #expect(
      failure(["-chardev", "socket,id=m,fd=x,server=on"])
        == "-chardev socket,id=m,fd=x,server=on: Parameter 'fd' expects a file descriptor number")
    #expect(
      failure(["-chardev", "socket,id=m,server=on"])
        == "-chardev socket,id=m,server=on: chardev: socket: no path or fd given")
  }

  /// A listening socket passed with SCM_RIGHTS, as the emulator hands libvirt's monitor to the
  /// daemon, is served where it was bound.
  @Test func aPassedListeningSocketIsServed() throws {
    let dir = "/tmp/apvirt-pass-\(UUID().uuidString.prefix(8))"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    // The "daemon" side: a control server that takes what is passed.
    let control = try JSONStreamServer(path: dir + "/control.sock")
    let received = Mutex<[Int32]>([])
    let pid = Mutex<Int32?>(nil)
    Thread.detachNewThread {
      control.run { c in
        _ = c.receive()
        received.withLock { $0 = c.takeDescriptors() }
        pid.withLock { $0 = c.peerPID }
        c.sendLine("{}")
      }
    }
    // The "libvirt" side: a listening socket, bound at a path.
    let monitorPath = dir + "/monitor.sock"
    let listening = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var addr = JSONStreamServer.address(monitorPath)!
    _ = withUnsafePointer(to: &addr) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(listening, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    #expect(listen(listening, 4) == 0)
    var client = try JSONStreamClient(path: dir + "/control.sock", timeout: 5)
    #expect(client.sendLine(Data(#"{"execute": "guest-start"}"#.utf8), descriptors: [listening]))
    _ = try client.receiveLine()
    close(listening)
    let fds = received.withLock { $0 }
    #expect(fds.count == 1)
    #expect(pid.withLock { $0 } == getpid())
    // Served by a guest's monitor on the passed descriptor.
    let host = try makeHost()
    let g = try guest(host, ["-cpu", "host"])
    let monitor = try JSONStreamServer(listening: fds[0])
    Thread.detachNewThread { monitor.run { c in QMPSession(guest: g).serve(c) } }
    var m = try JSONStreamClient(path: monitorPath, timeout: 5)
    #expect(String(decoding: try m.receiveLine(), as: UTF8.self).hasPrefix(#"{"QMP": "#))
    m.sendLine(Data(#"{"execute": "qmp_capabilities"}"#.utf8))
    #expect(String(decoding: try m.receiveLine(), as: UTF8.self) == #"{"return": {}}"#)
    m.close()
    monitor.stop()
    control.stop()
    g.quit()
    // Not a listening socket: refused.
    #expect(throws: JSONStreamServer.ServerError.self) { try JSONStreamServer(listening: 0) }
  }

  /// The commands libvirt sends at start and later, answered as QEMU 7.2 answered them (in
  /// shape), with the vCPU on a live thread of the emulator process.
  @Test func runtimeCommands() throws {
    let host = try makeHost()
    let g = try guest(host, ["-cpu", "host", "-smp", "2", "-S", "-no-shutdown"])
    g.emulatorPID = getpid()
    let session = QMPSession(guest: g)
    var streamer = JSONStreamer(limits: .qemu)
    var events: [String] = []
    let sink = Mutex<[String]>([])
    func ask(_ r: String) -> [String] {
      streamer.feed(Array(r.utf8))
      var out: [String] = []
      while let v = streamer.next() {
        out += session.handle(v, eventSink: { e in sink.withLock { $0.append(e.json) } }).map(\.json)
      }
      session.finishPending()
      return out
    }
    #expect(ask(#"{"execute": "qmp_capabilities"}"#) == [#"{"return": {}}"#])
    #expect(
      ask(#"{"execute": "query-migrate-capabilities"}"#) == [
        #"{"return": [{"capability": "events", "state": false}]}"#
      ])
    #expect(
      ask(
        #"{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "events", "state": true}]}}"#
      )
        == [#"{"return": {}}"#])
    #expect(
      ask(#"{"execute": "query-migrate-capabilities"}"#) == [
        #"{"return": [{"capability": "events", "state": true}]}"#
      ])
    let cpus = ask(#"{"execute": "query-cpus-fast"}"#)
    #expect(
      cpus == [
        #"{"return": [{"thread-id": \#(getpid()), "props": {"core-id": 0}, "qom-path": "/machine/unattached/device[0]", "cpu-index": 0, "target": "s390x", "cpu-state": "stopped"}, {"thread-id": \#(getpid()), "props": {"core-id": 1}, "qom-path": "/machine/unattached/device[1]", "cpu-index": 1, "target": "s390x", "cpu-state": "stopped"}]}"#
      ])
    #expect(ask(#"{"execute": "query-hotpluggable-cpus"}"#).first?.contains(#""vcpus-count": 1"#) == true)
    for empty in ["query-iothreads", "query-block", "query-blockstats"] {
      #expect(ask(#"{"execute": "\#(empty)"}"#) == [#"{"return": []}"#])
    }
    #expect(
      ask(#"{"execute": "query-named-block-nodes", "arguments": {"flat": true}}"#) == [#"{"return": []}"#])
    #expect(ask(#"{"execute": "query-chardev"}"#).first?.contains(#""label": "charmonitor""#) == true)
    #expect(ask(#"{"execute": "cont"}"#) == [#"{"return": {}}"#])
    // system_powerdown: the reply, then the guest's SHUTDOWN; with -no-shutdown it stops.
    events = sink.withLock { $0 }
    #expect(ask(#"{"execute": "system_powerdown"}"#) == [#"{"return": {}}"#])
    let after = Array(sink.withLock { $0 }.dropFirst(events.count))
    #expect(after.count == 2)
    #expect(
      after.first?.contains(#""event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}"#)
        == true)
    #expect(after.last?.contains(#""event": "STOP""#) == true)
    #expect(g.status == "shutdown" && !g.isQuit)
    g.quit()
    // Without -no-shutdown the guest ends.
    let h = try guest(host, ["-cpu", "host"])
    let s2 = QMPSession(guest: h)
    var st2 = JSONStreamer(limits: .qemu)
    for r in [#"{"execute": "qmp_capabilities"}"#, #"{"execute": "system_powerdown"}"#] {
      st2.feed(Array(r.utf8))
      while let v = st2.next() { _ = s2.handle(v, eventSink: { _ in }) }
      s2.finishPending()
    }
    #expect(h.isQuit && h.quitReason == "guest-shutdown")
  }

  /// An ordinary domain's balloon and console: accepted, listed where libvirt looks for them,
  /// a real pseudo-terminal for the console, and a balloon that gives what it is asked.
  @Test func theBalloonAndTheConsole() throws {
    let host = try makeHost()
    let g = try guest(
      host,
      [
        "-cpu", "host", "-m", "512", "-chardev", "pty,id=charserial0", "-device",
        "sclpconsole,chardev=charserial0,id=serial0", "-device",
        "virtio-balloon-ccw,id=balloon0,devno=fe.0.0000",
      ])
    defer { g.quit() }
    let session = QMPSession(guest: g)
    var streamer = JSONStreamer(limits: .qemu)
    let events = Mutex<[String]>([])
    func ask(_ r: String) -> String {
      streamer.feed(Array(r.utf8))
      var out: [String] = []
      while let v = streamer.next() {
        out += session.handle(v, eventSink: { e in events.withLock { $0.append(e.json) } }).map(\.json)
      }
      return out.joined()
    }
    #expect(ask(#"{"execute": "qmp_capabilities"}"#) == #"{"return": {}}"#)
    #expect(
      ask(#"{"execute": "qom-list", "arguments": {"path": "/machine/peripheral"}}"#)
        == #"{"return": [{"name": "serial0", "type": "child<sclpconsole>"}, {"name": "balloon0", "type": "child<virtio-balloon-ccw>"}]}"#
    )
    let chardevs = ask(#"{"execute": "query-chardev"}"#)
    let path = g.ptys.first?.path ?? "?"
    #expect(path.hasPrefix("/dev/pts/"))
    #expect(
      chardevs.contains(#"{"frontend-open": true, "filename": "pty:\#(path)", "label": "charserial0"}"#),
      "\(chardevs)")
    #expect(FileManager.default.fileExists(atPath: path))
    #expect(ask(#"{"execute": "query-balloon"}"#) == #"{"return": {"actual": 536870912}}"#)
    #expect(ask(#"{"execute": "balloon", "arguments": {"value": 268435456}}"#) == #"{"return": {}}"#)
    #expect(ask(#"{"execute": "query-balloon"}"#) == #"{"return": {"actual": 268435456}}"#)
    #expect(
      events.withLock { $0 }.last?.contains(#""event": "BALLOON_CHANGE", "data": {"actual": 268435456}"#)
        == true)
    // A balloon without an id is a balloon too.
    let anonymous = QMPSession(
      guest: try guest(host, ["-cpu", "host", "-name", "anon", "-device", "virtio-balloon-ccw"]))
    var sa = JSONStreamer(limits: .qemu)
    var answers: [String] = []
    for r in [#"{"execute": "qmp_capabilities"}"#, #"{"execute": "query-balloon"}"#] {
      sa.feed(Array(r.utf8))
      while let v = sa.next() { answers += anonymous.handle(v, eventSink: { _ in }).map(\.json) }
    }
    #expect(answers.last == #"{"return": {"actual": 134217728}}"#)
    // Without a balloon there is none to ask, as in QEMU.
    let plain = QMPSession(guest: try guest(host, ["-cpu", "host", "-name", "plain"]))
    var st = JSONStreamer(limits: .qemu)
    var out: [String] = []
    for r in [#"{"execute": "qmp_capabilities"}"#, #"{"execute": "query-balloon"}"#] {
      st.feed(Array(r.utf8))
      while let v = st.next() { out += plain.handle(v, eventSink: { _ in }).map(\.json) }
    }
    #expect(
      out.last == #"{"error": {"class": "DeviceNotActive", "desc": "No balloon device has been activated"}}"#)
    #expect(
      QEMUCommandLine.memoryBytes("2G") == 2 << 30 && QEMUCommandLine.memoryBytes("size=64M") == 64 << 20)
    #expect(QEMUCommandLine.memoryBytes("12x") == nil)
  }
}
