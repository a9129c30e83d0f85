"""Bad input fails early, with the documented exception and a clear message,
and leaves the bus as it was."""
import array
import os

import pytest

import shmbus

import buskit

pytestmark = pytest.mark.timeout(60)

BAD_NAMES = ["", ".", "..", "a/b", "../x", "a b", "colon:name", "ünï", "x" * 250]


# ---- names ----

@pytest.mark.parametrize("name", BAD_NAMES + [None, 5, b"bytes"])
def test_create_topic_with_a_bad_name(bus, name):
    with pytest.raises(shmbus.InvalidName):
        bus.create_topic(name, partitions=1, ring_bytes=64 << 10, durable=False)
    assert bus.topics() == {}


def test_longest_legal_topic_name_is_accepted(bus):
    bus.create_topic("x" * 249, partitions=1, ring_bytes=64 << 10, durable=False)
    assert "x" * 249 in bus.topics()


@pytest.mark.parametrize("name", ["a/b", ".", "..", "x" * 250, "sp ace", 123])
def test_connect_with_a_bad_bus_name(tmp_path, name):
    with pytest.raises(shmbus.InvalidName):
        shmbus.connect(name, str(tmp_path), autostart=False)


def test_connect_with_an_empty_bus_name(tmp_path):
    # An explicit empty name is a bad name, not a request for the default bus.
    with pytest.raises(shmbus.InvalidName):
        shmbus.connect("", str(tmp_path), autostart=False)


# ---- topic configuration ----

@pytest.mark.parametrize("partitions", [0, 1025])
def test_partitions_out_of_range(bus, partitions):
    with pytest.raises(ValueError):
        bus.create_topic("t", partitions=partitions, ring_bytes=64 << 10, durable=False)
    assert bus.topics() == {}


@pytest.mark.parametrize("ring_bytes", [4096, (64 << 10) - 1])
def test_ring_bytes_too_small(bus, ring_bytes):
    with pytest.raises(ValueError):
        bus.create_topic("t", partitions=1, ring_bytes=ring_bytes, durable=False)
    assert bus.topics() == {}


@pytest.mark.parametrize("ring_bytes", ["64MiB", 65536.0, True])
def test_ring_bytes_of_the_wrong_type(bus, ring_bytes):
    with pytest.raises(TypeError):
        bus.create_topic("t", partitions=1, ring_bytes=ring_bytes, durable=False)
    assert bus.topics() == {}


def test_all_configuration_errors_are_shmbus_errors(bus):
    for kwargs in (dict(partitions=0), dict(ring_bytes=10), dict(ring_bytes="x")):
        args = dict(dict(partitions=1, ring_bytes=64 << 10, durable=False), **kwargs)
        with pytest.raises(shmbus.ShmbusError):
            bus.create_topic("t", **args)


def test_ring_bytes_is_rounded_up_to_whole_pages(bus):
    info = bus.create_topic("t", partitions=1, ring_bytes=(64 << 10) + 1, durable=False)
    assert info.ring_bytes == (64 << 10) + 4096


def test_ring_that_does_not_fit_in_dev_shm_is_out_of_space(bus, bus_paths):
    stat = os.statvfs("/dev/shm")
    # More than the whole file system, so tmpfs refuses it at once rather than
    # filling memory first; either way it must fail here, never as SIGBUS later.
    too_big = (stat.f_blocks * stat.f_frsize + (1 << 30)) & ~4095
    with pytest.raises(shmbus.OutOfSpace) as raised:
        bus.create_topic("huge", partitions=2, ring_bytes=too_big, durable=False)
    assert isinstance(raised.value, OSError)
    huge_rings = bus_paths.shm_prefix + "huge:"
    assert [e for e in buskit.shm_leftovers(bus_paths) if e.startswith(huge_rings)] == []
    assert bus.topics() == {}
    # Nothing half-made: the name is free and the bus still works.
    bus.create_topic("huge", partitions=1, ring_bytes=64 << 10, durable=False)
    with bus.producer() as p:
        assert p.send("huge", b"x").offset == 0


def test_topic_exists(bus, make_topic):
    make_topic("t", partitions=2)
    with pytest.raises(shmbus.TopicExists):
        make_topic("t", partitions=3)
    assert bus.topics()["t"].partitions == 2


# ---- missing topics ----

def test_topic_not_found(bus):
    with bus.producer() as p:
        with pytest.raises(shmbus.TopicNotFound):
            p.send("missing", b"x")
        with pytest.raises(shmbus.TopicNotFound):
            p.send_many("missing", [b"x"])
    with pytest.raises(shmbus.TopicNotFound):
        bus.consumer("missing")
    with pytest.raises(shmbus.TopicNotFound):
        bus.delete_topic("missing")
    with pytest.raises(shmbus.TopicNotFound):
        bus.describe_topic("missing")
    with pytest.raises(LookupError):
        bus.topic("missing")


