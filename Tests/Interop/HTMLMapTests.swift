import Foundation
import Testing

/// `apvirt map --html` opened as a user opens it: in a real browser (Debian's chromium,
/// headless), which renders the grid from the file alone (no network).
@Suite(
  "Interop: the HTML map in a real browser", .serialized,
  .enabled(
    if: FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium"),
    "needs Debian's chromium (apt-get install chromium)"))
struct HTMLMapTests {
  @Test func chromiumRendersTheGrid() throws {
    let d = try Daemon()
    let u = "62177883-f1bb-47f0-914d-32a22e3a8804"
    try d.bash(
      """
      set -e
      echo -5,-6 > /sys/bus/ap/apmask; echo -4,-0xab > /sys/bus/ap/aqmask
      echo \(u) > /sys/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create
      echo 5 > /sys/devices/vfio_ap/matrix/\(u)/assign_adapter; echo 4 > /sys/devices/vfio_ap/matrix/\(u)/assign_domain
      """)
    let page = d.root + "/map.html"
    let r = try run(apvirtBinary, ["map", "--sysfs", d.mount, "--html", page])
    #expect(r.status == 0, "\(r.stderr)")
    let html = try String(contentsOfFile: page, encoding: .utf8)
    #expect(!html.contains("http://") && !html.contains("https://"), "the page reaches for the network")
    let profile = d.root + "/chromium-profile"
    let flags = [
      "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=\(profile)",
    ]
    // What the browser built: the grid, with a cell per APQN of the 12 adapters.
    let dom = try run("/usr/bin/chromium", flags + ["--dump-dom", "file://" + page])
    #expect(dom.status == 0, "\(dom.stderr.suffix(500))")
    #expect(dom.stdout.contains("id=\"grid\""))
    #expect(dom.stdout.components(separatedBy: "<td").count - 1 >= 12 * 256, "cells in the rendered grid")
    #expect(dom.stdout.contains("05.0004"), "the mdev's APQN has its details")
    // A screenshot of it: a page with a grid, not an empty one.
    let shot = d.root + "/map.png"
    let s = try run(
      "/usr/bin/chromium", flags + ["--screenshot=\(shot)", "--window-size=1280,900", "file://" + page])
    #expect(s.status == 0, "\(s.stderr.suffix(500))")
    let png = try Data(contentsOf: URL(fileURLWithPath: shot))
    #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]), "a PNG")
    #expect(png.count > 20_000, "the screenshot is \(png.count) bytes: an empty page compresses to a few")
  }
}
