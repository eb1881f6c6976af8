import Foundation
import Testing

@Suite("Interop: concurrent writers and readers", .serialized)
struct ConcurrencyTests {
  @Test func eightWritersAndReadersKeepTheInvariants() throws {
    let d = try Daemon()
    let uuids = (1...8).map { String(format: "%08x-2222-4333-8444-%012x", $0, $0) }
    var setup = "echo -0-11 > /sys/bus/ap/apmask\n"
    for u in uuids {
      setup += "echo \(u) > /sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create\n"
    }
    #expect(try d.bash(setup).status == 0)
    // Eight writers assign and unassign random adapters and domains for a bounded time, two
    // readers read matrix and guest_matrix and check every line's shape (no torn reads).
    var script = ""
    for (i, u) in uuids.enumerated() {
      script += """
        ( end=$((SECONDS+4)); m=/sys/devices/vfio_ap/matrix/\(u); RANDOM=\(i + 1)
          while [ $SECONDS -lt $end ]; do
            a=$((RANDOM % 14)); q=$((RANDOM % 20))
            case $((RANDOM % 4)) in
              0) echo $a > $m/assign_adapter ;; 1) echo $q > $m/assign_domain ;;
              2) echo $a > $m/unassign_adapter ;; 3) echo $q > $m/unassign_domain ;;
            esac 2>/dev/null
          done ) &

        """
    }
    for _ in 0..<2 {
      script += """
        ( end=$((SECONDS+4))
          while [ $SECONDS -lt $end ]; do
            cat /sys/devices/vfio_ap/matrix/*-*/matrix /sys/devices/vfio_ap/matrix/*-*/guest_matrix \
              | grep -vE '^([0-9a-f]{2}\\.([0-9a-f]{4})?|\\.[0-9a-f]{4})$' && echo TORN
          done ) &

        """
    }
    script += "wait\n"
    let r = try d.bash(script)
    #expect(!r.stdout.contains("TORN"), "\(r.stdout.prefix(500))")
    // The daemon still answers, and no APQN is in two mdevs.
    var owners: [String: String] = [:]
    for u in uuids {
      let matrix = try d.bash("cat /sys/devices/vfio_ap/matrix/\(u)/matrix").stdout
      for line in matrix.split(separator: "\n") where line.count == 7 {
        #expect(owners[String(line)] == nil, "\(line) in \(u) and \(owners[String(line)] ?? "")")
        owners[String(line)] = u
      }
    }
    #expect(try d.bash("cat /sys/bus/ap/bindings").stdout == "3072/3072 (complete)\n")
  }
}
