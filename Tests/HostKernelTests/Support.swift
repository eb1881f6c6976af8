import APModel
import Machine
import SystemPackage
import Testing

@testable import HostKernel

/// Writes `text` as `echo -n` would and returns the errno, or nil on success.
@discardableResult
func echo(_ k: HostKernel, _ text: String, _ path: String) -> Errno? {
  do {
    try k.write(path, text)
    return nil
  } catch {
    return error
  }
}

func cat(_ k: HostKernel, _ path: String) -> String {
  (try? k.read(path)) ?? "<error>"
}

let uuid1 = "62177883-f1bb-47f0-914d-32a22e3a8804"
let uuid2 = "4f2c3e1a-9b8d-4e5f-a6b7-c8d9e0f1a2b3"
let uuid3 = "90c6c135-ad44-41d0-b1b7-bae47de48627"

func mdevPath(_ uuid: String) -> String { "/devices/vfio_ap/matrix/\(uuid)" }
let createPath = "/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create"

/// A kernel on the embedded default machine with adapters 5 and 6 freed for vfio_ap.
func bootWithFreedAdapters(_ apids: String = "-5,-6") -> HostKernel {
  let k = HostKernel()
  #expect(echo(k, apids, "/bus/ap/apmask") == nil)
  return k
}

/// Creates an mdev and assigns adapters and domains, expecting success.
@discardableResult
func makeMdev(
  _ k: HostKernel, _ uuid: String, adapters: [Int] = [], domains: [Int] = [], controls: [Int] = []
) -> MediatedDevice {
  #expect(echo(k, uuid, createPath) == nil)
  for a in adapters { #expect(echo(k, "\(a)", mdevPath(uuid) + "/assign_adapter") == nil) }
  for d in domains { #expect(echo(k, "\(d)", mdevPath(uuid) + "/assign_domain") == nil) }
  for c in controls { #expect(echo(k, "\(c)", mdevPath(uuid) + "/assign_control_domain") == nil) }
  return k.vfioAP.mdev(uuid)!
}

func machine(
  adapters: [Int], domains: ClosedRange<Int> = 0...255, na: Int = 255, nd: Int = 255, apxa: Bool = true,
  format: Int = 2
) -> MachineDefinition {
  MachineDefinition(
    name: "test", na: na, nd: nd, apxa: apxa, crycbFormat: format,
    adapters: adapters.map { .init(apid: $0, type: .cex8, mode: .cca) },
    usageDomains: APMask(domains), controlDomains: APMask(domains))
}
