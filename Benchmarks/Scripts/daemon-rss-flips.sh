#!/bin/bash
# Measures apvirt up's resident memory across apmask flips and assign/unassign cycles through the FUSE mount.
BIN=${BIN:-$(cd "$(dirname "$0")/../.." && pwd)/.build/debug/apvirt}
R=$(mktemp -d /tmp/apvmeas-XXXX)
M=$R/sys
$BIN up --mount $M --state $R/state > $R/up.log 2>&1 &
for i in $(seq 100); do [ -r $M/bus/ap/apmask ] && cat $M/bus/ap/apmask >/dev/null 2>&1 && break; sleep 0.1; done
PID=$(pgrep -f "apvirt up --mount $M" | head -1)
rss() { awk '/VmRSS/ {print $2}' /proc/$PID/status; }
echo "start: $(rss) kB"
U=62177883-f1bb-47f0-914d-32a22e3a8804
echo -5 > $M/bus/ap/apmask
echo $U > $M/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create
echo 5 > $M/devices/vfio_ap/matrix/$U/assign_adapter
for round in 1 2 3; do
  for i in $(seq 1000); do echo -0 > $M/bus/ap/apmask; echo +0 > $M/bus/ap/apmask; done
  echo "after $((round*2000)) apmask flips: $(rss) kB"
done
for round in 1 2; do
  for i in $(seq 2000); do echo 7 > $M/devices/vfio_ap/matrix/$U/assign_domain; echo 7 > $M/devices/vfio_ap/matrix/$U/unassign_domain; done
  echo "after $((round*2000)) assign/unassign cycles: $(rss) kB"
done
ls -l $R/dmesg 2>/dev/null | awk '{print "dmesg file:", $5, "bytes"}'
$BIN down --mount $M >/dev/null 2>&1; sleep 1; rm -rf $R
