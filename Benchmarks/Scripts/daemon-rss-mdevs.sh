#!/bin/bash
# apvirt up's resident memory across mdev create/assign/remove cycles with a new UUID each time,
# through the FUSE mount: every cycle looks up new paths, which the removal invalidates (the
# kernel then forgets them: the session's node table must not keep them).
BIN=${BIN:-$(cd "$(dirname "$0")/../.." && pwd)/.build/debug/apvirt}
R=$(mktemp -d /tmp/apvmdev-XXXX)
M=$R/sys
$BIN up --mount $M --state $R/state > $R/up.log 2>&1 &
DAEMON=$!
for i in $(seq 100); do [ -r $M/bus/ap/apmask ] && cat $M/bus/ap/apmask >/dev/null 2>&1 && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' /proc/$DAEMON/status; }
echo -5 > $M/bus/ap/apmask
T=$M/devices/vfio_ap/matrix
echo "start: $(rss) kB"
for round in 1 2 3 4 5 6 7 8; do
  for i in $(seq 1000); do
    printf -v u '%08x-1111-4222-8333-%012x' $((round * 10000 + i)) $i
    echo $u > $T/mdev_supported_types/vfio_ap-passthrough/create
    echo 5 > $T/$u/assign_adapter; echo 9 > $T/$u/assign_domain; cat $T/$u/matrix > /dev/null
    echo 1 > $T/$u/remove
  done
  echo "after $((round * 1000)) mdevs created and removed: $(rss) kB"
done
$BIN down --mount $M >/dev/null 2>&1; wait $DAEMON; rm -rf $R
