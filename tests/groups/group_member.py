"""A consumer group member that the group tests run as a real process.

    python tests/groups/group_member.py '{"bus": ..., "data_dir": ..., "group": ..., ...}'

The JSON argument carries the bus name, so a member that outlives its test shows
up in the leak check. It never starts a supervisor (autostart=False) unless told.

What it does, and what it leaves for the test to read:
- joins `group` on `topics` and polls until the stop file appears, then closes
  (commit with auto-commit, leave) and exits 0;
- appends every record it handles to `<name>.records` as "topic partition offset
  value" lines, with one os.write per batch *before* committing that batch, so
  what a SIGKILL leaves in the file is exactly what it processed;
- commits after every batch ("commit": "batch", the default), or auto-commits
  ("commit": "auto"), or never ("commit": "none");
- keeps `<name>.state` (atomically replaced): member id, generation, assignment,
  and the on_assign / on_revoke events so far;
- with "pause_at_batch": K, it processes half of its K-th non-empty batch, creates
  `<name>.mid` and sleeps: the test SIGKILLs it mid-batch;
- with "fork_holder": true, it forks a child that only sleeps, holding a copy of
  the control connection open (its pid in `<name>.holder`): when the member dies,
  the supervisor sees no close and must notice the death by pid.

With "aio": true it does the same with shmbus.aio (on uvloop with "loop": "uvloop"):
`await poll_many`, `await commit`, and on_assign / on_revoke as coroutine functions;
a ticker task counts its ticks into the state ("ticks"), so a test sees the loop ran
while the member waited.

With "churn_seconds": S it is a storm instead: for S seconds it keeps opening and
closing members (each on its own connection, up to "churn_width" at once), polling
and committing with all of them, then closes them all and exits 0.
"""
import asyncio
import json
import os
import random
import sys
import time

import shmbus


def write_json(path, obj):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def main(args):
    base = os.path.join(args["workdir"], args["name"])
    events = []
    options = dict(
        group=args["group"], auto_offset_reset=args.get("reset", "earliest"),
        assignment_strategy=args.get("strategy", "range"), sticky=args.get("sticky", False),
        max_poll_interval=args.get("max_poll_interval", 30.0),
        enable_auto_commit=args.get("commit") == "auto",
        auto_commit_interval=args.get("auto_commit_interval", 0.2),
        on_assign=lambda tps: events.append(["assign", sorted(map(list, tps))]),
        on_revoke=lambda tps: events.append(["revoke", sorted(map(list, tps))]),
    )
    records_fd = os.open(f"{base}.records", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    bus = shmbus.connect(args["bus"], args["data_dir"], autostart=args.get("autostart", False))
    consumer = bus.consumer(*args["topics"], **options)
    if args.get("fork_holder"):
        holder = os.fork()
        if holder == 0:
            time.sleep(60)
            os._exit(0)
        with open(f"{base}.holder", "w") as f:
            f.write(str(holder))
    batches = 0
    last_state = None
    try:
        while not os.path.exists(args["stop_file"]):
            batch = consumer.poll_many(args.get("max_records", 100), timeout=0.05)
            if batch:
                batches += 1
                lines = [f"{m.topic} {m.partition} {m.offset} {m.value.decode()}\n" for m in batch]
                if batches == args.get("pause_at_batch"):
                    os.write(records_fd, "".join(lines[:len(lines) // 2]).encode())
                    open(f"{base}.mid", "w").close()
                    time.sleep(3600)  # the test kills us here
                os.write(records_fd, "".join(lines).encode())
                if args.get("commit", "batch") == "batch":
                    try:
                        consumer.commit()
                    except shmbus.CommitFailed:
                        pass  # a rebalance took a partition: its records will be read again
            state = {"member_id": consumer._member.member_id, "generation": consumer._member.generation,
                     "assignment": sorted(map(list, consumer.assignment())), "events": events,
                     "pid": os.getpid()}
            if state != last_state:
                write_json(f"{base}.state", state)
                last_state = json.loads(json.dumps(state))
    finally:
        consumer.close()
        bus.close()
        os.close(records_fd)


def churn(args):
    base = os.path.join(args["workdir"], args["name"])
    rng = random.Random(args.get("seed"))
    records_fd = os.open(f"{base}.records", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    live = []
    joins = 0
    deadline = time.monotonic() + args["churn_seconds"]
    try:
        while time.monotonic() < deadline:
            if live and (len(live) >= args.get("churn_width", 3) or rng.random() < 0.5):
                bus, consumer = live.pop(rng.randrange(len(live)))
                consumer.close()
                bus.close()
            else:
                bus = shmbus.connect(args["bus"], args["data_dir"], autostart=False)
                live.append((bus, bus.consumer(*args["topics"], group=args["group"],
                                               auto_offset_reset="earliest")))
                joins += 1
            for _, consumer in live:
                batch = consumer.poll_many(50, timeout=0.01)
                if batch:
                    os.write(records_fd, "".join(f"{m.topic} {m.partition} {m.offset} {m.value.decode()}\n"
                                                 for m in batch).encode())
                    try:
                        consumer.commit()
                    except shmbus.CommitFailed:
                        pass
    finally:
        for bus, consumer in live:
            consumer.close()
            bus.close()
        os.close(records_fd)
    with open(f"{base}.state", "w") as f:
        json.dump({"joins": joins}, f)


async def main_aio(args):
    import shmbus.aio
    base = os.path.join(args["workdir"], args["name"])
    events = []
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async def on_assign(tps):
        await asyncio.sleep(0)   # a coroutine callback, awaited during the rebalance
        events.append(["assign", sorted(map(list, tps))])

    async def on_revoke(tps):
        await asyncio.sleep(0)
        events.append(["revoke", sorted(map(list, tps))])
    tick_task = asyncio.get_running_loop().create_task(ticker())
    records_fd = os.open(f"{base}.records", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    async with shmbus.aio.connect(args["bus"], args["data_dir"], autostart=False) as bus:
        async with bus.consumer(*args["topics"], group=args["group"], auto_offset_reset=args.get("reset", "earliest"),
                                max_poll_interval=args.get("max_poll_interval", 30.0),
                                on_assign=on_assign, on_revoke=on_revoke) as consumer:
            batches = 0
            last_state = None
            while not os.path.exists(args["stop_file"]):
                batch = await consumer.poll_many(args.get("max_records", 100), timeout=0.05)
                if batch:
                    batches += 1
                    lines = [f"{m.topic} {m.partition} {m.offset} {m.value.decode()}\n" for m in batch]
                    if batches == args.get("pause_at_batch"):
                        os.write(records_fd, "".join(lines[:len(lines) // 2]).encode())
                        open(f"{base}.mid", "w").close()
                        await asyncio.sleep(3600)  # the test kills us here
                    os.write(records_fd, "".join(lines).encode())
                    try:
                        await consumer.commit()
                    except shmbus.CommitFailed:
                        pass
                member = consumer.sync._member
                state = {"member_id": member.member_id, "generation": member.generation,
                         "assignment": sorted(map(list, consumer.assignment())), "events": events,
                         "pid": os.getpid(), "ticks": ticks // 50}
                if state != last_state:
                    write_json(f"{base}.state", state)
                    last_state = json.loads(json.dumps(state))
    tick_task.cancel()
    os.close(records_fd)


if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    if arguments.get("aio"):
        if arguments.get("loop") == "uvloop":
            import uvloop
            uvloop.run(main_aio(arguments))
        else:
            asyncio.run(main_aio(arguments))
    elif "churn_seconds" in arguments:
        churn(arguments)
    else:
        main(arguments)
