import Foundation

#if canImport(Glibc)
  import Glibc
#endif

// apvirt-table: the table of issue 12 in one run. See Benchmarks/README.md ("The table").
//
//   apvirt-table [all|fuse|engine|up] --ref PATH-TO-sysfs-ref [--apvirt PATH-TO-apvirt]
//
// fuse: apvirt's FUSE server (in process, and the `apvirt up` daemon when --apvirt is given)
// against the libfuse reference server and tmpfs, interleaved; engine: the in-process engine
// rows; up: `apvirt up` until ready and its idle memory. Counts come from the environment
// (FUSE_BATCHES, FUSE_CYCLES, FUSE_ECHOES, FUSE_READER_SECONDS, ENGINE_ITERATIONS,
// MDEV_CREATES, UP_ITERATIONS, UP_IDLE_SECONDS). The table goes to stdout, progress to stderr.

struct Options {
  var parts: Set<String> = []
  var reference: String?
  var apvirt: String?
  var threads = 4

  init(_ args: [String]) {
    var i = 0
    while i < args.count {
      switch args[i] {
      case "--ref": i += 1; reference = args[i]
      case "--apvirt": i += 1; apvirt = args[i]
      case "--threads": i += 1; threads = Int(args[i]) ?? 4
      case "all": parts.formUnion(["fuse", "work", "engine", "up"])
      case "fuse", "work", "engine", "up": parts.insert(args[i])
      default:
        FileHandle.standardError.write(
          Data(
            "usage: apvirt-table [all|fuse|work|engine|up] --ref SYSFS-REF [--apvirt APVIRT] [--threads N]\n"
              .utf8)
        )
        exit(2)
      }
      i += 1
    }
    if parts.isEmpty { parts = ["fuse", "work", "engine", "up"] }
  }
}

// Never die on a write to a closed pipe (a server that went away): the error is reported instead.
signal(SIGPIPE, SIG_IGN)
let options = Options(Array(CommandLine.arguments.dropFirst()))
// FUSE_CPU=N: Scripts/table.sh runs the harness under `taskset -c N`, so that every thread and
// server inherits the one CPU (see Benchmarks/README.md, "One CPU"); the harness only says so.
let pinnedCPU = ProcessInfo.processInfo.environment["FUSE_CPU"].flatMap { Int($0) }
guard geteuid() == 0 else {
  note("needs root (mount(2) of the FUSE file systems)")
  exit(1)
}
var failed = false

print("## apvirt performance table (issue 12)\n")
print(
  "Machine: \(ProcessInfo.processInfo.activeProcessorCount) CPUs, \(uname()); ratios are apvirt / reference.")

if options.parts.contains("fuse") {
  guard let ref = options.reference else {
    note("fuse: --ref PATH (the built sysfs-ref) is needed")
    exit(2)
  }
  var servers: [any BenchServer] = []
  do {
    servers.append(try TmpfsServer())
    servers.append(try ReferenceServer(executable: ref, threads: options.threads))
    servers.append(try InProcessServer(threads: options.threads))
    if let apvirt = options.apvirt {
      servers.append(try DaemonServer(apvirt: apvirt, threads: options.threads))
    }
  } catch {
    note("fuse: setup failed: \(error)")
    for s in servers { s.stop() }
    exit(1)
  }
  var echoOnly: [any BenchServer] = []
  do {
    echoOnly.append(try ReferenceServer(executable: ref, threads: options.threads, xattrENOSYS: true))
  } catch {
    note("fuse: the ENOSYS reference did not start: \(error)")
  }
  let rows = FUSERows(settings: .init(), servers: servers, echoOnly: echoOnly)
  let results = rows.run()
  for s in servers + echoOnly { s.stop() }
  let st = rows.settings
  printTable(
    "FUSE rows (\(st.batches) interleaved batches; per batch and server \(st.cycles) cycles, \(st.echoes) echoes, "
      + "\(st.readerSeconds) s per parallel-reader sample; \(options.threads) server threads"
      + (pinnedCPU.map {
        "; every thread and server on CPU \($0) (FUSE_CPU), where apvirt's threads read in turns"
      } ?? "")
      + ")",
    rows.lines(results))
}

if options.parts.contains("work") {
  do {
    printTable("Server work (in process, no kernel)", try WorkRows().run())
  } catch {
    note("\(error)")
    failed = true
  }
}

if options.parts.contains("engine") {
  printTable("Engine rows (in process)", EngineRows().run())
}

if options.parts.contains("up") {
  if let apvirt = options.apvirt {
    do {
      printTable("Daemon rows (`apvirt up`, release build)", try UpRows(apvirt: apvirt).run())
    } catch {
      note("up: \(error)")
      failed = true
    }
  } else {
    note("up: --apvirt PATH (the release apvirt) is needed; skipped")
  }
}
exit(failed ? 1 : 0)

func uname() -> String {
  var u = utsname()
  Glibc.uname(&u)
  let release = withUnsafeBytes(of: u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
  let machine = withUnsafeBytes(of: u.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
  return "Linux \(release) \(machine)"
}
