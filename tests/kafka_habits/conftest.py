"""Kafka users' calls: most tests here need only a running bus and topics of their own,
so a module shares one bus (`module_bus`, with the same leak check at its end as
tests/conftest.py's per-test bus); each test names its topics after itself."""
import re

import pytest

import shmbus

import buskit


@pytest.fixture(scope="module")
def module_bus(tmp_path_factory):
    paths = buskit.new_paths(buskit.unique_bus_name(), tmp_path_factory.mktemp("bus") / "data")
    bus = shmbus.connect(paths.bus, paths.data_dir)
    yield bus
    bus.close()
    problems = buskit.leftovers_after_stop(paths)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def topic(module_bus, request):
    """A fresh memory-only topic on the module's bus named after the test: topic(partitions=1)."""
    made = []

    def create(partitions=1, ring_bytes=64 << 10, durable=False, suffix=""):
        name = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[-200:] + suffix
        module_bus.create_topic(name, partitions=partitions, ring_bytes=ring_bytes, durable=durable)
        made.append(name)
        return name
    yield create
    for name in made:
        try:
            module_bus.delete_topic(name)
        except shmbus.TopicNotFound:
            pass
