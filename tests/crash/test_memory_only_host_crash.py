"""A memory-only topic whose rings are lost with the host: its records are gone,
but its offsets are never handed out twice."""
import os
import signal

import shmbus

import buskit


def test_offsets_are_not_reused_after_the_rings_are_lost(bus, bus_paths):
    bus.create_topic("m", partitions=1, ring_bytes=64 << 10, durable=False)
    with bus.producer() as p:
        last = [p.send("m", b"%d" % i).offset for i in range(5000)][-1]
    # The host "crashes" before the supervisor records the new offsets: SIGKILL it
    # at once and remove the rings, as a reboot would.
    pid = buskit.supervisor_process(bus_paths).pid
    os.kill(pid, signal.SIGKILL)
    buskit.reap_if_child(pid)
    assert buskit.wait_until(lambda: buskit.supervisor_process(bus_paths) is None, 10)
    buskit.unlink_shm(buskit.shm_leftovers(bus_paths))
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as again:
        with again.producer() as p:
            assert p.send("m", b"after").offset > last, "an offset was handed out twice"
        # A clean stop records the exact offset: nothing is skipped across it.
        end = again.describe_topic("m").partitions[0].end_offset
        again.stop_supervisor()
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as third:
        with third.producer() as p:
            assert p.send("m", b"next").offset == end
