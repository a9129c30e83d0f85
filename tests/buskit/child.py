"""Producer and consumer roles that tests run in real child processes.

    python tests/buskit/child.py '{"role": "produce", "bus": ..., "data_dir": ..., ...}'

The JSON argument carries the bus name, so a child that outlives its test
shows up in the leak check. Children never start a supervisor (autostart=False,
except the role that tests autostart): the test owns the bus's lifetime.
A child says it is ready by creating its ready file and reports by writing
its out file (atomically, so the test never reads half of it).
"""
import json
import os
import random
import signal
import sys
import threading
import time

# Run as a script: its own directory is first on sys.path; the tests' is what it needs.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import buskit  # noqa: E402
import shmbus  # noqa: E402
from shmbus._native._core import ffi, lib  # noqa: E402


def write_json(path, obj):
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def touch(path):
    with open(path, "w"):
        pass


def wait_for_file(path, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up waiting for {path}")
        time.sleep(0.001)  # a start line: children should cross it close together


def size_for(args, seq):
    """A record size from args["size"]: an int, or [lo, hi] varied per seq so
    sizes do not divide the ring."""
    size = args.get("size", 0)
    if isinstance(size, list):
        lo, hi = size
        return lo + (seq * 7919) % (hi - lo + 1)
    return size


def key_for(args, seq):
    mode = args.get("key")
    if mode is None:
        return None
    if mode == "tag":
        return args["tag"].encode()
    if mode.startswith("cycle:"):
        return f"k{seq % int(mode[6:])}".encode()
    raise SystemExit(f"unknown key mode {mode!r}")


def connect(args, autostart=False):
    return shmbus.connect(args["bus"], args["data_dir"], autostart=autostart)


# ---------------------------------------------------------------------------
# Producers
# ---------------------------------------------------------------------------

def role_produce(args):
    """Send `count` records; report (seq, partition, offset) of each."""
    topic, tag, count = args["topic"], args["tag"], args["count"]
    batch, pause = args.get("batch", 1), args.get("pause", 0.0)
    sent = []
    with connect(args) as bus, bus.producer() as producer:
        producer.partitions_for(topic)  # resolve the topic before the start line
        touch(args["ready_file"])
        if args.get("go_file"):
            wait_for_file(args["go_file"])
        seq = 0
        while seq < count:
            if batch > 1:
                n = min(batch, count - seq)
                values = [buskit.make_value(tag, s, size_for(args, s)) for s in range(seq, seq + n)]
                partition = args.get("partition", 0)
                assert producer.send_many(topic, values, key=key_for(args, seq), partition=partition) == n
                sent.extend([s, partition, None] for s in range(seq, seq + n))
                seq += n
            else:
                md = producer.send(topic, buskit.make_value(tag, seq, size_for(args, seq)),
                                   key=key_for(args, seq), partition=args.get("partition"))
                sent.append([seq, md.partition, md.offset])
                seq += 1
            if pause:
                time.sleep(pause)
    write_json(args["out"], {"tag": tag, "sent": sent})


def role_survivor(args):
    """Send to one partition until the stop file appears; report how many."""
    topic, tag, pause = args["topic"], args["tag"], args.get("pause", 0.0005)
    partition = args.get("partition", 0)
    seq = 0
    with connect(args) as bus, bus.producer() as producer:
        while not os.path.exists(args["stop_file"]):
            producer.send(topic, buskit.make_value(tag, seq, size_for(args, seq)), partition=partition,
                          timeout=30)
            seq += 1
            if seq == 1:
                touch(args["ready_file"])
            time.sleep(pause)
    write_json(args["out"], {"tag": tag, "sent": seq})


def _kill_self_mid_claim(producer, topic, partition, arm_file, kill_on):
    """Watch our own producer slot from a second thread and SIGKILL the whole
    process the moment the main thread holds the claim lock or has a claim
    open (reserved, not yet published): the worst instants to die at. cffi
    releases the GIL around C calls, so the main thread keeps appending while
    this one looks. kill_on: "claim", or "either" (the lock or a claim)."""
    if arm_file:
        wait_for_file(arm_file)
    route = producer._routes[topic]
    writer = route.writers[partition]
    ring, slot = writer.ring.ptr, writer.slot
    # Raw C calls, not Ring.slots(): this loop must be fast to catch the instant.
    slots = ffi.new("sb_slot_info[]", lib.SB_MAX_SLOTS)
    while True:
        if kill_on == "either" and lib.sb_lock_owner(ring) == slot:
            os.kill(os.getpid(), signal.SIGKILL)
        lib.sb_slots_get(ring, slots)
        if slots[slot].claimed:
            os.kill(os.getpid(), signal.SIGKILL)


def role_victim(args):
    """Send until killed: single records and batches, to one partition.
    mode "random": the test kills us whenever it likes.
    mode "claim": we kill ourselves mid-claim once warmed up (or once the arm
    file appears, if one is given). Larger batch values (batch_value_bytes)
    make each claim take longer to fill, so a kill inside one leaves part of
    it unpublished."""
    topic, tag, mode = args["topic"], args["tag"], args["mode"]
    partition = args.get("partition", 0)
    pause = args.get("pause", 0.0005)
    batch_value_bytes = args.get("batch_value_bytes", 2048)
    rng = random.Random(args.get("seed"))
    seq = 0
    with connect(args) as bus, bus.producer() as producer:
        for op in range(10 ** 9):
            if op % 4 == 3:
                # A batch claim: many records under one reservation, so dying
                # inside it leaves an aborted frame over the unpublished rest.
                values = [buskit.make_value(tag, s, batch_value_bytes) for s in range(seq, seq + 32)]
                producer.send_many(topic, values, partition=partition)
                seq += 32
            else:
                producer.send(topic, buskit.make_value(tag, seq, rng.randint(0, 400)), partition=partition)
                seq += 1
            if op == 0:
                touch(args["ready_file"])
            if op == 3 and mode == "claim":
                threading.Thread(target=_kill_self_mid_claim, daemon=True,
                                 args=(producer, topic, partition, args.get("arm_file"),
                                       args.get("kill_on", "either"))).start()
            time.sleep(pause)


def _stop_self_mid_claim(writer_ring, slot, arm_file):
    """Like _kill_self_mid_claim, but SIGSTOP: the whole process freezes with its main
    thread inside a claim (copying a large value), as under a debugger or heavy
    swapping. Once: after a revocation its partition has moved to a new ring."""
    slots = ffi.new("sb_slot_info[]", lib.SB_MAX_SLOTS)
    while True:
        wait_for_file(arm_file)
        while True:
            lib.sb_slots_get(writer_ring, slots)
            if slots[slot].state == 1:   # CLAIMED: reserved, still being copied
                os.unlink(arm_file)
                os.kill(os.getpid(), signal.SIGSTOP)
                break


def role_staller(args):
    """Send large records to one partition until the stop file appears, freezing itself
    mid-claim whenever the arm file appears. Reports every record sent (seq, offset)
    and every one revoked (its send raised ClaimRevoked)."""
    topic, tag = args["topic"], args["tag"]
    partition = args.get("partition", 0)
    size = args.get("size", 2 << 20)
    sent, revoked = [], []
    seq = 0
    with connect(args) as bus, bus.producer() as producer:
        producer.send(topic, buskit.make_value(tag, seq, size), partition=partition)
        sent.append([seq, None])
        seq += 1
        writer = producer._routes[topic].writers[partition]
        threading.Thread(target=_stop_self_mid_claim, daemon=True,
                         args=(writer.ring.ptr, writer.slot, args["arm_file"])).start()
        touch(args["ready_file"])
        while not os.path.exists(args["stop_file"]):
            try:
                md = producer.send(topic, buskit.make_value(tag, seq, size), partition=partition, timeout=30)
                sent.append([seq, md.offset])
            except shmbus.Timeout as e:
                if type(e).__name__ != "ClaimRevoked":
                    raise
                revoked.append([seq, str(e)])
            seq += 1
            time.sleep(args.get("pause", 0.001))
        producer.flush()
    write_json(args["out"], {"tag": tag, "sent": sent, "revoked": revoked})


# ---------------------------------------------------------------------------
# Consumers
# ---------------------------------------------------------------------------

def _record(message, garbage):
    try:
        tag, seq = buskit.check_value(message.value)
    except ValueError as e:
        garbage.append(f"{message.topic}/{message.partition}@{message.offset}: {e}")
        tag, seq = None, None
    key = None if message.key is None else message.key.decode("latin-1")
    return [message.topic, message.partition, message.offset, key, tag, seq]


def role_reserver_signals_itself(args):
    """Hold a claim open and take a signal there, by construction: send `before` records,
    wait for the arm file (if one is given), reserve a record, write half of its value and
    send this process `signal` inside the block -- SIGKILL (a producer dead mid-claim: a
    watcher thread that sees a claim open and then kills acts on a stale look, since with
    the GIL the send may have published by then) or SIGSTOP (a live producer stopped
    mid-record, as under a debugger). Once continued, it writes the rest and publishes;
    reports its offset, or the revocation if the unblocker took the claim meanwhile."""
    topic, tag = args["topic"], args["tag"]
    value = buskit.make_value(tag, 0, args["size"])
    half = len(value) // 2
    result = {"offset": None, "revoked": []}
    with connect(args) as bus, bus.producer() as producer:
        for seq in range(args.get("before", 0)):
            producer.send(topic, buskit.make_value(tag, seq + 1, 100), partition=0)
        touch(args["ready_file"])
        if args.get("arm_file"):
            wait_for_file(args["arm_file"])
        try:
            with producer.reserve(topic, len(value), partition=0) as buf:
                buf[:half] = value[:half]
                os.kill(os.getpid(), getattr(signal, args["signal"]))
                buf[half:] = value[half:]
            result["offset"] = buf.metadata.offset
        except shmbus.ClaimRevoked as e:
            result["revoked"].append(str(e))
        producer.flush()
    write_json(args["out"], result)


def role_reserver(args):
    """Reserve a record, fill half of it, say so, and wait in the block (the test kills us)."""
    with connect(args) as bus, bus.producer() as producer:
        with producer.reserve(args["topic"], args["nbytes"], partition=0) as buf:
            buf[:args["nbytes"] // 2] = b"h" * (args["nbytes"] // 2)
            touch(args["ready_file"])
            time.sleep(3600)


def role_consume(args):
    """Read from earliest until `expect` records arrived (or, without expect,
    until the done file exists and the topic stays idle for a second);
    report every record as (topic, partition, offset, key, tag, seq)."""
    records, garbage = [], []
    expect = args.get("expect")
    deadline = time.monotonic() + args.get("timeout", 60.0)
    with connect(args) as bus, bus.consumer(*args["topics"], auto_offset_reset=args.get("reset", "earliest")) as c:
        for tp in c.assignment():
            c.position(tp)  # fix the start now, before the test starts producing
        touch(args["ready_file"])
        idle_since = None
        while time.monotonic() < deadline:
            if expect is not None and len(records) >= expect:
                break
            batch = c.poll_many(1000, timeout=0.2)
            records.extend(_record(m, garbage) for m in batch)
            if expect is None:
                if batch or not os.path.exists(args["done_file"]):
                    idle_since = None
                elif idle_since is None:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since > 1.0:
                    break
        missed = c.missed()
    write_json(args["out"], {"records": records, "missed": missed, "garbage": garbage[:20]})


def role_reader(args):
    """Read from earliest forever, with small random naps (the test kills us)."""
    rng = random.Random(args.get("seed"))
    with connect(args) as bus, bus.consumer(*args["topics"], auto_offset_reset="earliest") as c:
        touch(args["ready_file"])
        while True:
            for m in c.poll_many(rng.randint(1, 300), timeout=0.5):
                buskit.check_value(m.value)
            time.sleep(rng.random() * 0.002)


def role_view_holder(args):
    """Take a zero-copy batch (a lease on the ring), say so, and hold it (the test kills us)."""
    with connect(args) as bus, bus.consumer(*args["topics"], auto_offset_reset="earliest",
                                           view_lease=args.get("view_lease", 3600.0)) as c:
        batch = None
        while batch is None:
            batch = c.poll_batch(timeout=1.0, copy=False)
        assert batch.zero_copy, batch
        write_json(args["out"], {"offsets": batch.offsets.tolist()})
        touch(args["ready_file"])
        time.sleep(3600)


def role_waiter(args):
    """Wait for records that never come (the test measures or kills us)."""
    with connect(args) as bus, bus.consumer(*args["topics"], auto_offset_reset="latest",
                                           wait=args.get("wait", "spin")) as c:
        for tp in c.assignment():
            c.position(tp)
        touch(args["ready_file"])
        while True:
            c.poll(timeout=None)


# ---------------------------------------------------------------------------
# Bus lifetime
# ---------------------------------------------------------------------------

def role_autostart(args):
    """connect() with autostart, create a topic, report the supervisor, and exit
    without stopping it."""
    bus = connect(args, autostart=True)
    bus.create_topic(args["topic"], partitions=1, ring_bytes=64 << 10, durable=False)
    pid = bus.call("ping")["pid"]
    bus.close()
    write_json(args["out"], {"supervisor_pid": pid, "my_pid": os.getpid(), "my_sid": os.getsid(0)})


def role_caller(args):
    """connect() with autostart and make control requests until the stop file appears,
    reconnecting (and autostarting) through whatever happens to the supervisor."""
    calls, errors, seen = 0, [], None
    with connect(args, autostart=True) as bus:
        touch(args["ready_file"])
        while not os.path.exists(args["stop_file"]):
            try:
                pid = bus.call("ping")["pid"]
                calls += 1
                if pid != seen:   # the supervisor it talks to now
                    seen = pid
                    write_json(args["out"] + ".pid", {"pid": pid})
            except shmbus.ShmbusError as e:
                errors.append(repr(e))
            time.sleep(0.005)
    write_json(args["out"], {"calls": calls, "errors": errors})


ROLES = {
    "produce": role_produce,
    "survivor": role_survivor,
    "victim": role_victim,
    "staller": role_staller,
    "reserver": role_reserver,
    "reserver_signals_itself": role_reserver_signals_itself,
    "consume": role_consume,
    "reader": role_reader,
    "view_holder": role_view_holder,
    "waiter": role_waiter,
    "autostart": role_autostart,
    "caller": role_caller,
}


if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    ROLES[arguments["role"]](arguments)
