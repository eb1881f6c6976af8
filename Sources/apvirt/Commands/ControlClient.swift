import ArgumentParser
import Foundation
import VMM

/// Talks to a running daemon over its control socket.
struct ControlClient {
  let paths: RuntimePaths

  /// Runs one command; returns its `return` value or throws its error text.
  func execute(_ name: String, _ arguments: [String: Any] = [:]) throws -> Any {
    var client: JSONStreamClient
    do {
      client = try JSONStreamClient(path: paths.controlSocket)
    } catch {
      throw ValidationError("no apvirt daemon at \(paths.mount) (\(error)); start one with `apvirt up`")
    }
    defer { client.close() }
    client.send(["execute": name, "arguments": arguments])
    guard let reply = client.receive() as? [String: Any] else {
      throw ValidationError("the daemon closed the connection")
    }
    if let e = reply["error"] as? [String: Any] { throw ValidationError(e["desc"] as? String ?? "error") }
    return reply["return"] ?? [:]
  }
}

/// Options shared by the commands that talk to a daemon.
struct DaemonOptions: ParsableArguments {
  @Option(name: .long, help: "The daemon's sysfs mount (its control socket is beside it).")
  var mount: String = RuntimePaths.defaultMount

  var client: ControlClient { ControlClient(paths: RuntimePaths(mount: mount)) }
}
