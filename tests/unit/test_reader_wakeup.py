"""A publish wakes a reader asleep on the ring's futex at once, not at the end of its
wait. (Without the wake-up a consumer still gets its records, a wait slice late, so
nothing else in the suite would notice; here the wait is 30 s long.)"""
import os
import secrets
import threading
import time

from shmbus import _backend
from shmbus._backend import Ring

import buskit


def test_a_publish_wakes_a_reader_asleep_in_a_long_wait():
    name = f"/shmbus:unittest:{os.getpid()}:{secrets.token_hex(4)}:wake"
    ring = Ring.create(name, 64 << 10, 0, durable=False)
    try:
        writer = _backend.Writer(ring, wait_ns=0)
        cursor = _backend.Cursor(ring)
        cursor.seek_end()
        waits = _backend.WaitSet([cursor])
        result = []
        sleeper = threading.Thread(target=lambda: result.append(waits.wait(30 * 10 ** 9, 0, False)))
        sleeper.start()
        # Asleep: registered as a waiter on the ring (no spin was asked for).
        assert buskit.wait_until(lambda: ring.stats().data_waiters == 1, 10)
        published = time.monotonic()
        writer.append(_backend.NULL, -1, b"", 0, b"wake up", 7, -1)
        sleeper.join(25)
        assert result == [True], "the reader was not woken by the publish"
        assert time.monotonic() - published < 10, "woken only when its wait ran out"
        writer.release()
    finally:
        ring.close()
        Ring.unlink(name)
