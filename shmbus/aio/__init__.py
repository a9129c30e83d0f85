"""shmbus for asyncio: the sync API's names, as coroutines.

    async with shmbus.aio.connect() as bus:
        async with bus.producer() as p:
            md = await p.send("imu", b"x", key=b"k")
        async with bus.consumer("imu", group="g", auto_offset_reset="earliest") as c:
            async for msg in c: ...

Records move on the event loop's thread (an append or a read is a few microseconds
of C). Waiting never blocks the loop and never polls it: a consumer with nothing to
read, or a producer facing a full durable ring, sleeps on the same futex words as
the sync API, in a helper thread of its own that hands the wake-up to the loop
(one thread per waiting consumer or producer, not per record). Cancelling the
waiting task wakes that thread at once through a futex word of its own; the
consumer stays usable. Control requests that may take a while (joining a group, a
rebalance, commits, flush) run off the loop too. Works with uvloop.
"""
from ._bus import Bus, connect
from ._consumer import Consumer
from ._producer import Producer

__all__ = ["connect", "Bus", "Producer", "Consumer"]
