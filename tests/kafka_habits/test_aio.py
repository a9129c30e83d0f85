"""shmbus.aio: waiting never blocks the event loop (a ticker keeps ticking while
consumers and a producer facing a full durable ring wait), cancelling a wait ends it
at once and leaves the client usable, rebalance callbacks may be coroutines, and
the same works under uvloop."""
import asyncio
import os
import signal
import threading
import time

import pytest

import shmbus
import shmbus.aio
import buskit
from shmbus import TopicPartition as TP


class Ticker:
    """A task that must keep running: ticks every 5 ms, and remembers its longest gap."""

    def __init__(self):
        self.ticks = 0
        self.longest_gap = 0.0
        self._task = None

    async def _run(self):
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            self.longest_gap = max(self.longest_gap, now - last)
            last = now
            self.ticks += 1

    def start(self):
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def stop(self):
        self._task.cancel()


def run(coro, loop="asyncio"):
    if loop == "uvloop":
        import uvloop
        return uvloop.run(coro)
    return asyncio.run(coro)


def helper_threads():
    return [t for t in threading.enumerate() if t.name.startswith("shmbus-aio")]


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_consumers_wait_without_blocking_the_loop_and_wake_on_a_record(bus_paths, loop):
    async def main():
        async with shmbus.aio.connect(bus_paths.bus, bus_paths.data_dir) as bus:
            await bus.create_topic("t", partitions=3, ring_bytes=64 << 10, durable=False)
            ticker = Ticker().start()
            consumers = [bus.consumer("t", auto_offset_reset="latest") for _ in range(4)]
            for c in consumers:
                await c.start()
            waits = [asyncio.create_task(c.poll(timeout=5.0)) for c in consumers]
            await asyncio.sleep(0.3)
            assert not any(w.done() for w in waits), "nothing was sent: they all still wait"
            assert ticker.ticks >= 20 and ticker.longest_gap < 0.2, (ticker.ticks, ticker.longest_gap)
            # One helper thread per waiting consumer, none per record.
            assert len(helper_threads()) == 4
            async with bus.producer() as p:
                md = await p.send("t", b"wake", partition=2)
            got = await asyncio.wait_for(asyncio.gather(*waits), 2.0)
            assert [(m.partition, m.offset, m.value) for m in got] == [(2, md.offset, b"wake")] * 4
            # Records already there are handed out on the loop, with no thread hop.
            async with bus.producer() as p:
                for i in range(50):
                    await p.send("t", b"%d" % i, partition=0)
            assert [m.value for m in await consumers[0].poll_many(100, timeout=1)] == [b"%d" % i for i in range(50)]
            for c in consumers:
                await c.close()
            ticker.stop()
        assert helper_threads() == []
    run(main(), loop)


def test_cancelling_a_waiting_poll_ends_it_at_once_and_the_consumer_goes_on(bus_paths):
    async def main():
        async with shmbus.aio.connect(bus_paths.bus, bus_paths.data_dir) as bus:
            await bus.create_topic("t", ring_bytes=64 << 10, durable=False)
            async with bus.consumer("t", auto_offset_reset="earliest") as c, bus.producer() as p:
                for _ in range(3):
                    task = asyncio.create_task(c.poll(timeout=None))
                    await asyncio.sleep(0.05)
                    started = time.monotonic()
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                    assert time.monotonic() - started < 0.1
                # wait_for's timeout is a cancellation too.
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(c.poll(timeout=None), 0.05)
                md = await p.send("t", b"after")
                m = await c.poll(timeout=2)
                assert (m.offset, m.value) == (md.offset, b"after")
                assert c.position(TP("t", 0)) == md.offset + 1
                # The helper thread is asleep again on the next wait, not stuck in an old one.
                late = asyncio.create_task(c.poll(timeout=5))
                await asyncio.sleep(0.05)
                md2 = await p.send("t", b"late")
                assert (await asyncio.wait_for(late, 2)).offset == md2.offset
                # Closing it under a waiting task ends that wait with Closed.
                waiting = asyncio.create_task(c.poll(timeout=None))
                await asyncio.sleep(0.05)
                await c.close()
                with pytest.raises(shmbus.Closed):
                    await asyncio.wait_for(waiting, 1)
    asyncio.run(main())


