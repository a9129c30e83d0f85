"""The supervisor's life: autostart by connect(), one per bus, restarts that
keep topics and never reuse offsets, a clean stop that leaves nothing behind,
and an idle bus that costs (almost) no CPU."""
import os
import time

import psutil
import pytest

import shmbus
from shmbus import TopicPartition

import buskit
from buskit import read_exact

pytestmark = pytest.mark.timeout(60)

TP = TopicPartition("t", 0)


def stop_and_wait(bus_paths):
    assert buskit.stop_bus(bus_paths, timeout=20) == []
    assert buskit.shm_leftovers(bus_paths) == []


def test_connect_autostarts_a_detached_supervisor_that_outlives_its_starter(bus_paths, children):
    assert buskit.supervisor_process(bus_paths) is None
    starter = children.start("autostart", topic="made-by-child")
    result = starter.wait(30)
    supervisor = psutil.Process(result["supervisor_pid"])
    assert supervisor.is_running() and supervisor.status() != psutil.STATUS_ZOMBIE
    assert not psutil.pid_exists(result["my_pid"]) or psutil.Process(result["my_pid"]).status() == psutil.STATUS_ZOMBIE
    # Its own session: a Ctrl-C or hang-up in the starter's terminal does not reach it.
    assert os.getsid(supervisor.pid) != result["my_sid"]
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir, autostart=False) as bus:
        assert "made-by-child" in bus.topics()


def test_connect_without_autostart_and_no_supervisor_is_unavailable(bus_paths):
    with pytest.raises(shmbus.SupervisorUnavailable):
        shmbus.connect(bus_paths.bus, bus_paths.data_dir, autostart=False)
    with pytest.raises(ConnectionError):
        shmbus.connect(bus_paths.bus, bus_paths.data_dir, autostart=False)
    assert buskit.supervisor_process(bus_paths) is None


def test_a_second_serve_for_the_same_bus_fails_with_one_line(bus, bus_paths):
    result = buskit.run_cli(bus_paths, "serve", timeout=30)
    stderr = result.stderr.decode()
    assert result.returncode != 0
    assert stderr.count("\n") == 1 and stderr.startswith("shmbus: error:"), stderr
    assert "Traceback" not in stderr
    # The first one is unharmed.
    bus.create_topic("still-served", partitions=1, ring_bytes=64 << 10, durable=False)


def test_clean_restart_keeps_topics_and_continues_offsets(bus_paths):
    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        bus.create_topic("t", partitions=2, ring_bytes=128 << 10, durable=False)
        with bus.producer() as p:
            for i in range(10):
                p.send("t", b"before", partition=0)
            p.send("t", b"before", partition=1)
        bus.stop_supervisor()
    stop_and_wait(bus_paths)

    with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
        info = bus.topics()["t"]
        assert (info.partitions, info.ring_bytes, info.durable) == (2, 128 << 10, False)
        partitions = bus.describe_topic("t").partitions
        # Memory-only: the records are gone, but not their offsets.
        assert [(p.earliest_offset, p.end_offset) for p in partitions] == [(10, 10), (1, 1)]
        with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
            assert p.send("t", b"after", partition=0).offset == 10
            assert p.send("t", b"after", partition=1).offset == 1
            got = read_exact(c, 2)
        assert sorted((m.partition, m.offset, m.value) for m in got) == [(0, 10, b"after"), (1, 1, b"after")]


def test_offsets_are_never_reused_across_several_restarts(bus_paths):
    expected = 0
    for _ in range(3):
        with shmbus.connect(bus_paths.bus, bus_paths.data_dir) as bus:
            if "t" not in bus.topics():
                bus.create_topic("t", partitions=1, ring_bytes=64 << 10, durable=False)
            with bus.producer() as p:
                for _ in range(7):
                    assert p.send("t", b"x").offset == expected
                    expected += 1
            bus.stop_supervisor()
        stop_and_wait(bus_paths)


