#!/bin/bash
# The performance table of issue 12 in one run (see Benchmarks/README.md, "The table"):
#   Benchmarks/Scripts/table.sh [all|fuse|work|engine|up]
# builds apvirt (statically linked, Benchmarks/.build/daemon) and the harness (Benchmarks/.build)
# in release mode, builds the libfuse reference server (Reference/sysfs-ref.c, a benchmark
# fixture: needs libfuse3-dev and pkg-config) and prints the table to stdout (progress to
# stderr). Needs root and /dev/fuse.
# Counts: FUSE_BATCHES FUSE_CYCLES FUSE_ECHOES FUSE_READER_SECONDS ENGINE_ITERATIONS
# MDEV_CREATES UP_ITERATIONS UP_IDLE_SECONDS WORK_CYCLES; SKIP_BUILD=1 reuses the last build.
# FUSE_CPU=N runs everything (the harness, its threads, the servers) on CPU N (taskset).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "table.sh: needs root (FUSE mounts with mount(2))" >&2; exit 1; }
[ -c /dev/fuse ] || { echo "table.sh: no /dev/fuse" >&2; exit 1; }
pkg-config --exists fuse3 || {
  echo "table.sh: libfuse3 development files missing: apt-get install -y libfuse3-dev pkg-config" >&2
  exit 1
}
BIN=.build/release
# The daemon as it is deployed: one static executable (-static-executable: the Swift libraries,
# libstdc++ and glibc linked in, no shared library's symbol tables, relocations or neighbouring
# pages mapped). Its own build directory: the flag would otherwise rebuild the harness's modules.
DAEMON=.build/daemon/release
if [ "${SKIP_BUILD:-0}" = 0 ]; then
  # One build at a time.
  timeout 1800 swift build -c release --product apvirt --scratch-path .build/daemon -Xswiftc -static-executable >&2
  timeout 1800 swift build -c release --product APVirtTable >&2
  # shellcheck disable=SC2046
  cc -O2 -Wall -o $BIN/sysfs-ref Reference/sysfs-ref.c $(pkg-config --cflags --libs fuse3)
fi
PIN=()
[ -n "${FUSE_CPU:-}" ] && PIN=(taskset -c "$FUSE_CPU")
exec "${PIN[@]}" timeout 3600 $BIN/APVirtTable "${@:-all}" --ref $BIN/sysfs-ref --apvirt $DAEMON/apvirt
