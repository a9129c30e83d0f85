"""Producers and consumers in separate real processes: every record arrives
exactly once, offsets are consecutive from 0 in every partition, and each
producer's records keep their order."""
import collections
import os

import pytest

from buskit import reference_murmur2

pytestmark = pytest.mark.timeout(120)


def check_partition_logs(records, partitions):
    """records: (topic, partition, offset, key, tag, seq) as one consumer saw them.
    Returns {partition: [(tag, seq), ...]} in offset order, after checking offsets
    are consecutive from 0 and each producer's seqs increase."""
    by_partition = collections.defaultdict(list)
    for _, partition, offset, _, tag, seq in records:
        assert tag is not None, "garbage record"
        by_partition[partition].append((offset, tag, seq))
    logs = {}
    for partition in range(partitions):
        entries = by_partition.get(partition, [])
        offsets = [e[0] for e in entries]
        assert offsets == list(range(len(entries))), f"partition {partition}: offsets not 0,1,2,..."
        last_seq = {}
        for _, tag, seq in entries:
            assert seq > last_seq.get(tag, -1), f"partition {partition}: {tag}'s records out of order"
            last_seq[tag] = seq
        logs[partition] = [(tag, seq) for _, tag, seq in entries]
    return logs


def go(children):
    with open(os.path.join(children.workdir, "go"), "w"):
        pass


def test_producers_and_consumers_on_a_multi_partition_topic(bus, make_topic, children):
    partitions, producers, count = 4, 3, 5000
    make_topic("t", partitions=partitions, ring_bytes=1 << 20)
    total = producers * count
    go_file = os.path.join(children.workdir, "go")
    consumers = [children.start("consume", topics=["t"], expect=total, timeout=90) for _ in range(2)]
    for c in consumers:
        c.wait_ready()
    senders = [children.start("produce", topic="t", tag=f"p{i}", count=count, size=[17, 120], key="cycle:40",
                              go_file=go_file) for i in range(producers)]
    for s in senders:
        s.wait_ready()
    go(children)
    sent = {s_result["tag"]: s_result["sent"] for s_result in (s.wait(90) for s in senders)}

    # Where each producer says each record went.
    placed = {}
    for tag, rows in sent.items():
        assert [row[0] for row in rows] == list(range(count))
        for seq, partition, offset in rows:
            key = f"k{seq % 40}".encode()
            assert partition == (reference_murmur2(key) & 0x7FFFFFFF) % partitions
            placed[(partition, offset)] = (tag, seq)
    assert len(placed) == total, "two sends got the same (partition, offset)"

    for consumer in consumers:
        result = consumer.wait(90)
        assert result["garbage"] == [] and result["missed"] == 0
        assert len(result["records"]) == total
        logs = check_partition_logs(result["records"], partitions)
        seen = {(p, offset): entry for p, log in logs.items() for offset, entry in enumerate(log)}
        assert seen == placed, "the consumer saw each record where its producer was told it went"
        for _, partition, _, key, tag, seq in result["records"]:
            assert key == f"k{seq % 40}"


@pytest.mark.parametrize("batch", [1, 25])
def test_many_producers_on_one_partition(bus, make_topic, children, batch):
    producers, count = 5, 4000
    make_topic("t", ring_bytes=8 << 20)   # holds everything: no consumer can be lapped
    total = producers * count
    go_file = os.path.join(children.workdir, "go")
    consumer = children.start("consume", topics=["t"], expect=total, timeout=90)
    consumer.wait_ready()
    senders = [children.start("produce", topic="t", tag=f"p{i}", count=count, size=[17, 300], partition=0,
                              batch=batch, go_file=go_file) for i in range(producers)]
    for s in senders:
        s.wait_ready()
    go(children)
    results = [s.wait(90) for s in senders]

    result = consumer.wait(90)
    assert result["garbage"] == [] and result["missed"] == 0
    logs = check_partition_logs(result["records"], 1)
    log = logs[0]
    assert len(log) == total
    per_tag = collections.defaultdict(list)
    for tag, seq in log:
        per_tag[tag].append(seq)
    for i in range(producers):
        assert per_tag[f"p{i}"] == list(range(count)), "each producer's records exactly once, in order"
    if batch == 1:
        for r in results:
            for seq, _, offset in r["sent"]:
                assert log[offset] == (r["tag"], seq)
    # The producers really ran at the same time: their records interleave
    # (five contiguous blocks would mean they took turns).
    switches = sum(1 for a, b in zip(log, log[1:]) if a[0] != b[0])
    assert switches >= producers, f"only {switches} switches between producers"
    assert bus.describe_topic("t").partitions[0].end_offset == total
