"""Child processes for the durable-log tests: a producer that flushes and records
what it flushed, and a consumer that records what it read. Run as
`python durable_child.py ROLE BUS DATA_DIR TOPIC OUT [ARGS...]`."""
import json
import os
import sys
import time

import shmbus


def produce(bus, topic, out, seconds, batch, size):
    """Send for `seconds`, flushing every `batch` records; after each flush write the
    count flushed so far to `out` (atomically), so a test knows what must survive."""
    with shmbus.connect(bus, data_dir) as b, b.producer(timeout=120) as p:
        sent = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for _ in range(batch):
                p.send(topic, (b"%d:" % sent).ljust(size, b"x"))
                sent += 1
            p.flush(timeout=120)
            tmp = out + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(sent))
            os.replace(tmp, out)


def consume(bus, topic, out, expect, idle, done_file=None):
    """Read from the beginning until `expect` records or `idle` seconds without one --
    with done_file, only once that file exists (the producer is done: before, a silence
    is the bus restarting, which a back-off between supervisor starts can stretch past
    `idle`); write [offset, value-prefix] pairs to `out`."""
    seen = []
    with shmbus.connect(bus, data_dir) as b, b.consumer(topic, auto_offset_reset="earliest") as c:
        open(out + ".ready", "w").close()
        while len(seen) < expect:
            batch = c.poll_many(1000, timeout=idle)
            if not batch:
                if done_file is None or os.path.exists(done_file):
                    break
                continue
            seen.extend((m.offset, m.value.split(b":", 1)[0].decode()) for m in batch)
    with open(out, "w") as f:
        json.dump(seen, f)


if __name__ == "__main__":
    role, bus, data_dir, topic, out, *rest = sys.argv[1:]
    if role == "produce":
        produce(bus, topic, out, float(rest[0]), int(rest[1]), int(rest[2]))
    else:
        consume(bus, topic, out, int(rest[0]), float(rest[1]), *rest[2:3])
