"""Group and topic administration in Python (the CLI's operations, typed), create_topic's
exist_ok, one bus per data directory, and calls that only read never starting a
supervisor."""
import json
import os

import pytest

import shmbus
from shmbus import TopicPartition as TP
import buskit


def test_list_describe_reset_and_delete_a_group(module_bus, topic):
    t = topic(partitions=2)
    with module_bus.producer() as p:
        for i in range(10):
            p.send(t, b"%d" % i, partition=i % 2)
    with module_bus.consumer(t, group="admin-g", auto_offset_reset="earliest") as c:
        while sum(c.position(tp) for tp in c.assignment()) < 10:
            c.poll_many(10, timeout=1)
        c.commit({TP(t, 0): 3, TP(t, 1): 5})
        assert "admin-g" in module_bus.list_groups()
        info = module_bus.describe_group("admin-g")
        assert isinstance(info, shmbus.GroupInfo) and info.group == "admin-g" and info.state == "Stable"
        (member,) = info.members
        assert member.pid == os.getpid() and set(member.assignment) == {TP(t, 0), TP(t, 1)}
        assert info.partitions == {
            TP(t, 0): shmbus.GroupPartition(3, 5, 2, member.member_id, os.getpid()),
            TP(t, 1): shmbus.GroupPartition(5, 5, 0, member.member_id, os.getpid())}
        with pytest.raises(shmbus.ShmbusError, match="live member"):
            module_bus.delete_group("admin-g")
        with pytest.raises(shmbus.ShmbusError, match="live member"):
            module_bus.reset_offsets("admin-g", "earliest")
        assert module_bus.reset_offsets("admin-g", "earliest", execute=False) == {TP(t, 0): 0, TP(t, 1): 0}
    assert module_bus.reset_offsets("admin-g", 4) == {TP(t, 0): 4, TP(t, 1): 4}
    assert module_bus.reset_offsets("admin-g", 99, topics=[t]) == {TP(t, 0): 5, TP(t, 1): 5}   # clamped
    assert module_bus.reset_offsets("admin-g", "earliest") == {TP(t, 0): 0, TP(t, 1): 0}
    assert {tp: p.committed for tp, p in module_bus.describe_group("admin-g").partitions.items()} == \
        {TP(t, 0): 0, TP(t, 1): 0}
    with pytest.raises(ValueError, match="'earliest', 'latest' or an offset"):
        module_bus.reset_offsets("admin-g", "yesterday")
    module_bus.delete_group("admin-g")
    assert "admin-g" not in module_bus.list_groups()
    with pytest.raises(shmbus.ShmbusError, match="unknown group 'admin-g'"):
        module_bus.describe_group("admin-g")


def test_create_topic_exist_ok_and_a_typed_describe_topic(module_bus, topic):
    t = topic(partitions=3)
    with pytest.raises(shmbus.TopicExists):
        module_bus.create_topic(t, partitions=3, ring_bytes=64 << 10, durable=False)
    info = module_bus.create_topic(t, partitions=5, exist_ok=True)   # as it is: not changed
    assert info == module_bus.topic(t) and info.partitions == 3
    d = module_bus.describe_topic(t)
    assert isinstance(d, shmbus.TopicDescription) and d.info == info and len(d.partitions) == 3
    assert isinstance(d.partitions[0], shmbus.PartitionDescription)
    assert (d.partitions[2].partition, d.partitions[2].end_offset, d.partitions[2].segments) == (2, 0, None)
    durable = topic(durable=True, suffix="-durable")
    with module_bus.producer() as p:
        p.send(durable, b"x")
        p.flush()
    part = module_bus.describe_topic(durable).partitions[0]
    assert (part.end_offset, part.segments, part.archive_lag, part.damage) == (1, 1, 0, ())


def test_a_data_dir_belongs_to_one_bus(bus, bus_paths):
    with open(os.path.join(bus_paths.data_dir, "bus.json")) as f:
        assert json.load(f)["bus"] == bus_paths.bus
    with pytest.raises(shmbus.ShmbusError, match=f"belongs to bus '{bus_paths.bus}', not 'other'"):
        shmbus.connect("other", bus_paths.data_dir)
    env = {"SHMBUS_BUS": "other", "SHMBUS_DATA_DIR": bus_paths.data_dir}
    result = buskit.run_cli(None, "topics", "list", env=env)
    assert result.returncode == 1
    assert result.stderr.decode().strip().splitlines() == [
        f"shmbus: error: data dir {bus_paths.data_dir} belongs to bus '{bus_paths.bus}', not 'other': use bus "
        f"'{bus_paths.bus}' (--bus / SHMBUS_BUS), or another data dir for 'other'"]
    bus.stop_supervisor()
    with pytest.raises(shmbus.ShmbusError, match="belongs to bus"):   # nor does it start one for 'other'
        shmbus.connect("other", bus_paths.data_dir)
    assert buskit.supervisor_process(bus_paths) is None


def test_calls_that_only_read_never_start_a_supervisor(bus, bus_paths):
    bus.create_topic("t", partitions=1, ring_bytes=64 << 10)
    with bus.consumer("t", group="g") as c:
        c.commit({TP("t", 0): 0})
    bus.stop_supervisor()
    for args in (["topics", "list"], ["topics", "describe", "t"], ["groups", "list"], ["groups", "describe", "g"],
                 ["groups", "delete", "g"], ["groups", "reset-offsets", "g", "--to-earliest"], ["stats"]):
        result = buskit.run_cli(bus_paths, *args)
        lines = result.stderr.decode().strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and "does not run" in lines[0], (args, lines)
        assert buskit.supervisor_process(bus_paths) is None, args
    for read in (bus.topics, lambda: bus.describe_topic("t"), bus.list_groups, lambda: bus.describe_group("g")):
        with pytest.raises(shmbus.SupervisorUnavailable, match=f"bus '{bus_paths.bus}' does not run"):
            read()
        assert buskit.supervisor_process(bus_paths) is None
    with pytest.raises(shmbus.SupervisorUnavailable, match="does not run"):
        shmbus.connect(bus_paths.bus, bus_paths.data_dir, autostart=False)
    # A call that writes still starts one (autostart), and the data is all there.
    assert bus.create_topic("t", exist_ok=True).partitions == 1
    assert bus.describe_group("g").partitions[TP("t", 0)].committed == 0


def test_bad_options_are_one_clear_error(module_bus, topic):
    t = topic()
    cases = [
        (lambda: module_bus.producer(linger=-1), ValueError, "linger must be zero or more seconds, got -1"),
        (lambda: module_bus.producer(linger="5ms"), TypeError, "linger must be a number of seconds"),
        (lambda: module_bus.producer(batch_size=0), ValueError, "batch_size must be a positive int, got 0"),
        (lambda: module_bus.consumer(t, value_deserializer="json"), TypeError,
         "value_deserializer must be a callable bytes -> obj or a Serde"),
        (lambda: module_bus.create_topic(t, exist_ok="yes"), TypeError, "exist_ok must be True or False"),
        (lambda: module_bus.reset_offsets("g", True), TypeError, "reset to must be 'earliest', 'latest' or an offset"),
    ]
    for make, error, message in cases:
        with pytest.raises(error, match=message):
            make()
    with module_bus.producer(linger=0.01) as p:
        with pytest.raises(TypeError, match="value must be bytes-like"):
            p.send(t, 42)
        with pytest.raises(shmbus.MessageTooLarge):
            p.send(t, b"x" * (64 << 10))
        assert p.send(t, b"fine").get(2).offset == 0   # nothing else was queued
