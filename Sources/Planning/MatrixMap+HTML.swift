import APModel

extension MatrixMap {
  /// One self-contained HTML page (no scripts, styles or fonts from elsewhere): the grid with a
  /// cell per APQN whose `title` gives its details on hover, the control domains, a legend and
  /// the mdevs.
  public func html() -> String {
    let s = snapshot
    let host = s.hostConfiguration
    var h = """
      <!DOCTYPE html>
      <html lang="en">
      <head>
      <meta charset="utf-8">
      <title>AP map of \(escape(s.root))</title>
      <style>
      body { font-family: sans-serif; margin: 1em; color: #222; }
      table.grid { border-collapse: collapse; font-family: monospace; }
      table.grid th { font-weight: normal; padding: 0 2px; font-size: 11px; }
      table.grid th.dom { writing-mode: vertical-rl; transform: rotate(180deg); }
      table.grid td { width: 14px; height: 14px; border: 1px solid #fff; text-align: center; font-size: 11px; }
      td.host { background: #c8c8c8; }
      td.free { background: #8fd18f; }
      td.mdev { background: #f2c35b; }
      td.in-use { background: #e0701b; color: #fff; font-weight: bold; }
      td.unbound { background: #f5f08a; }
      td.absent { background: #f7f7f7; }
      td.deconfigured { background: #9aa5b1; }
      td.checkstopped { background: #d62728; color: #fff; }
      td.ctl { background: #b5c7e8; }
      td.ctl-mdev { background: #5f7fc8; color: #fff; }
      td.none { background: #f7f7f7; }
      .legend span { display: inline-block; width: 14px; height: 14px; vertical-align: middle; margin: 0 4px 0 12px; }
      </style>
      </head>
      <body>
      <h1>AP map of \(escape(s.root))</h1>
      <p>\(host.apm.count) adapters, \(host.aqm.count) usage domains, \(host.adm.count) control domains;
      apmask <code>\(s.apmask.hexString)</code>, aqmask <code>\(s.aqmask.hexString)</code></p>

      """
    h += "<table class=\"grid\" id=\"grid\">\n<tr><th></th>"
    for d in domains { h += "<th class=\"dom\">\(hex4(d))</th>" }
    h += "</tr>\n"
    for a in adapters {
      let card = s.cards[a]
      let label = [hex2(a), card?.type].compactMap { $0 }.joined(separator: " ")
      h += "<tr><th>\(escape(label))</th>"
      for d in domains {
        let c = cells[APQN(a, d)]!
        let sym = symbol(c)
        h += "<td class=\"\(c.kind)\" title=\"\(escape(c.apqn.description + ": " + c.summary))\">"
        h += sym == " " ? "" : escape(String(sym))
        h += "</td>"
      }
      h += "</tr>\n"
    }
    h += "<tr><th>ctl</th>"
    for d in domains {
      let sym = controlSymbol(d)
      let holders = s.mdevs.filter { $0.matrix.adm.contains(d) }
      let inHost = host.adm.contains(d)
      let cls = holders.isEmpty ? (inHost ? "ctl" : "none") : "ctl-mdev"
      var title = "control domain \(hex4(d)): " + (inHost ? "in the host's ADM" : "not in the host's ADM")
      if !holders.isEmpty {
        title += "; assigned to " + holders.map { "mdev \($0.uuid)" }.joined(separator: ", ")
      }
      h += "<td class=\"\(cls)\" title=\"\(escape(title))\">\(sym == " " ? "" : escape(String(sym)))</td>"
    }
    h += "</tr>\n</table>\n"
    h += """
      <p class="legend"><span class="x" style="background:#c8c8c8"></span>h host driver\
      <span style="background:#8fd18f"></span>. free for vfio_ap\
      <span style="background:#f2c35b"></span>a-z held by an mdev\
      <span style="background:#e0701b"></span>A-Z used by its guest\
      <span style="background:#f5f08a"></span>? unbound\
      <span style="background:#9aa5b1"></span>- deconfigured\
      <span style="background:#d62728"></span>! checkstopped\
      <span style="background:#f7f7f7"></span>not in the host's configuration\
      <span style="background:#b5c7e8"></span>host control domain\
      <span style="background:#5f7fc8"></span>an mdev's control domain</p>

      """
    if !s.mdevs.isEmpty {
      h += "<h2>Mediated devices</h2>\n<ul>\n"
      for m in s.mdevs {
        h +=
          "<li><b>\(letters[m.uuid]!)</b> <code>\(m.uuid)</code>: \(escape(MatrixRules.matrixSummary(m.matrix)))"
        h += escape(m.inUse ? "; used by a guest" : "; no guest") + "</li>\n"
      }
      h += "</ul>\n"
    }
    h += "</body>\n</html>\n"
    return h
  }

  func escape(_ s: String) -> String {
    var out = ""
    for c in s {
      switch c {
      case "&": out += "&amp;"
      case "<": out += "&lt;"
      case ">": out += "&gt;"
      case "\"": out += "&quot;"
      default: out.append(c)
      }
    }
    return out
  }
}