def test_delete_while_clients_are_attached(bus, bus_paths, make_topic):
    make_topic("t", partitions=2)
    make_topic("other")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        p.send("t", b"x", partition=0)
        assert c.poll(timeout=5).value == b"x"
        bus.delete_topic("t")
        with pytest.raises(shmbus.TopicNotFound):
            p.send("t", b"y", partition=0)
        with pytest.raises(shmbus.TopicNotFound):
            c.poll(timeout=1)
        # Other topics are untouched.
        assert p.send("other", b"z").offset == 0
    assert "t" not in bus.topics()
    prefix = bus_paths.shm_prefix + "t:"
    assert not [e for e in buskit.shm_leftovers(bus_paths) if e.startswith(prefix)]


def test_delete_and_create_again_starts_a_new_topic(bus, make_topic):
    make_topic("t")
    with bus.producer() as p:
        for _ in range(5):
            p.send("t", b"old")
    bus.delete_topic("t")
    make_topic("t", partitions=1)
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        assert p.send("t", b"new").offset == 0
        assert c.poll(timeout=5).value == b"new"


# ---- values, keys, headers ----

@pytest.mark.parametrize("value", ["a str", 5, 1.5, ["list"], object()])
def test_non_bytes_value(bus, make_topic, value):
    make_topic("t")
    with bus.producer() as p:
        with pytest.raises(TypeError, match="bytes"):
            p.send("t", value)
        with pytest.raises(TypeError):
            p.send_many("t", [b"ok", value])
        assert p.send("t", b"fine").offset == 0, "a refused record takes no offset"


@pytest.mark.parametrize("key", ["a str", 5, 1.5])
def test_non_bytes_key(bus, make_topic, key):
    make_topic("t", partitions=2)
    with bus.producer() as p:
        with pytest.raises(TypeError, match="bytes"):
            p.send("t", b"v", key=key)
        with pytest.raises(TypeError):
            p.send_many("t", [b"v"], key=key)


@pytest.mark.parametrize("headers", [[("h", "str")], [(b"name", b"v")], [("h", 5)], ["oops"]])
def test_bad_headers(bus, make_topic, headers):
    make_topic("t")
    with bus.producer() as p:
        with pytest.raises(TypeError):
            p.send("t", b"v", headers=headers)


@pytest.mark.parametrize("timestamp_ns, error", [(-1, ValueError), (1.5, TypeError), ("now", TypeError)])
def test_bad_timestamp(bus, make_topic, timestamp_ns, error):
    make_topic("t")
    with bus.producer() as p:
        with pytest.raises(error):
            p.send("t", b"v", timestamp_ns=timestamp_ns)


def test_non_str_topic(bus):
    with bus.producer() as p:
        with pytest.raises(TypeError):
            p.send(b"t", b"v")
    with pytest.raises(TypeError):
        bus.consumer(b"t")


def test_bad_consumer_options(bus, make_topic):
    make_topic("t")
    with pytest.raises(ValueError):
        bus.consumer("t", auto_offset_reset="smallest")
    with pytest.raises(ValueError):
        bus.consumer("t", wait="sleepy")


# ---- closed objects ----

def test_closed_producer(bus, make_topic):
    make_topic("t")
    p = bus.producer()
    p.send("t", b"x")
    p.close()
    p.close()  # idempotent
    with pytest.raises(shmbus.Closed):
        p.send("t", b"x")
    with pytest.raises(shmbus.Closed):
        p.send_many("t", [b"x"])
    with pytest.raises(shmbus.Closed):
        p.flush()


def test_closed_consumer(bus, make_topic):
    make_topic("t")
    c = bus.consumer("t", auto_offset_reset="earliest")
    c.close()
    c.close()
    with pytest.raises(shmbus.Closed):
        c.poll(timeout=0.1)
    with pytest.raises(shmbus.Closed):
        c.poll_many(timeout=0.1)
    with pytest.raises(shmbus.Closed):
        next(iter(c))


def test_closed_bus(bus_paths):
    bus = shmbus.connect(bus_paths.bus, bus_paths.data_dir)
    bus.create_topic("t", partitions=1, ring_bytes=64 << 10, durable=False)
    p = bus.producer()
    c = bus.consumer("t")
    p.send("t", b"x")
    bus.close()
    bus.close()
    with pytest.raises(shmbus.Closed):
        bus.topics()
    with pytest.raises(shmbus.Closed):
        bus.create_topic("u", partitions=1, ring_bytes=64 << 10, durable=False)
    # Closing the bus closed what it handed out.
    with pytest.raises(shmbus.Closed):
        p.send("t", b"x")
    with pytest.raises(shmbus.Closed):
        c.poll(timeout=0.1)


