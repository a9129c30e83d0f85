"""linger and batch_size: send() returns a FutureRecordMetadata, records go out as one C
call per batch when the batch fills, when the linger expires (with no further send), or
on flush()/close(); each partition keeps its order; a producer killed while records
linger loses those and only those."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import shmbus
from shmbus import TopicPartition as TP
import buskit

HERE = os.path.dirname(os.path.abspath(__file__))


def test_the_future_api_and_the_linger_timer(module_bus, topic):
    t = topic()
    with module_bus.producer(linger=0.2) as p, module_bus.consumer(t, auto_offset_reset="earliest") as c:
        sent_at = time.monotonic()
        future = p.send(t, b"alone")
        assert isinstance(future, shmbus.FutureRecordMetadata) and not future.done()
        assert c.poll(timeout=0.05) is None, "lingering, not sent yet"
        results, called_in = [], []
        future.add_callback(lambda md: (results.append(md), called_in.append(threading.current_thread().name)))
        future.add_errback(results.append)   # not called: it succeeds
        with pytest.raises(shmbus.Timeout):
            future.get(timeout=0.01)
        # No other send, no flush: the timer sends it.
        m = c.poll(timeout=2)
        waited = time.monotonic() - sent_at
        assert m.value == b"alone" and 0.15 < waited < 1.5, waited
        md = future.get(timeout=1)
        assert future.done() and md == shmbus.RecordMetadata(t, 0, m.offset, m.timestamp_ns)
        assert results == [md] and called_in == ["shmbus-linger"]
        late = []
        future.add_callback(late.append)   # added once done: runs at once
        assert late == [md]


def test_a_full_batch_goes_at_once_and_flush_sends_the_rest(module_bus, topic):
    t = topic()
    with module_bus.producer(linger=60.0, batch_size=1000) as p, \
            module_bus.consumer(t, auto_offset_reset="earliest") as c:
        futures = [p.send(t, b"%03d" % i + b"." * 97) for i in range(25)]   # 100 B: ten fill a batch
        got = c.poll_many(100, timeout=2)
        assert len(got) in (10, 20), len(got)   # whole batches (of 10, or 20 if the second closed meanwhile)
        assert all(f.done() for f in futures[:len(got)]) and not futures[-1].done()
        p.flush()
        assert all(f.done() for f in futures)
        got += c.poll_many(100, timeout=2)
        assert [m.value[:3] for m in got] == [b"%03d" % i for i in range(25)]
        assert [f.get().offset for f in futures] == [m.offset for m in got]


def test_order_per_partition_with_keys_headers_and_timestamps(module_bus, topic):
    t = topic(partitions=3, ring_bytes=1 << 20)
    with module_bus.producer(linger=0.01, batch_size=512) as p:
        futures = [p.send(t, b"%d" % i, key=b"k%d" % (i % 7), headers=[("i", b"%d" % i)],
                          timestamp_ns=1_700_000_000_000_000_000 + i) for i in range(3000)]
    # close() sent everything
    mds = [f.get(0) for f in futures]
    with module_bus.consumer(t, auto_offset_reset="earliest") as c:
        got = []
        while len(got) < 3000:
            batch = c.poll_many(1000, timeout=2)
            assert batch
            got += batch
    by_key = {}
    for m in got:
        i = int(m.value)
        assert m.key == b"k%d" % (i % 7) and m.headers == (("i", b"%d" % i),)
        assert m.timestamp_ns == 1_700_000_000_000_000_000 + i == mds[i].timestamp_ns
        assert (m.partition, m.offset) == (mds[i].partition, mds[i].offset)
        by_key.setdefault(m.key, []).append(i)
    assert all(seq == sorted(seq) for seq in by_key.values()), "one key's records keep their order"
    assert sorted(i for seq in by_key.values() for i in seq) == list(range(3000))


def test_a_failed_batch_reaches_the_errbacks(module_bus, topic):
    t = topic()
    with module_bus.producer(linger=0.3) as p:
        future = p.send(t, b"doomed")
        errors = []
        future.add_errback(errors.append)
        module_bus.delete_topic(t)   # before the linger expires
        with pytest.raises(shmbus.TopicNotFound):
            future.get(timeout=5)
        assert future.done() and isinstance(errors[0], shmbus.TopicNotFound)
        with pytest.raises(shmbus.MessageTooLarge):
            module_bus.create_topic(t, ring_bytes=64 << 10, durable=False)
            p.send(t, b"x" * (64 << 10))   # refused at once, not in a batch


def test_sends_of_other_kinds_go_after_what_lingers(module_bus, topic):
    t = topic()
    with module_bus.producer(linger=60.0) as p:
        p.send(t, b"lingering")
        assert p.send_many(t, [b"batch"]) == 1
    with module_bus.consumer(t, auto_offset_reset="earliest") as c:
        assert [m.value for m in c.poll_many(10, timeout=2)] == [b"lingering", b"batch"]


def test_a_killed_producer_loses_only_the_records_still_lingering(bus, bus_paths, make_topic, tmp_path):
    make_topic("t")
    ready = str(tmp_path / "ready")
    child = subprocess.Popen([sys.executable, os.path.join(HERE, "linger_child.py"), bus_paths.bus,
                              bus_paths.data_dir, "t", ready], stderr=subprocess.PIPE)
    try:
        assert buskit.wait_until(lambda: os.path.exists(ready) or child.poll() is not None, 20)
        assert child.poll() is None, child.stderr.read().decode()
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    with bus.consumer("t", auto_offset_reset="earliest") as c:
        assert [m.value for m in c.poll_many(100, timeout=1)] == [b"%d" % i for i in range(10)]
        assert c.end_offsets([TP("t", 0)]) == {TP("t", 0): 10}
    with bus.producer() as p:
        assert p.send("t", b"next").offset == 10


def test_threads_sharing_a_lingering_producer(module_bus, topic):
    """The common record goes through ProducerBase.linger_send (C), the others (headers,
    a new or full batch) through Python, into the same batches: from four threads at
    once, every record lands once, where its future says, each thread's in order."""
    t = topic(partitions=2, ring_bytes=1 << 20)
    futures = {}
    with module_bus.producer(linger=0.001, batch_size=2048) as p:
        def sender(n):
            mine = []
            for i in range(1500):
                value = b"%d-%d" % (n, i)
                if i % 7 == 0:
                    mine.append((value, p.send(t, value, key=b"k%d" % n, headers=[("h", value)])))
                elif i % 2:
                    mine.append((value, p.send(t, value, key=b"k%d" % n)))
                else:
                    mine.append((value, p.send(t, value)))
            futures[n] = mine
        threads = [threading.Thread(target=sender, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    at = {(md.partition, md.offset): value for mine in futures.values() for value, f in mine for md in [f.get(0)]}
    assert len(at) == 6000
    with module_bus.consumer(t, auto_offset_reset="earliest") as c:
        got = []
        while len(got) < 6000:
            batch = c.poll_many(5000, timeout=2)
            assert batch, len(got)
            got += batch
    for m in got:
        assert at[(m.partition, m.offset)] == m.value
        n = int(m.value.split(b"-")[0])
        i = int(m.value.split(b"-")[1])
        assert m.key == (None if i % 7 and not i % 2 else b"k%d" % n)
        assert m.headers == ((("h", m.value),) if i % 7 == 0 else ())
    for n in range(4):
        for partition in (0, 1):
            seq = [int(m.value.split(b"-")[1]) for m in got
                   if m.partition == partition and m.value.startswith(b"%d-" % n)]
            assert seq == sorted(seq), "one thread's records keep their order in a partition"


def test_a_batch_that_fails_part_way_fails_only_the_records_it_did_not_send(bus, bus_paths):
    bus.create_topic("p", ring_bytes=64 << 10)   # durable: only the archiver makes room in it
    supervisor = buskit.supervisor_process(bus_paths)

    def value(i):
        return b"%04d" % i + b"." * 1020

    with bus.producer(linger=60.0, batch_size=1 << 20, timeout=1.0) as p:
        futures = [p.send("p", value(i)) for i in range(200)]   # one batch, three rings' worth
        buskit.freeze(supervisor.pid)
        try:
            # The batch goes out in C calls until the ring is full, then fails at the
            # producer's timeout; what it did send cannot be fsynced either.
            with pytest.raises(shmbus.Timeout):
                p.flush(timeout=3)
        finally:
            os.kill(supervisor.pid, signal.SIGCONT)
        assert all(f.done() for f in futures)
        sent = [f for f in futures if f.exception is None]
        assert 0 < len(sent) < 200 and sent == futures[:len(sent)], "the records it sent are the first ones"
        assert all(isinstance(f.exception, shmbus.BufferFull) for f in futures[len(sent):]), \
            "and only the others failed"
        p.flush(timeout=10)
    with bus.consumer("p", auto_offset_reset="earliest") as c:
        got = c.poll_many(1000, timeout=2)
    assert [m.value for m in got] == [value(i) for i in range(len(sent))]
    assert [m.offset for m in got] == [f.get(0).offset for f in sent]
