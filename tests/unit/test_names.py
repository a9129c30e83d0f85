"""Names that reach the file system follow Kafka's rule ([A-Za-z0-9._-],
1-249 characters, not '.' or '..'), and every /dev/shm name of a bus starts
with that bus's prefix, so an operator (and the supervisor's stray sweep) can
tell what belongs to which bus."""
import pytest

import shmbus
from shmbus._config import BusPaths
from shmbus._names import bus_prefix, ring_name, user_tag, validate_name

NAME_MAX = 255


@pytest.mark.parametrize("name", [
    "a", "Z", "0", "topic", "my.topic", "my_topic", "my-topic", "A.b_C-9", "...", ".a", "a.",
    "x" * 249,
])
def test_kafka_legal_names_pass(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", [
    "", ".", "..", "a/b", "/", "../etc", "a b", "tab\t", "new\nline", "colon:name", "star*",
    "ünïcode", "x" * 250, "x" * 1000,
])
def test_kafka_illegal_names_raise_invalid_name(name):
    with pytest.raises(shmbus.InvalidName):
        validate_name(name)


@pytest.mark.parametrize("name", [None, 5, b"topic", ["t"], 1.5])
def test_non_str_names_raise_invalid_name(name):
    with pytest.raises(shmbus.InvalidName):
        validate_name(name)


def test_invalid_name_is_a_value_error_and_a_shmbus_error():
    with pytest.raises(ValueError):
        validate_name("a/b")
    assert issubclass(shmbus.InvalidName, shmbus.ShmbusError)


def test_bus_paths_validate_the_bus_name(tmp_path):
    for bad in ("a/b", "..", ".", "x" * 250, "a:b"):
        with pytest.raises(shmbus.InvalidName):
            BusPaths.resolve(bad, str(tmp_path))


def test_prefix_names_user_and_bus(tmp_path):
    prefix = BusPaths.resolve("mybus", str(tmp_path)).shm_prefix
    assert prefix.startswith(f"shmbus:{user_tag()}:mybus:")
    assert prefix.endswith(":")


def test_different_data_dirs_or_buses_get_different_prefixes(tmp_path):
    a = bus_prefix("bus", str(tmp_path / "a"))
    b = bus_prefix("bus", str(tmp_path / "b"))
    c = bus_prefix("bus2", str(tmp_path / "a"))
    assert len({a, b, c}) == 3
    # No prefix is a prefix of another: "bus" must not claim "bus2"'s rings.
    assert not c.startswith(a) and not a.startswith(c)


@pytest.mark.parametrize("bus_len", [1, 40, 200, 249], ids=lambda n: f"bus{n}")
@pytest.mark.parametrize("topic_len", [1, 249], ids=lambda n: f"topic{n}")
def test_ring_names_fit_name_max_and_start_with_the_bus_prefix(tmp_path, bus_len, topic_len):
    prefix = bus_prefix("b" * bus_len, str(tmp_path))
    name = ring_name(prefix, "t" * topic_len, 1023)
    assert name.startswith("/")
    assert len(name) - 1 <= NAME_MAX, "a /dev/shm name must fit NAME_MAX"
    assert len(f"{name}@retired-{2**63}") - 1 <= NAME_MAX, "a retired ring's name must fit too"
    assert name[1:].startswith(prefix), (
        f"ring name {name[:60]}... does not start with its bus prefix (len {len(prefix)}): "
        f"the stray sweep and leak checks cannot find it")


def test_ring_names_of_different_partitions_and_topics_differ(tmp_path):
    prefix = bus_prefix("bus", str(tmp_path))
    names = {ring_name(prefix, t, p) for t in ("a", "b", "x" * 249, "x" * 248 + "y") for p in range(3)}
    assert len(names) == 12
