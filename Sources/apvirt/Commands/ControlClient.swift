import ArgumentParser
import Foundation
import VMM

#if canImport(Glibc)
  import Glibc
#endif

/// Talks to a running daemon over its control socket, with the protocol's typed requests.
struct ControlClient {
  let paths: RuntimePaths
  /// How long a command may take before the client gives up; nil waits for ever.
  var timeout: Double? = 30

  /// Connects, with a message that says why it could not.
  func connect(timeout: Double?) throws -> JSONStreamClient {
    do {
      return try JSONStreamClient(path: paths.controlSocket, timeout: timeout)
    } catch {
      throw RuntimeError(Self.unreachable(paths, error))
    }
  }

  /// Why the daemon cannot be reached, and what to do.
  static func unreachable(_ paths: RuntimePaths, _ error: JSONStreamClient.ClientError) -> String {
    let socket = paths.controlSocket
    if case .timedOut(let s) = error {
      return "the apvirt daemon at \(paths.mount) did not answer within \(s.formatted()) s (\(socket))"
    }
    var st = stat()
    if stat(paths.runtime, &st) != 0 && errno == EACCES || access(paths.runtime, X_OK) != 0 && errno == EACCES
    {
      return
        "permission denied: \(paths.runtime) belongs to the daemon's user; run as root (or as the daemon's user or group)"
    }
    if stat(socket, &st) == 0 && access(socket, W_OK) != 0 {
      return "permission denied on \(socket): the daemon's sockets are its user's (and its --group's) only"
    }
    return "no apvirt daemon at \(paths.mount) (\(error)); start one with `apvirt up`"
  }

  /// Runs one command; returns its reply or throws its error text.
  func call<C: ControlCommand>(_ command: C) throws -> C.Reply {
    var client = try connect(timeout: timeout)
    defer { client.close() }
    client.sendLine(ControlWire.encode(command))
    return try Self.reply(C.self, &client, paths)
  }

  /// Reads the reply to a command sent on `client`.
  static func reply<C: ControlCommand>(_: C.Type, _ client: inout JSONStreamClient, _ paths: RuntimePaths)
    throws -> C.Reply
  {
    let line: [UInt8]
    do {
      line = try client.receiveLine()
    } catch .closed {
      throw RuntimeError("the apvirt daemon at \(paths.mount) closed the connection (it stopped?)")
    } catch {
      throw RuntimeError(unreachable(paths, error))
    }
    let reply: ControlWire.Reply<C.Reply>
    do {
      reply = try JSONDecoder().decode(ControlWire.Reply<C.Reply>.self, from: Data(line))
    } catch {
      throw RuntimeError("the apvirt daemon sent a reply this client does not understand: \(error)")
    }
    switch reply {
    case .success(let r): return r
    case .failure(let f): throw RuntimeError(f.desc)
    }
  }
}

/// Options shared by the commands that talk to a daemon.
struct DaemonOptions: ParsableArguments {
  @Option(name: .long, help: "The daemon's sysfs mount (its control socket is beside it).")
  var mount: String = RuntimePaths.environmentMount

  var client: ControlClient { ControlClient(paths: RuntimePaths(mount: mount)) }
}
