"""Fixtures every shmbus test shares: a private bus per test, child processes,
and a teardown that proves the bus left nothing behind.

Each test gets its own bus name (random, so it is unique in every command line
on the host) and its own data directory under tmp_path. At teardown the
supervisor is stopped cleanly and the test fails if anything with the bus's
/dev/shm prefix, or any process mentioning the bus name, survives it.
"""
import pytest

import shmbus

import buskit


@pytest.fixture
def bus_paths(tmp_path):
    """The BusPaths of a fresh, unique bus (nothing started yet). Teardown checks
    that nothing of it is left running or in /dev/shm."""
    paths = buskit.new_paths(buskit.unique_bus_name(), tmp_path / "data")
    yield paths
    problems = buskit.leftovers_after_stop(paths)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def bus(bus_paths):
    """A connected Bus (its supervisor autostarted), closed at teardown."""
    b = shmbus.connect(bus_paths.bus, bus_paths.data_dir)
    yield b
    b.close()


@pytest.fixture
def children(bus_paths, tmp_path):
    """Start child processes on the test's bus; teardown kills any still running
    (before the bus's own leak check runs)."""
    group = buskit.Children(bus_paths, str(tmp_path / "children"))
    yield group
    group.kill_all()


@pytest.fixture
def make_topic(bus):
    """create_topic for tests that need no disk: memory-only, a 64 KiB ring, one partition."""
    def create(name="t", partitions=1, ring_bytes=64 << 10):
        return bus.create_topic(name, partitions=partitions, ring_bytes=ring_bytes, durable=False)
    return create


@pytest.fixture
def start_collector(bus):
    """Start a buskit.Collector (a consumer on a thread of the test) on a topic;
    teardown stops it before the bus closes, even if the test failed."""
    started = []

    def start(topic):
        c = buskit.Collector(bus, topic)
        c.start()
        started.append(c)
        return c
    yield start
    for c in started:
        c.stop()
