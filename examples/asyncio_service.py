"""An asyncio service on shmbus: it consumes orders (JSON) as a member of a consumer
group, prices each one and produces an invoice, commits after each batch, and keeps a
heartbeat task running while it waits -- the event loop is never blocked.

    python examples/asyncio_service.py [ORDERS]      (default 1000; SHMBUS_BUS/SHMBUS_DATA_DIR pick a bus)

The feeder task stands in for whatever sends the orders (another process, usually).
Run two of these at once and the group shares the partitions between them.
"""
import asyncio
import sys
import time

import shmbus
import shmbus.aio

PRICES = {"apple": 0.5, "pear": 0.75, "fig": 1.25}


async def feeder(bus, count):
    """Sends `count` orders, a few at a time, keyed by customer (same customer, same partition)."""
    async with bus.producer(value_serializer=shmbus.serde.json, key_serializer=shmbus.serde.string) as p:
        for n in range(count):
            await p.send("orders", {"id": n, "item": list(PRICES)[n % 3], "qty": 1 + n % 4}, key=f"cust-{n % 17}")
            if n % 50 == 49:
                await asyncio.sleep(0.001)   # orders come in bursts


async def heartbeat(state):
    while True:
        await asyncio.sleep(0.05)
        state["beats"] += 1


async def pricing_service(bus, count, state):
    """The service: orders in, invoices out, at-least-once (commit after producing)."""
    async with bus.producer(value_serializer=shmbus.serde.json, linger=0.002) as invoices, \
            bus.consumer("orders", group="pricing", auto_offset_reset="earliest",
                         value_deserializer=shmbus.serde.json) as orders:
        while state["priced"] < count:
            batch = await orders.poll_many(500, timeout=1.0)   # waits without blocking the loop
            sent = [await invoices.send("invoices", {"order": m.value["id"],
                                                     "total": PRICES[m.value["item"]] * m.value["qty"]},
                                        key=m.key) for m in batch]
            await asyncio.gather(*sent)   # lingering sends: their futures resolve as batches go out
            await orders.commit()
            state["priced"] += len(batch)


async def main(count):
    async with shmbus.aio.connect() as bus:
        for name in ("orders", "invoices"):
            await bus.create_topic(name, partitions=4, ring_bytes=4 << 20, exist_ok=True)
        state = {"priced": 0, "beats": 0}
        beat = asyncio.create_task(heartbeat(state))
        started = time.monotonic()
        await asyncio.gather(pricing_service(bus, count, state), feeder(bus, count))
        elapsed = time.monotonic() - started
        beat.cancel()
        async with bus.consumer("invoices", auto_offset_reset="earliest",
                                value_deserializer=shmbus.serde.json) as check:
            totals = {}
            while len(totals) < count:
                for m in await check.poll_many(1000, timeout=2.0):
                    totals[m.value["order"]] = m.value["total"]
        print(f"asyncio service: {state['priced']} orders priced -> {len(totals)} invoices "
              f"in {elapsed:.2f}s, heartbeat ran {state['beats']} times meanwhile")
        for name in ("orders", "invoices"):
            await bus.delete_topic(name)
        group = await bus.describe_group("pricing")
        print(f"group pricing: generation {group.generation}, lag "
              f"{sum(p.lag or 0 for p in group.partitions.values())}")
        await bus.delete_group("pricing")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
