"""Drives an apvirt guest's QMP socket with the real qemu.qmp client.

Usage: qmp_scenario.py SCENARIO SOCKET [ARGS...]; prints one line per check as
"ok <what>" or "FAIL <what>: <detail>", and exits 1 if any check failed.
"""
import asyncio
import sys

from qemu.qmp import QMPClient, ExecuteError

failures = 0


def check(what, cond, detail=""):
    global failures
    if cond:
        print(f"ok {what}")
    else:
        failures += 1
        print(f"FAIL {what}: {detail}")


async def expect_error(q, cmd, args, desc):
    try:
        await q.execute(cmd, args)
        check(f"{cmd} refused", False, "it succeeded")
    except ExecuteError as e:
        check(f"{cmd} refused with '{desc}'", e.error.error.desc == desc, e.error.error.desc)


async def hotplug(sock, mdev1, mdev2):
    q = QMPClient("apvirt-test")
    await q.connect(sock)
    check("greeting has a version", q.greeting.QMP.version["qemu"]["major"] >= 9)
    status = await q.execute("query-status")
    check("query-status", status == {"running": True, "status": "running"}, status)
    await q.execute("device_add", {"driver": "vfio-ap", "id": "hostdev0", "sysfsdev": mdev1})
    got = await q.execute("qom-get", {"path": "/machine/peripheral/hostdev0", "property": "sysfsdev"})
    check("qom-get sysfsdev", got == mdev1, got)
    await expect_error(q, "device_add", {"driver": "vfio-ap", "sysfsdev": mdev2},
                       "A 'ap-bus' bus was found but is full")
    await expect_error(q, "device_add", {"driver": "vfio-ap", "bus": "ap-bus", "sysfsdev": mdev2},
                       "Bus 'ap-bus' is full")
    await q.execute("device_del", {"id": "hostdev0"})
    ev = await asyncio.wait_for(q.events.get(), 5)
    check("DEVICE_DELETED", ev["event"] == "DEVICE_DELETED"
          and ev["data"] == {"device": "hostdev0", "path": "/machine/peripheral/hostdev0"}, ev)
    await expect_error(q, "device_del", {"id": "hostdev0"}, "Device 'hostdev0' not found")
    # Plug it again for the host-removal scenario that follows.
    await q.execute("device_add", {"driver": "vfio-ap", "id": "hostdev0", "sysfsdev": mdev1})
    await q.disconnect()


async def ap_off(sock, mdev1):
    q = QMPClient("apvirt-test")
    await q.connect(sock)
    await expect_error(q, "device_add", {"driver": "vfio-ap", "sysfsdev": mdev1},
                       "No 'ap-bus' bus found for device 'vfio-ap'")
    await q.disconnect()


async def wait_unsolicited(sock):
    """Waits for the DEVICE_DELETED that the host's removal of the mdev causes."""
    q = QMPClient("apvirt-test")
    await q.connect(sock)
    print("ready", flush=True)
    ev = await asyncio.wait_for(q.events.get(), 20)
    check("unsolicited DEVICE_DELETED", ev["event"] == "DEVICE_DELETED"
          and ev["data"].get("device") == "hostdev0", ev)
    await q.execute("quit")
    shutdown = await asyncio.wait_for(q.events.get(), 5)
    check("SHUTDOWN after quit", shutdown["event"] == "SHUTDOWN"
          and shutdown["data"] == {"guest": False, "reason": "host-qmp-quit"}, shutdown)
    try:
        await q.disconnect()
    except Exception:  # the guest closed the monitor: QEMU does too after quit
        pass


async def main():
    scenario, sock, *args = sys.argv[1:]
    if scenario == "hotplug":
        await hotplug(sock, *args)
    elif scenario == "ap-off":
        await ap_off(sock, *args)
    elif scenario == "unsolicited":
        await wait_unsolicited(sock)
    sys.exit(1 if failures else 0)


asyncio.run(main())