def test_async_for_commit_and_coroutine_rebalance_callbacks(bus_paths):
    async def main():
        events = []

        async def on_assign(tps):
            await asyncio.sleep(0.01)
            events.append(("assign", sorted(tps)))

        async def on_revoke(tps):
            await c.commit()   # inside a callback, as Kafka users commit on revoke
            events.append(("revoke", sorted(tps)))
        async with shmbus.aio.connect(bus_paths.bus, bus_paths.data_dir) as bus:
            await bus.create_topic("t", partitions=2, ring_bytes=64 << 10, durable=False)
            async with bus.producer() as p:
                for i in range(10):
                    await p.send("t", b"%d" % i, partition=i % 2)
            c = bus.consumer("t", group="g", auto_offset_reset="earliest", on_assign=on_assign,
                             on_revoke=on_revoke)
            async with c:
                assert events == [("assign", [TP("t", 0), TP("t", 1)])]
                seen = []
                async for msg in c:
                    seen.append(msg.value)
                    if len(seen) == 10:
                        break
                assert sorted(seen) == sorted(b"%d" % i for i in range(10))
                # A second member joins: this one gives a partition up, committing in on_revoke.
                other = bus.consumer("t", group="g", auto_offset_reset="earliest")
                joining = asyncio.create_task(other.start())
                while not joining.done():
                    await c.poll(timeout=0.05)
                await joining
                assert events[-1][0] == "revoke" and len(c.assignment()) == 1
                await other.close()
            info = await bus.describe_group("g")
            assert {tp: p.committed for tp, p in info.partitions.items()} == {TP("t", 0): 5, TP("t", 1): 5}
    asyncio.run(main())


def test_a_producer_blocked_on_a_full_durable_ring_waits_asynchronously(bus_paths):
    """The supervisor is frozen (SIGSTOP): nothing is archived, the durable ring fills,
    and the next send waits -- on a helper thread, while the ticker ticks. Cancelled, it
    ends at once; after SIGCONT a send completes."""
    async def main():
        async with shmbus.aio.connect(bus_paths.bus, bus_paths.data_dir) as bus:
            await bus.create_topic("d", ring_bytes=64 << 10, durable=True)
            supervisor = buskit.supervisor_process(bus_paths)
            async with bus.producer(timeout=20) as p:
                await p.send("d", b"x" * 1000)
                os.kill(supervisor.pid, signal.SIGSTOP)
                try:
                    sent = 1
                    while True:   # fill the ring: sends return at once until one must wait
                        task = asyncio.create_task(p.send("d", b"x" * 1000))
                        await asyncio.sleep(0)
                        if not task.done():
                            await asyncio.sleep(0.01)
                        if not task.done():
                            break
                        task.result()
                        sent += 1
                        assert sent < 200, "the ring never filled"
                    ticker = Ticker().start()
                    await asyncio.sleep(0.3)
                    assert not task.done() and ticker.ticks >= 20 and ticker.longest_gap < 0.2
                    started = time.monotonic()
                    task.cancel()
                    with pytest.raises(asyncio.CancelledError):
                        await task
                    assert time.monotonic() - started < 0.1
                    blocked = asyncio.create_task(p.send("d", b"y" * 1000))
                    await asyncio.sleep(0.2)
                    assert not blocked.done()
                finally:
                    os.kill(supervisor.pid, signal.SIGCONT)
                md = await asyncio.wait_for(blocked, 10)
                assert md.offset == sent   # the cancelled send sent nothing
                await p.flush()
                ticker.stop()
            async with bus.consumer("d", auto_offset_reset="earliest") as c:
                values = [m.value for m in await c.poll_many(1000, timeout=2)]
                while len(values) < sent + 1:
                    values += [m.value for m in await c.poll_many(1000, timeout=2)]
                assert values == [b"x" * 1000] * sent + [b"y" * 1000]
    asyncio.run(main())


def test_lingering_aio_producer_returns_futures(bus_paths):
    async def main():
        async with shmbus.aio.connect(bus_paths.bus, bus_paths.data_dir) as bus:
            await bus.create_topic("t", ring_bytes=64 << 10, durable=False)
            async with bus.producer(linger=0.02, value_serializer=shmbus.serde.json) as p:
                futures = [await p.send("t", {"n": i}) for i in range(5)]
                assert not any(f.done() for f in futures)
                mds = await asyncio.wait_for(asyncio.gather(*futures), 2)
                assert [md.offset for md in mds] == list(range(5))
    asyncio.run(main())
