import Foundation
import Testing

@testable import VMM

/// `-machine none`'s monitor, as libvirt's capability probe asks it (the commands and their
/// order are libvirt 9.0's, read from its monitor log against qemu-system-s390x 7.2).
@Suite("QMP: the -machine none monitor libvirt probes")
struct MachineNoneTests {
  /// Negotiated, then the reply to each request.
  func replies(kvm: Bool = true, _ requests: [String]) -> [String] {
    let session = QMPSession(target: MachineNone(version: QEMUVersion(10, 2, 0), kvm: kvm))
    var streamer = JSONStreamer(limits: .qemu)
    var out: [String] = []
    for r in [#"{"execute": "qmp_capabilities"}"#] + requests {
      streamer.feed(Array(r.utf8))
      while let v = streamer.next() { out += session.handle(v, eventSink: { _ in }).map(\.json) }
    }
    #expect(out.first == #"{"return": {}}"#)
    return Array(out.dropFirst())
  }

  @Test func theProbesAnswers() {
    let r = replies([
      #"{"execute": "query-target"}"#, #"{"execute": "query-kvm"}"#, #"{"execute": "query-qmp-schema"}"#,
      #"{"execute": "qom-list-types", "arguments": {"implements": "ap-device"}}"#,
      #"{"execute": "device-list-properties", "arguments": {"typename": "vfio-ap"}}"#,
      #"{"execute": "device-list-properties", "arguments": {"typename": "virtio-blk-pci"}}"#,
      #"{"execute": "qom-list-properties", "arguments": {"typename": "none-machine"}}"#,
      #"{"execute": "qom-list-properties", "arguments": {"typename": "nothing-such"}}"#,
      #"{"execute": "query-command-line-options"}"#, #"{"execute": "query-migrate-capabilities"}"#,
      #"{"execute": "query-status"}"#, #"{"execute": "query-tpm-models"}"#,
    ])
    #expect(
      r == [
        #"{"return": {"arch": "s390x"}}"#, #"{"return": {"enabled": true, "present": true}}"#,
        #"{"return": []}"#,
        #"{"return": [{"name": "vfio-ap", "parent": "ap-device"}]}"#,
        #"{"return": [{"name": "sysfsdev", "type": "str"}]}"#,
        #"{"error": {"class": "DeviceNotFound", "desc": "Device 'virtio-blk-pci' not found"}}"#,
        #"{"return": []}"#,
        #"{"error": {"class": "DeviceNotFound", "desc": "Class 'nothing-such' not found"}}"#,
        #"{"return": []}"#, #"{"return": []}"#, #"{"return": {"running": false, "status": "prelaunch"}}"#,
        #"{"error": {"class": "CommandNotFound", "desc": "The command query-tpm-models has not been found"}}"#,
      ])
  }

  @Test func machinesAndCPUModels() {
    let r = replies([
      #"{"execute": "query-machines"}"#, #"{"execute": "query-cpu-definitions"}"#,
      #"{"execute": "query-cpu-model-expansion", "arguments": {"type": "static", "model": {"name": "host"}}}"#,
      #"{"execute": "query-cpu-model-expansion", "arguments": {"type": "full", "model": {"name": "z15", "props": {"ap": true, "apqci": true}}}}"#,
      #"{"execute": "query-cpu-model-expansion", "arguments": {"type": "full", "model": {"name": "z15", "props": {"vx": true}}}}"#,
    ])
    #expect(
      r[0].hasPrefix(
        #"{"return": [{"name": "s390-ccw-virtio-10.2", "alias": "s390-ccw-virtio", "is-default": true, "cpu-max": 248, "hotpluggable-cpus": true"#
      ))
    #expect(r[0].contains(#"{"name": "none", "cpu-max": 1"#))
    for model in ["host", "max", "z13", "z14", "z15", "z16", "qemu"] {
      #expect(
        r[1].contains(#"{"name": "\#(model)", "typename": "\#(model)-s390x-cpu", "unavailable-features": []"#)
      )
    }
    #expect(
      r[2]
        == #"{"return": {"model": {"name": "host", "props": {"ap": true, "apqci": true, "apft": true, "apqi": true, "appv": false, "appvi": false}}}}"#
    )
    #expect(
      r[3]
        == #"{"return": {"model": {"name": "z15", "props": {"ap": true, "apqci": true, "apft": false, "apqi": false, "appv": false, "appvi": false}}}}"#
    )
    #expect(r[4] == #"{"error": {"class": "GenericError", "desc": "Property 'z15-s390x-cpu.vx' not found"}}"#)
  }

  /// With TCG (`accel=tcg`, libvirt's second probe) KVM is present but not in use, and there is
  /// no host model, as QEMU 7.2 answers under TCG.
  @Test func underTCG() {
    let r = replies(
      kvm: false,
      [
        #"{"execute": "query-kvm"}"#, #"{"execute": "query-cpu-definitions"}"#,
        #"{"execute": "query-cpu-model-expansion", "arguments": {"type": "static", "model": {"name": "host"}}}"#,
      ])
    #expect(r[0] == #"{"return": {"enabled": false, "present": true}}"#)
    #expect(!r[1].contains(#""name": "host""#))
    #expect(r[2] == #"{"error": {"class": "GenericError", "desc": "The CPU definition 'host' is unknown."}}"#)
    #expect(MachineNone.usesKVM(accelerators: ["kvm", "tcg"]))
    #expect(!MachineNone.usesKVM(accelerators: ["tcg"]))
    #expect(MachineNone.usesKVM(accelerators: []))
  }

  @Test func theCommandLineOfAProbe() throws {
    let c = try QEMUCommandLine.parse([
      "-S", "-no-user-config", "-nodefaults", "-nographic", "-machine", "none,accel=kvm:tcg", "-qmp",
      "unix:/tmp/x.monitor,server=on,wait=off", "-pidfile", "/tmp/x.pid", "-daemonize",
    ])
    #expect(c.isMachineNone && c.daemonize && c.startPaused)
    #expect(c.accelerators == ["kvm", "tcg"])
    #expect(c.pidfile == "/tmp/x.pid")
    #expect(c.qmpSockets == ["/tmp/x.monitor"])
    #expect(try QEMUCommandLine.parse(["-accel", "tcg", "-enable-kvm"]).accelerators == ["tcg", "kvm"])
    #expect(throws: QEMUCommandLine.Failure.self) { try QEMUCommandLine.parse(["-pidfile"]) }
  }
}
