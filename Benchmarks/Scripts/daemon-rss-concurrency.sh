#!/bin/bash
# The Interop concurrency load (8 writers assigning/unassigning, 2 readers) for DUR seconds against apvirt up; RSS every 10 s.
BIN=${BIN:-$(cd "$(dirname "$0")/../.." && pwd)/.build/debug/apvirt}
DUR=${DUR:-60}
R=$(mktemp -d /tmp/apvconc-XXXX)
M=$R/sys
$BIN up --mount $M --state $R/state > $R/up.log 2>&1 &
for i in $(seq 100); do [ -r $M/bus/ap/apmask ] && cat $M/bus/ap/apmask >/dev/null 2>&1 && break; sleep 0.1; done
PID=$(pgrep -f "apvirt up --mount $M" | head -1)
rss() { awk '/VmRSS/ {print $2}' /proc/$PID/status; }
echo -0-11 > $M/bus/ap/apmask
for i in $(seq 8); do printf -v u '%08x-2222-4333-8444-%012x' $i $i; echo $u > $M/devices/vfio_ap/matrix/mdev_supported_types/vfio_ap-passthrough/create; U[$i]=$u; done
echo "start: $(rss) kB"
for i in $(seq 8); do
  ( end=$((SECONDS+DUR)); m=$M/devices/vfio_ap/matrix/${U[$i]}; RANDOM=$i
    while [ $SECONDS -lt $end ]; do
      a=$((RANDOM % 14)); q=$((RANDOM % 20))
      case $((RANDOM % 4)) in
        0) echo $a > $m/assign_adapter ;; 1) echo $q > $m/assign_domain ;;
        2) echo $a > $m/unassign_adapter ;; 3) echo $q > $m/unassign_domain ;;
      esac 2>/dev/null
    done ) & LOAD+=($!)
done
for i in 1 2; do ( end=$((SECONDS+DUR)); while [ $SECONDS -lt $end ]; do cat $M/devices/vfio_ap/matrix/*-*/matrix $M/devices/vfio_ap/matrix/*-*/guest_matrix >/dev/null; done ) & LOAD+=($!); done
for t in $(seq 10 10 $DUR); do sleep 10; echo "t=${t}s: $(rss) kB, dmesg file $(stat -c %s $R/dmesg) bytes"; done
wait "${LOAD[@]}"
echo "end: $(rss) kB; dmesg lines $(wc -l < $R/dmesg)"
$BIN down --mount $M >/dev/null 2>&1; sleep 1; rm -rf $R
