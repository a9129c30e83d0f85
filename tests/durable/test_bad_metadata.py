"""A bad or missing JSON file takes down only what it describes: the supervisor starts,
names the file, reports that group or topic as broken and refuses it to clients with a
clear error; the rest of the bus serves; a broken topic's segments and rings are kept."""
import json
import os
import signal

import pytest

import shmbus

import buskit
import damage


def connect(paths):
    return shmbus.connect(paths.bus, paths.data_dir)


def offsets_file(paths, group):
    return os.path.join(paths.data_dir, "groups", group, "offsets.json")


def topic_file(paths, topic):
    return os.path.join(paths.data_dir, "topics", topic, "topic.json")


def values(bus, topic):
    with bus.consumer(topic, auto_offset_reset="earliest") as c:
        return [m.value for m in damage.read_until_empty(c)]


def commit_some(bus, group, topic, count):
    with bus.consumer(topic, group=group, auto_offset_reset="earliest") as c:
        got = []
        while len(got) < count:
            got.extend(c.poll_many(count - len(got), timeout=2))
        c.commit()


def test_invalid_offsets_json_breaks_only_its_group(bus_paths):
    with connect(bus_paths) as bus:
        bus.create_topic("t", ring_bytes=64 << 10)
        with bus.producer() as p:
            p.send_many("t", [b"%d" % i for i in range(100)], partition=0)
            p.flush()
        commit_some(bus, "bad", "t", 10)
        commit_some(bus, "good", "t", 20)
        damage.stop_cleanly(bus, bus_paths)
    path = offsets_file(bus_paths, "bad")
    with open(path) as f:
        saved = f.read()
    with open(path, "w") as f:
        f.write(saved[: len(saved) // 2])  # cut short, as a full disk or a careless editor leaves it
    with connect(bus_paths) as bus:
        assert path in damage.supervisor_log(bus_paths), "the log names the file"
        rows = {row["group"]: row for row in bus.call("groups")}
        assert rows["bad"]["state"] == "Broken" and path in rows["bad"]["error"]
        assert rows["good"]["state"] != "Broken" and rows["good"]["error"] is None
        listed = buskit.run_cli(bus_paths, "groups", "list")
        assert listed.returncode == 0 and b"Broken" in listed.stdout and path.encode() in listed.stdout
        described = buskit.run_cli(bus_paths, "groups", "describe", "bad")
        assert described.returncode == 0 and b"BROKEN" in described.stdout
        with pytest.raises(shmbus.ShmbusError) as err:
            bus.consumer("t", group="bad", auto_offset_reset="earliest")
        assert "broken" in str(err.value) and path in str(err.value)
        with bus.consumer("t", group="good", auto_offset_reset="earliest") as c:
            assert c.poll(timeout=2).offset == 20, "the rest of the bus serves"
        assert len(values(bus, "t")) == 100
        # Fixed by hand: the group works again, from its committed offset.
        with open(path, "w") as f:
            f.write(saved)
        with bus.consumer("t", group="bad", auto_offset_reset="earliest") as c:
            assert c.poll(timeout=2).offset == 10
        damage.stop_cleanly(bus, bus_paths)
    with open(path, "w") as f:
        f.write("{not json")
    with connect(bus_paths) as bus:
        done = buskit.run_cli(bus_paths, "groups", "delete", "bad")  # the other way out
        assert done.returncode == 0, done.stderr
        assert "bad" not in {row["group"] for row in bus.call("groups")}


def test_invalid_topic_json_breaks_only_its_topic_and_keeps_its_data(bus_paths):
    with connect(bus_paths) as bus:
        for name in ("a", "b"):
            bus.create_topic(name, ring_bytes=64 << 10, segment_bytes=64 << 10)
            with bus.producer() as p:
                p.send_many(name, [b"%s%d" % (name.encode(), i) for i in range(3000)], partition=0)
                p.flush()
        damage.stop_cleanly(bus, bus_paths)
    path = topic_file(bus_paths, "a")
    with open(path) as f:
        saved = f.read()
    with open(path, "w") as f:
        f.write(saved.replace('"partitions"', '"partitions'))
    segments = damage.segment_files(bus_paths, "a")
    with connect(bus_paths) as bus:
        assert path in damage.supervisor_log(bus_paths), "the log names the file"
        assert "a" not in bus.topics() and "b" in bus.topics()
        assert path in bus.query("describe_topic", name="a")["broken"]
        described = buskit.run_cli(bus_paths, "topics", "describe", "a")
        assert described.returncode == 0 and b"BROKEN" in described.stdout
        listed = buskit.run_cli(bus_paths, "topics", "list")
        assert b"BROKEN" in listed.stdout and path.encode() in listed.stdout
        with bus.producer() as p:
            with pytest.raises(shmbus.ShmbusError) as err:
                p.send("a", b"x")
            assert "broken" in str(err.value) and path in str(err.value)
        with pytest.raises(shmbus.TopicExists):
            bus.create_topic("a", ring_bytes=64 << 10)
        assert damage.segment_files(bus_paths, "a") == segments, "its segments are kept"
        assert len(values(bus, "b")) == 3000, "the rest of the bus serves"
        damage.stop_cleanly(bus, bus_paths)
    with open(path, "w") as f:
        f.write(saved)
    with connect(bus_paths) as bus:
        assert values(bus, "a") == [b"a%d" % i for i in range(3000)], "repaired, it serves all it had"


def test_missing_topic_json_after_a_crash_keeps_the_topic_and_its_unarchived_records(bus_paths):
    """The supervisor is stopped (SIGSTOP), so records sent meanwhile are in the ring only;
    then it is killed and topic.json vanishes. The next supervisor must neither drop the
    topic nor remove its ring as a stray; once topic.json is back, every record is there."""
    with connect(bus_paths) as bus:
        bus.create_topic("m", ring_bytes=1 << 20)
        supervisor = buskit.supervisor_process(bus_paths)
        with bus.producer() as p:
            p.send("m", b"0")
            p.flush()
            buskit.freeze(supervisor.pid)
            try:
                for i in range(1, 500):
                    p.send("m", b"%d" % i)  # acknowledged: in shared memory, not archived
            finally:
                os.kill(supervisor.pid, signal.SIGKILL)
                os.kill(supervisor.pid, signal.SIGCONT)
        buskit.reap_if_child(supervisor.pid)
        assert buskit.wait_gone(supervisor, 10)
    rings = buskit.shm_leftovers(bus_paths)
    path = topic_file(bus_paths, "m")
    with open(path) as f:
        saved = f.read()
    os.unlink(path)
    with connect(bus_paths) as bus:
        assert "m" not in bus.topics() and "is missing" in bus.query("describe_topic", name="m")["broken"]
        assert set(rings) <= set(buskit.shm_leftovers(bus_paths)), "its ring is left alone"
        with pytest.raises(shmbus.TopicExists):
            bus.create_topic("m", ring_bytes=1 << 20)
        assert os.path.isdir(os.path.dirname(path)), "and its directory"
        damage.stop_cleanly(bus, bus_paths)
    with open(path, "w") as f:
        f.write(saved)
    with connect(bus_paths) as bus:
        assert values(bus, "m") == [b"%d" % i for i in range(500)]


def test_a_broken_topic_can_be_deleted_and_created_anew(bus_paths):
    with connect(bus_paths) as bus:
        bus.create_topic("z", partitions=2, ring_bytes=64 << 10)
        damage.kill_supervisor(bus_paths)
    with open(topic_file(bus_paths, "z"), "w") as f:
        f.write(json.dumps({"name": "z", "partitions": "two"}))
    with connect(bus_paths) as bus:
        assert "does not describe" in bus.query("describe_topic", name="z")["broken"]
        done = buskit.run_cli(bus_paths, "topics", "delete", "z")
        assert done.returncode == 0, done.stderr
        assert not os.path.exists(os.path.dirname(topic_file(bus_paths, "z")))
        assert not [r for r in buskit.shm_leftovers(bus_paths) if ":z:" in r], "its rings went with it"
        bus.create_topic("z", ring_bytes=64 << 10)
        with bus.producer() as p:
            assert p.send("z", b"new").offset == 0


def test_memory_only_topic_with_invalid_state_json_is_broken_not_reset(bus_paths):
    """Its state.json is the only record of where its offsets ended: without it the
    offsets would start over, so the topic is broken instead."""
    with connect(bus_paths) as bus:
        bus.create_topic("mem", ring_bytes=64 << 10, durable=False)
        with bus.producer() as p:
            p.send_many("mem", [b"x"] * 50, partition=0)
        damage.stop_cleanly(bus, bus_paths)
    state = os.path.join(bus_paths.data_dir, "topics", "mem", "0", "state.json")
    with open(state, "w") as f:
        f.write("\0\0\0")
    with connect(bus_paths) as bus:
        assert state in bus.query("describe_topic", name="mem")["broken"]
        with open(state, "w") as f:
            f.write(json.dumps({"next_offset": 50, "reserved_until": 50}))
        damage.stop_cleanly(bus, bus_paths)
    with connect(bus_paths) as bus:
        with bus.producer() as p:
            assert p.send("mem", b"y").offset == 50