def test_every_error_is_a_shmbus_error_and_its_builtin():
    assert issubclass(shmbus.TopicNotFound, LookupError)
    assert issubclass(shmbus.InvalidName, ValueError)
    assert issubclass(shmbus.MessageTooLarge, ValueError)
    assert issubclass(shmbus.Timeout, TimeoutError)
    assert issubclass(shmbus.SupervisorUnavailable, ConnectionError)
    assert issubclass(shmbus.OutOfSpace, OSError)
    for name in ("TopicNotFound", "TopicExists", "InvalidName", "MessageTooLarge", "BufferFull", "Timeout",
                 "SupervisorUnavailable", "OffsetOutOfRange", "Closed", "OutOfSpace"):
        assert issubclass(getattr(shmbus, name), shmbus.ShmbusError), name


def test_send_many_of_a_non_list_iterable(bus, make_topic):
    make_topic("t")
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        assert p.send_many("t", (b"%d" % i for i in range(5)), partition=0) == 5
        assert p.send_many("t", [], partition=0) == 0
        assert [m.value for m in buskit.read_exact(c, 5)] == [b"%d" % i for i in range(5)]


def test_array_value_sent_whole(bus, make_topic):
    make_topic("t")
    values = array.array("d", [1.5, 2.5])
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        p.send("t", values)
        assert c.poll(timeout=5).value == values.tobytes()


# ---- values that would poison what comes after them ----

def test_a_poison_commit_is_refused_on_both_sides(bus, make_topic):
    """commit({tp: 2**64}) was accepted and saved; from then on every member's poll
    raised OverflowError. Refused by the client, and by the supervisor for a client
    that skips the check."""
    make_topic("t")
    tp = shmbus.TopicPartition("t", 0)
    with bus.consumer("t", group="g") as c:
        for bad in (2 ** 64, 2 ** 63, -1):
            with pytest.raises(ValueError):
                c.commit({tp: bad})
        with pytest.raises(TypeError):
            c.commit({tp: True})
        member = c._member
        with pytest.raises(ValueError):
            bus.call("group_commit", group="g", member_id=member.member_id, generation=member.generation,
                     offsets=[["t", 0, 2 ** 64]])
        c.commit({tp: 2 ** 63 - 1})   # the largest offset there is
        assert c.committed(tp) == 2 ** 63 - 1


@pytest.mark.parametrize("call", [
    lambda c, tp: c.seek(tp, True),
    lambda c, tp: c.seek(tp, 2 ** 64),
    lambda c, tp: c.poll_many(0),
    lambda c, tp: c.poll_many("10"),
    lambda c, tp: c.poll(timeout=-1),
    lambda c, tp: c.poll(timeout="1"),
])
def test_bad_consumer_arguments(bus, make_topic, call):
    make_topic("t")
    with bus.consumer("t") as c:
        with pytest.raises((TypeError, ValueError)):
            call(c, shmbus.TopicPartition("t", 0))
        assert c.poll(timeout=0) is None   # still usable


@pytest.mark.parametrize("options", [dict(max_poll_bytes=0), dict(max_poll_records=0), dict(spin_us=-1),
                                     dict(max_poll_bytes=True)])
def test_bad_consumer_budgets(bus, make_topic, options):
    make_topic("t")
    with pytest.raises((TypeError, ValueError)):
        bus.consumer("t", **options)


def test_timestamps_past_int64_are_refused(bus, make_topic):
    make_topic("t")
    with bus.producer() as p:
        for call in (lambda: p.send("t", b"x", timestamp_ns=2 ** 63),
                     lambda: p.send_many("t", [b"x"], timestamp_ns=2 ** 63),
                     lambda: p.send_many("t", [b"x"], timestamp_ns=-5)):
            with pytest.raises(ValueError):
                call()
        assert p.send("t", b"x", timestamp_ns=2 ** 63 - 1).timestamp_ns == 2 ** 63 - 1


def test_non_contiguous_buffers_are_sent_as_their_bytes(bus, make_topic):
    make_topic("t")
    strided = memoryview(b"abcdefgh")[::2]
    with bus.producer() as p, bus.consumer("t", auto_offset_reset="earliest") as c:
        p.send("t", strided, key=strided, headers=[("h", strided)])
        p.send_many("t", [strided, b"tail"], partition=0)
        got = buskit.read_exact(c, 3)
    assert [(m.key, m.value) for m in got] == [(b"aceg", b"aceg"), (None, b"aceg"), (None, b"tail")]
    assert got[0].headers == (("h", b"aceg"),)


def test_no_record_over_2_gib_even_in_a_huge_ring():
    """A frame's length is 32 bits: a 2**31 + 8 byte value in a 4.25 GiB ring was sent,
    then read back as None. The largest record is capped below 2 GiB whatever the ring."""
    from shmbus._backend import FRAME_HEADER_BYTES, max_record_bytes
    assert max_record_bytes(17 << 28) == (1 << 31) - FRAME_HEADER_BYTES
    assert max_record_bytes(1 << 40) == (1 << 31) - FRAME_HEADER_BYTES
    assert max_record_bytes(1 << 20) == (1 << 19) - FRAME_HEADER_BYTES