def test_supervisor_killed_clients_keep_working_and_a_new_one_adopts_the_rings(bus, bus_paths, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        for i in range(5):
            p.send("t", b"%d" % i)
        read_exact(c, 5)
        supervisor = buskit.supervisor_process(bus_paths)
        supervisor.kill()
        assert buskit.wait_gone(supervisor, 10)
        # The data plane does not need the supervisor.
        for i in range(5, 10):
            assert p.send("t", b"%d" % i).offset == i
        assert [m.offset for m in read_exact(c, 5)] == list(range(5, 10))
        # A call that only reads does not start a supervisor; the next that writes starts
        # a new one, which adopts the live ring.
        with pytest.raises(shmbus.SupervisorUnavailable, match="does not run"):
            bus.topics()
        assert buskit.supervisor_process(bus_paths) is None
        make_topic("u")
        assert "t" in bus.topics()
        assert buskit.supervisor_process(bus_paths).pid != supervisor.pid
        assert bus.describe_topic("t").partitions[0].end_offset == 10
        for i in range(10, 15):
            assert p.send("t", b"%d" % i).offset == i
        assert [m.offset for m in read_exact(c, 5)] == list(range(10, 15))
    with bus.consumer("t", auto_offset_reset="earliest") as fresh:
        assert [m.value for m in read_exact(fresh, 15)] == [b"%d" % i for i in range(15)]


def test_stop_leaves_nothing_and_clients_see_the_topic_gone_or_restart(bus, bus_paths, make_topic):
    make_topic("t", partitions=3)
    names = bus.call("topic", name="t")["rings"]
    assert len(names) == 3 and all(os.path.exists("/dev/shm" + n) for n in names)
    assert all(n[1:].startswith(bus_paths.shm_prefix) for n in names)
    bus.stop_supervisor()
    supervisor = buskit.supervisor_process(bus_paths)
    if supervisor is not None:
        assert buskit.wait_gone(supervisor, 20)
    assert buskit.shm_leftovers(bus_paths) == []
    assert os.path.exists(bus_paths.clean_marker)


@pytest.mark.timeout(60)
def test_idle_bus_with_a_waiting_consumer_uses_almost_no_cpu(bus, bus_paths, make_topic, children):
    make_topic("t", partitions=4)
    # Lap partition 0 a few times with odd-sized records first, so the waiter
    # waits at a tail that lies inside an older lap's data, not on clean memory.
    with bus.producer() as p:
        for seq in range(300):
            p.send("t", buskit.make_value("w", seq, 17 + (seq * 7919) % 3000), partition=0)
    waiter = children.start("waiter", topics=["t"])
    waiter.wait_ready()
    time.sleep(0.5)   # let both settle after start-up
    processes = {"supervisor": buskit.supervisor_process(bus_paths), "waiting consumer": psutil.Process(waiter.pid)}
    before = {name: buskit.cpu_seconds(proc) for name, proc in processes.items()}
    started = time.monotonic()
    time.sleep(3)
    elapsed = time.monotonic() - started
    for name, proc in processes.items():
        share = (buskit.cpu_seconds(proc) - before[name]) / elapsed
        # Lenient: a spinning wait burns ~100% of a core; a futex wait and a
        # quarter-second liveness tick cost a fraction of a percent. CPU time
        # comes in 10 ms ticks, so 3 s resolves about 0.3%.
        assert share < 0.01, f"idle {name} used {100 * share:.2f}% of a core"


def test_long_bus_and_topic_names_work_end_to_end(tmp_path):
    paths = buskit.new_paths("B" * 240 + os.urandom(4).hex()[:9], tmp_path / "data")
    try:
        with shmbus.connect(paths.bus, paths.data_dir) as bus:
            topic = "T" * 249
            bus.create_topic(topic, partitions=2, ring_bytes=64 << 10, durable=False)
            with bus.producer() as p, bus.consumer(topic, auto_offset_reset="earliest") as c:
                p.send(topic, b"v", partition=1)
                (m,) = read_exact(c, 1)
            assert (m.topic, m.partition, m.value) == (topic, 1, b"v")
    finally:
        assert buskit.leftovers_after_stop(paths) == []
