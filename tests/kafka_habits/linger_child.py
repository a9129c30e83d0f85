"""A lingering producer that a test SIGKILLs:  python linger_child.py BUS DATA_DIR TOPIC READY_FILE

Sends records 0..9 and flushes them, then records 10..14 with a linger too long to
expire, says so in READY_FILE, and sleeps: what is lingering when it dies is lost."""
import sys
import time

import shmbus

bus_name, data_dir, topic, ready = sys.argv[1:5]
with shmbus.connect(bus_name, data_dir, autostart=False) as bus:
    p = bus.producer(linger=3600.0)
    first = [p.send(topic, b"%d" % i) for i in range(10)]
    p.flush()
    assert [f.get(0).offset for f in first] == list(range(10))
    lingering = [p.send(topic, b"%d" % i) for i in range(10, 15)]
    assert not any(f.done() for f in lingering)
    open(ready, "w").close()
    time.sleep(3600)
