"""A soak producer: sends `tag:seq:xxx` records, seq 0, 1, 2, ..., to partition seq % 4,
and after every batch appends the highest seq acknowledged so far to <tag>.acked (one
os.write, so what a SIGKILL leaves there was acknowledged). A send that raises
ClaimRevoked (it was stopped mid-record) goes to <tag>.revoked. Flushes now and then,
and at the stop file.

With "freeze": every few seconds it freezes itself (SIGSTOP) the instant one of its
claims is open -- as a debugger or heavy swapping would --, and the soak wakes it a
while later: what the unblocker must revoke."""
import json
import os
import random
import signal
import sys
import threading
import time

import shmbus
from shmbus._native._core import ffi, lib

LARGE = 200 << 10   # a record that takes long enough to copy that a freeze lands inside it


def freeze_now_and_then(producer, topic, rng, stop_file):
    """Watch this producer's slots; at a random moment of an open claim, SIGSTOP the
    whole process (its main thread is inside the claim)."""
    slots = ffi.new("sb_slot_info[]", lib.SB_MAX_SLOTS)
    while not os.path.exists(stop_file):
        time.sleep(rng.uniform(1.0, 4.0))
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            route = producer._routes.get(topic)
            writers = [w for w in (route.writers if route else []) if w is not None]
            for w in writers:
                lib.sb_slots_get(w.ring.ptr, slots)
                if slots[w.slot].state == 1:   # CLAIMED: reserved, still being copied
                    os.kill(os.getpid(), signal.SIGSTOP)
                    deadline = 0
                    break


def main(args):
    base = os.path.join(args["workdir"], args["tag"])
    rng = random.Random(args["seed"])
    acked = os.open(f"{base}.acked", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    revoked = os.open(f"{base}.revoked", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    seq = 0
    with shmbus.connect(args["bus"], args["data_dir"], autostart=False) as bus, \
            bus.producer(timeout=60) as producer:
        batches = 0
        if args.get("freeze"):
            producer.partitions_for(args["topic"])
            threading.Thread(target=freeze_now_and_then, daemon=True,
                             args=(producer, args["topic"], random.Random(rng.random()), args["stop_file"])).start()
        while not os.path.exists(args["stop_file"]):
            for _ in range(rng.randint(1, 50)):
                size = LARGE if args.get("freeze") and rng.random() < 0.2 else rng.randint(0, 600)
                value = b"%s:%d:%s" % (args["tag"].encode(), seq, b"x" * size)
                try:
                    producer.send(args["topic"], value, partition=seq % 4)
                except shmbus.Timeout as e:
                    if type(e).__name__ != "ClaimRevoked":
                        raise
                    os.write(revoked, b"%d\n" % seq)
                seq += 1
            os.write(acked, b"%d\n" % (seq - 1))
            batches += 1
            if batches % 20 == 0:
                producer.flush()
            time.sleep(rng.uniform(0, 0.005))
        producer.flush()
    os.close(acked)
    os.close(revoked)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
